//! The `watchdog` check: which hardware watchdog the ramdisk arms, with
//! which timeout, or a warning that there is none and what that means.
//! Never blocks: many x86 machines have no watchdog the kernel drives,
//! and the ramdisk still has its own deadlines and the kernel's hang
//! panics (see docs/migration.md, "When something hangs").

use super::{CheckResult, Options, Status};
use crate::probe::watchdog::{self, WatchdogDevice};
use crate::probe::Facts;
use migrd_init::plan::DEFAULT_WATCHDOG_TIMEOUT_SECS;

const NAME: &str = "watchdog";

/// Run the check.
pub fn watchdog(f: &Facts, o: &Options) -> CheckResult {
    if o.no_watchdog {
        return CheckResult::new(
            NAME,
            Status::Skip,
            "--no-watchdog: the ramdisk arms no hardware watchdog; a hang before the point of \
             no return relies on its deadlines and the kernel's hang panics",
        );
    }
    verdict(&f.watchdog_devices)
}

fn verdict(devices: &[WatchdogDevice]) -> CheckResult {
    let Some(w) = watchdog::choose(devices) else {
        let what = if devices.is_empty() {
            "no hardware watchdog (/sys/class/watchdog is empty)".to_string()
        } else {
            "only a software watchdog (softdog), which a hung kernel takes down with it".into()
        };
        return CheckResult::new(
            NAME,
            Status::Warn,
            format!(
                "{what}: a hang before the point of no return relies on the ramdisk's own \
                 deadlines and reboot and on the kernel panicking on a hung task, oops or soft \
                 lockup (panic=10 reboots into the old OS); a hang the kernel itself cannot \
                 notice, or one after the point of no return, needs someone to power-cycle \
                 the device"
            ),
        );
    };
    let p = w.plan();
    let driver = match (&p.driver, &p.module) {
        (Some(d), Some(m)) => format!("driver {d}, module {m} packed"),
        (Some(d), None) => format!("driver {d}, built in"),
        (None, _) => {
            return CheckResult::new(
                NAME,
                Status::Warn,
                format!(
                    "/dev/{} ({}): sysfs names no driver for it, so no module is packed; the \
                     ramdisk arms it only if its driver is built into the kernel, else it relies \
                     on its deadlines and the kernel's hang panics",
                    w.name,
                    w.identity.as_deref().unwrap_or("no identity"),
                ),
            )
        }
    };
    let limit = match w.timeout_limit() {
        Some(m) if m < DEFAULT_WATCHDOG_TIMEOUT_SECS => {
            format!(" (the driver allows at most {m} s)")
        }
        _ => String::new(),
    };
    CheckResult::new(
        NAME,
        Status::Pass,
        format!(
            "/dev/{} ({}; {driver}): the ramdisk arms it with a {} s timeout{limit} and stops \
             petting it when a step runs past its deadline",
            w.name,
            w.identity.as_deref().unwrap_or("no identity"),
            p.timeout_secs
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::drivers::BoundDriver;

    fn dev(name: &str, driver: &str, identity: &str, max: Option<u32>) -> WatchdogDevice {
        WatchdogDevice {
            name: name.into(),
            identity: Some(identity.into()),
            timeout: Some(30),
            min_timeout: None,
            max_timeout: max,
            drivers: vec![BoundDriver {
                device: "/sys/devices/x".into(),
                driver: driver.into(),
                module: Some(driver.into()),
                loadable: driver != "bcm2835_wdt",
            }],
        }
    }

    #[test]
    fn a_hardware_watchdog_passes_naming_device_driver_and_timeout() {
        let r = verdict(&[
            dev("watchdog0", "softdog", "Software Watchdog", None),
            dev("watchdog1", "i6300esb", "i6300ESB timer", None),
        ]);
        assert_eq!(r.status, Status::Pass);
        assert_eq!(
            r.message,
            "/dev/watchdog1 (i6300ESB timer; driver i6300esb, module i6300esb packed): the \
             ramdisk arms it with a 60 s timeout and stops petting it when a step runs past \
             its deadline"
        );
    }

    #[test]
    fn a_watchdog_without_a_known_driver_warns_and_no_watchdog_skips() {
        let mut d = dev("watchdog0", "i6300esb", "i6300ESB timer", None);
        d.drivers.clear();
        let r = verdict(&[d]);
        assert_eq!(r.status, Status::Warn);
        assert!(r.message.contains("built into the kernel"), "{}", r.message);

        let t = tempfile::tempdir().unwrap();
        let facts = crate::probe::probe(t.path());
        let o = Options {
            no_watchdog: true,
            ..Options::default()
        };
        assert_eq!(watchdog(&facts, &o).status, Status::Skip);
        assert_eq!(watchdog(&facts, &Options::default()).status, Status::Warn);
    }

    #[test]
    fn a_short_driver_limit_is_shown() {
        let r = verdict(&[dev(
            "watchdog0",
            "bcm2835_wdt",
            "Broadcom BCM2835 Watchdog timer",
            Some(15),
        )]);
        assert_eq!(r.status, Status::Pass);
        assert!(
            r.message.contains("built in")
                && r.message
                    .contains("15 s timeout (the driver allows at most 15 s)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_driver_limit_of_zero_is_no_limit() {
        // What the lab's emulated Pi 3 reports for bcm2835_wdt.
        let r = verdict(&[dev(
            "watchdog0",
            "bcm2835_wdt",
            "Broadcom BCM2835 Watchdog timer",
            Some(0),
        )]);
        assert_eq!(r.status, Status::Pass);
        assert!(
            r.message.contains("60 s timeout and") && !r.message.contains("at most"),
            "{}",
            r.message
        );
    }

    #[test]
    fn none_or_only_softdog_warns_saying_what_a_hang_then_needs() {
        for devs in [
            vec![],
            vec![dev("watchdog0", "softdog", "Software Watchdog", None)],
        ] {
            let r = verdict(&devs);
            assert_eq!(r.status, Status::Warn);
            assert!(
                r.message.contains("deadlines") && r.message.contains("power-cycle"),
                "{}",
                r.message
            );
        }
        assert!(verdict(&[]).message.starts_with("no hardware watchdog"));
    }
}
