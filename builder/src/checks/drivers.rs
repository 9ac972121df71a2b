//! The `ramdisk-drivers` check: the ramdisk boots the running kernel with
//! no udev and no modprobe, so every module the device needs beyond
//! migrd's defaults ([`crate::kmod::needed`]: the target disk's drivers,
//! the watchdog's, what the board restarts through) must be a module file
//! of that kernel or built into it. Otherwise the ramdisk would not find
//! its disk (and go back to the old OS after its wait) or would halt
//! instead of restarting (a device stranded until someone pulls the plug).

use super::disk::target;
use super::{CheckResult, Options, Status};
use crate::kmod::index::Provided;
use crate::kmod::{needed, ModuleIndex, Needed};
use crate::probe::{rootfs, Facts};
use std::path::Path;

const NAME: &str = "ramdisk-drivers";

/// Run the check.
pub fn ramdisk_drivers(f: &Facts, o: &Options) -> CheckResult {
    let disk = match target(f, o) {
        Ok(d) => d,
        Err(_) => return CheckResult::new(NAME, Status::Skip, "no target disk (see target-disk)"),
    };
    let wanted = needed::for_device(f, disk);
    if wanted.is_empty() {
        return CheckResult::new(
            NAME,
            Status::Pass,
            format!(
                "/dev/{} needs no driver beyond the ramdisk's defaults{}",
                disk.name,
                built_in_note(disk)
            ),
        );
    }
    let Some(release) = rootfs::read_trimmed(&f.root, "proc/sys/kernel/osrelease") else {
        return CheckResult::new(
            NAME,
            Status::Fail,
            "cannot read the running kernel's release (/proc/sys/kernel/osrelease)",
        );
    };
    let dir = rootfs::join(&f.root, &Path::new("lib/modules").join(&release));
    let idx = match ModuleIndex::read(&dir) {
        Ok(i) => i,
        Err(e) => {
            return CheckResult::new(
                NAME,
                Status::Fail,
                format!(
                    "the ramdisk must carry {} but the running kernel's module index cannot be read: {e:#}",
                    names(&wanted)
                ),
            )
        }
    };
    let mut r = verdict(&idx, &release, &wanted);
    if r.status == Status::Pass {
        r.message.push_str(&built_in_note(disk));
    }
    r
}

/// Pass listing what is packed and what is built in, or fail naming every
/// module the kernel lacks and why it is needed.
fn verdict(idx: &ModuleIndex, release: &str, wanted: &[Needed]) -> CheckResult {
    let (mut packed, mut builtin, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for n in wanted {
        match idx.provides(&n.name) {
            Some(Provided::Module) => packed.push(n.name.as_str()),
            Some(Provided::BuiltIn) => builtin.push(n.name.as_str()),
            None => missing.push(format!("{} ({})", n.name, n.reason)),
        }
    }
    if !missing.is_empty() {
        return CheckResult::new(
            NAME,
            Status::Fail,
            format!(
                "kernel {release} has neither built in nor as a module file: {}; the ramdisk \
                 could not carry it. Install the modules of the running kernel (or boot a \
                 kernel that has them) and run depmod",
                missing.join("; ")
            ),
        );
    }
    let mut msg = format!("packs {}", list(&packed));
    if !builtin.is_empty() {
        msg.push_str(&format!("; built in: {}", builtin.join(", ")));
    }
    CheckResult::new(NAME, Status::Pass, msg)
}

fn list(v: &[&str]) -> String {
    if v.is_empty() {
        "nothing extra".into()
    } else {
        v.join(", ")
    }
}

fn names(v: &[Needed]) -> String {
    v.iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn built_in_note(d: &crate::probe::disks::DiskInfo) -> String {
    let b: Vec<&str> = d
        .drivers
        .iter()
        .filter(|x| !x.loadable)
        .map(|x| x.driver.as_str())
        .collect();
    if b.is_empty() {
        String::new()
    } else {
        format!("; /dev/{} through {} (built in)", d.name, b.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needed(name: &str) -> Needed {
        Needed {
            name: name.into(),
            reason: format!("driver {name} of /dev/mmcblk1"),
        }
    }

    #[test]
    fn a_driver_the_kernel_lacks_fails_naming_it_and_why() {
        let idx = ModuleIndex::parse(
            "kernel/drivers/watchdog/omap_wdt.ko:\n",
            "kernel/drivers/mmc/core/mmc_block.ko\n",
            "",
            "",
        );
        let r = verdict(
            &idx,
            "5.10.168-ti-r71",
            &[
                needed("omap_hsmmc"),
                needed("mmc_block"),
                needed("omap_wdt"),
            ],
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.message
                .contains("omap_hsmmc (driver omap_hsmmc of /dev/mmcblk1)")
                && r.message.contains("5.10.168-ti-r71")
                && !r.message.contains("omap_wdt"),
            "{}",
            r.message
        );
    }

    #[test]
    fn modules_and_built_ins_pass_and_are_listed() {
        let idx = ModuleIndex::parse(
            "kernel/drivers/mmc/host/omap_hsmmc.ko.xz:\n",
            "kernel/drivers/mmc/core/mmc_block.ko\n",
            "",
            "",
        );
        let r = verdict(&idx, "r", &[needed("omap_hsmmc"), needed("mmc_block")]);
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.message, "packs omap_hsmmc; built in: mmc_block");
    }
}
