//! The modules one device's ramdisk must carry beyond the default set
//! ([`super::wanted`]), each with the reason the build and `migrd check`
//! quote when the kernel cannot provide it:
//! - the drivers the target disk's I/O goes through now (card or disk
//!   driver, controller, buses: [`crate::probe::drivers`]), so the ramdisk
//!   finds the disk on boards whose controller is not in the default list;
//! - the driver chain of the hardware watchdog stage 2 arms
//!   ([`crate::probe::watchdog::choose`]);
//! - the modules the board family restarts through (the `restart` table of
//!   `data/device-types.json`): without them a ramdisk's reboot halts.
//!
//! One decision, used by `migrd check` (which reports it), `migrd migrate`
//! (which packs it) and `migrd build` (restart modules by device type).

use crate::probe::device_types::device_types;
use crate::probe::disks::DiskInfo;
use crate::probe::drivers::BoundDriver;
use crate::probe::Facts;
use serde::Serialize;

/// A module the ramdisk must carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Needed {
    /// Module name (or alias).
    pub name: String,
    /// Why, for messages.
    pub reason: String,
}

impl Needed {
    /// A module asked for on the command line (`--module`).
    pub fn asked(name: &str) -> Self {
        Needed {
            name: name.to_string(),
            reason: "asked for with --module".into(),
        }
    }
}

fn push(out: &mut Vec<Needed>, name: &str, reason: String) {
    if !out.iter().any(|n| n.name == name) {
        out.push(Needed {
            name: name.to_string(),
            reason,
        });
    }
}

/// The modules the board `family` restarts through.
pub fn restart_for_family(family: &str) -> Vec<Needed> {
    let mut out = Vec::new();
    for m in device_types().restart.get(family).into_iter().flatten() {
        push(
            &mut out,
            m,
            format!("{family} boards restart through it; without it the ramdisk's reboot halts"),
        );
    }
    out
}

/// The modules a device of balena device type `slug` restarts through
/// (for `migrd build`, where no device is at hand).
pub fn restart_for_slug(slug: &str) -> Vec<Needed> {
    let mut out = Vec::new();
    for family in device_types().families_of_slug(slug) {
        for n in restart_for_family(family) {
            push(&mut out, &n.name, n.reason);
        }
    }
    out
}

fn driver_reason(what: &str, d: &BoundDriver) -> String {
    format!("driver {} of {what} ({})", d.driver, d.device)
}

/// Everything `target`'s ramdisk must carry on this device, in load order
/// (controllers before the disk driver, then watchdogs and restart).
/// Built-in drivers (and drivers without a module name) need nothing.
pub fn for_device(facts: &Facts, target: &DiskInfo) -> Vec<Needed> {
    let mut out = Vec::new();
    let disk = format!("/dev/{}", target.name);
    for d in target.drivers.iter().rev() {
        if let Some(m) = d.loadable_module() {
            push(&mut out, m, driver_reason(&disk, d));
        }
    }
    let watchdog = crate::probe::watchdog::choose(&facts.watchdog_devices);
    for d in watchdog.iter().flat_map(|w| w.drivers.iter().rev()) {
        if let Some(m) = d.loadable_module() {
            push(&mut out, m, driver_reason("the hardware watchdog", d));
        }
    }
    if let Some(family) = &facts.board.family {
        for n in restart_for_family(family) {
            push(&mut out, &n.name, n.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raspberry_pi_device_types_restart_through_the_watchdog() {
        for slug in [
            "raspberrypi3",
            "raspberrypi4-64",
            "raspberry-pi2",
            "raspberry-pi",
        ] {
            let n = restart_for_slug(slug);
            assert_eq!(
                n.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
                ["bcm2835_wdt"],
                "{slug}"
            );
            assert!(n[0].reason.contains("halts"), "{}", n[0].reason);
        }
        assert!(restart_for_slug("genericx86-64-ext").is_empty());
        assert!(restart_for_slug("no-such-slug").is_empty());
    }
}
