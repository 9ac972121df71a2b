//! Which kernel drivers serve a device, read from sysfs: every device in
//! the sysfs tree that has a driver bound to it has a `driver` link, and
//! the driver a `module` link to `/sys/module/<name>` (for built-in drivers
//! too, when the kernel knows the name they were built under).
//!
//! A module folder with an `initstate` file is a loadable module; one
//! without is part of the kernel image (built in: nothing to pack). That
//! is read from sysfs rather than from `modules.builtin`, which lists only
//! the built-in drivers that could have been modules.
//!
//! The ramdisk boots the same kernel but has no udev and no modprobe: it
//! loads the module files stage 1 lists. A disk behind a controller that is
//! not in migrd's default list (BeagleBone's `omap_hsmmc`, Allwinner's
//! `sunxi_mmc`, `dw_mmc` boards) would not appear in the ramdisk unless
//! stage 1 asks for the drivers the device uses now; this module tells
//! which those are.

use super::rootfs;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A driver bound to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoundDriver {
    /// The device's sysfs path, under `/sys/devices`.
    pub device: String,
    /// The driver's name (`omap_hsmmc`, `mmcblk`, `virtio_blk`).
    pub driver: String,
    /// The module that provides it (`mmc_block` for `mmcblk`), when sysfs
    /// names one; built-in drivers often have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The module is loadable (a file the ramdisk must carry), not built
    /// into the kernel image.
    pub loadable: bool,
}

impl BoundDriver {
    /// The module to pack, when the driver is a loadable module.
    pub fn loadable_module(&self) -> Option<&str> {
        self.module.as_deref().filter(|_| self.loadable)
    }
}

/// The last component of a symlink's target.
fn link_name(p: &Path) -> Option<String> {
    let t = std::fs::read_link(p).ok()?;
    Some(t.file_name()?.to_string_lossy().into_owned())
}

/// The driver bound to the device whose sysfs folder is `dir`, if any.
fn bound(root: &Path, dir: &Path) -> Option<BoundDriver> {
    let driver = link_name(&dir.join("driver"))?;
    let module_link = std::fs::canonicalize(dir.join("driver"))
        .ok()
        .map(|d| d.join("module"));
    let module = module_link.as_deref().and_then(link_name);
    let loadable = module_link.is_some_and(|m| m.join("initstate").exists());
    let sys = rootfs::join(root, Path::new("sys"));
    let sys = std::fs::canonicalize(&sys).unwrap_or(sys);
    let device = dir
        .strip_prefix(&sys)
        .map(|p| format!("/sys/{}", p.display()))
        .unwrap_or_else(|_| dir.display().to_string());
    Some(BoundDriver {
        device,
        driver,
        module,
        loadable,
    })
}

/// The drivers bound to the device at sysfs folder `dir` and to every
/// device above it (controller, bus, bridge), nearest first.
pub fn chain(root: &Path, dir: &Path) -> Vec<BoundDriver> {
    let top = rootfs::join(root, Path::new("sys/devices"));
    // Compared with canonical paths: the root itself may be spelt with
    // `..` or through a symlink.
    let top = std::fs::canonicalize(&top).unwrap_or(top);
    let mut out = Vec::new();
    let mut cur: Option<PathBuf> = std::fs::canonicalize(dir).ok();
    while let Some(d) = cur {
        if !d.starts_with(&top) || d == top {
            break;
        }
        out.extend(bound(root, &d));
        cur = d.parent().map(Path::to_path_buf);
    }
    out
}

/// The drivers a whole disk's I/O goes through: from `/sys/block/<disk>`'s
/// device (the disk itself has no driver; its `device` does) up to the
/// root of the device tree.
pub fn disk_chain(root: &Path, disk: &str) -> Vec<BoundDriver> {
    let dev = rootfs::join(root, &Path::new("sys/block").join(disk).join("device"));
    chain(root, &dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree: a controller bound to `omap_hsmmc` (module link), an
    /// MMC card bound to `mmcblk` (module `mmc_block`), the disk under it,
    /// and a watchdog bound to a driver without a module link.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let host = r.join("sys/devices/platform/ocp/481d8000.mmc");
        let card = host.join("mmc_host/mmc1/mmc1:0001");
        std::fs::create_dir_all(card.join("block/mmcblk1")).unwrap();
        for (drv, module, bus) in [
            ("omap_hsmmc", Some("omap_hsmmc"), "platform"),
            ("mmcblk", Some("mmc_block"), "mmc"),
            ("omap_wdt", None, "platform"),
        ] {
            let d = r.join("sys/bus").join(bus).join("drivers").join(drv);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(m) = module {
                std::fs::create_dir_all(r.join("sys/module").join(m)).unwrap();
                if m != "mmc_block" {
                    std::fs::write(r.join("sys/module").join(m).join("initstate"), "live\n")
                        .unwrap();
                }
                symlink(format!("../../../../module/{m}"), d.join("module")).unwrap();
            }
        }
        symlink(
            "../../../../bus/platform/drivers/omap_hsmmc",
            host.join("driver"),
        )
        .unwrap();
        symlink(
            "../../../../../../../bus/mmc/drivers/mmcblk",
            card.join("driver"),
        )
        .unwrap();
        symlink("../..", card.join("block/mmcblk1/device")).unwrap();
        std::fs::create_dir_all(r.join("sys/block")).unwrap();
        symlink(
            "../devices/platform/ocp/481d8000.mmc/mmc_host/mmc1/mmc1:0001/block/mmcblk1",
            r.join("sys/block/mmcblk1"),
        )
        .unwrap();
        let wdt = r.join("sys/devices/platform/ocp/44e35000.wdt");
        std::fs::create_dir_all(wdt.join("watchdog/watchdog0")).unwrap();
        symlink(
            "../../../../bus/platform/drivers/omap_wdt",
            wdt.join("driver"),
        )
        .unwrap();
        symlink("../..", wdt.join("watchdog/watchdog0/device")).unwrap();
        std::fs::create_dir_all(r.join("sys/class/watchdog")).unwrap();
        symlink(
            "../../devices/platform/ocp/44e35000.wdt/watchdog/watchdog0",
            r.join("sys/class/watchdog/watchdog0"),
        )
        .unwrap();
        t
    }

    #[test]
    fn a_disk_is_served_by_its_card_driver_and_its_controller() {
        let t = tree();
        let c = disk_chain(t.path(), "mmcblk1");
        let got: Vec<(&str, Option<&str>, bool)> = c
            .iter()
            .map(|d| (d.driver.as_str(), d.module.as_deref(), d.loadable))
            .collect();
        assert_eq!(
            got,
            [
                ("mmcblk", Some("mmc_block"), false),
                ("omap_hsmmc", Some("omap_hsmmc"), true)
            ]
        );
        assert_eq!(c[0].loadable_module(), None);
        assert_eq!(c[1].loadable_module(), Some("omap_hsmmc"));
        assert_eq!(c[1].device, "/sys/devices/platform/ocp/481d8000.mmc");
    }

    #[test]
    fn watchdogs_name_their_driver_even_without_a_module_link() {
        let t = tree();
        let dev = t.path().join("sys/class/watchdog/watchdog0/device");
        let w = chain(t.path(), &dev);
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].driver.as_str(), w[0].module.as_deref()),
            ("omap_wdt", None)
        );
    }

    #[test]
    fn nothing_is_found_where_sysfs_has_nothing() {
        let t = tempfile::tempdir().unwrap();
        assert!(disk_chain(t.path(), "sda").is_empty());
    }
}
