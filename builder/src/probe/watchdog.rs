//! The hardware watchdog stage 2 will arm: each `/sys/class/watchdog/*`
//! with its identity, its timeouts and its driver chain, and the choice of
//! one with the timeout the ramdisk asks for.
//!
//! `identity`, `timeout`, `min_timeout` and `max_timeout` exist only in
//! kernels built with `CONFIG_WATCHDOG_SYSFS=y` (Debian's are); without
//! them the plan names the device by path alone and asks for 60 s, and
//! stage 2 keeps whatever the driver sets instead when it refuses that.
//!
//! `softdog` is left out: it is a kernel timer, not hardware, and a kernel
//! that hangs takes it down too (stage 2's deadlines and the hung-task
//! panic already cover what it would).

use super::drivers::{self, BoundDriver};
use super::rootfs;
use migrd_init::plan::{WatchdogPlan, DEFAULT_WATCHDOG_TIMEOUT_SECS};
use serde::Serialize;
use std::path::Path;

/// One watchdog device as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchdogDevice {
    /// Class name (`watchdog0`); its node is `/dev/<name>`.
    pub name: String,
    /// `identity` (`i6300ESB timer`, `Broadcom BCM2835 Watchdog timer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Current timeout, seconds (`timeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Smallest and largest timeouts the driver accepts, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_timeout: Option<u32>,
    /// Largest timeout, seconds (`max_timeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_timeout: Option<u32>,
    /// Drivers of the device and its parents, nearest first.
    pub drivers: Vec<BoundDriver>,
}

impl WatchdogDevice {
    /// The watchdog's own driver.
    pub fn driver(&self) -> Option<&BoundDriver> {
        self.drivers.first()
    }

    /// A software watchdog (`softdog`), not hardware.
    pub fn is_software(&self) -> bool {
        self.driver().is_some_and(|d| d.driver == "softdog")
            || self.identity.as_deref() == Some("Software Watchdog")
    }

    /// The largest timeout the driver accepts, when it says: a
    /// `max_timeout` of 0 means the driver leaves it to the watchdog core
    /// (which pets hardware with a shorter reach itself; `bcm2835_wdt` on
    /// a Pi), not "at most 0 s".
    pub fn timeout_limit(&self) -> Option<u32> {
        self.max_timeout.filter(|m| *m > 0)
    }

    /// The timeout to ask for: [`DEFAULT_WATCHDOG_TIMEOUT_SECS`] within
    /// what the driver accepts.
    pub fn ramdisk_timeout(&self) -> u32 {
        let mut t = DEFAULT_WATCHDOG_TIMEOUT_SECS;
        if let Some(max) = self.timeout_limit() {
            t = t.min(max);
        }
        if let Some(min) = self.min_timeout {
            t = t.max(min);
        }
        t
    }

    /// The plan's watchdog section for this device.
    pub fn plan(&self) -> WatchdogPlan {
        WatchdogPlan {
            device: Some(format!("/dev/{}", self.name)),
            identity: self.identity.clone(),
            driver: self.driver().map(|d| d.driver.clone()),
            module: self
                .driver()
                .and_then(|d| d.loadable_module())
                .map(String::from),
            timeout_secs: self.ramdisk_timeout(),
        }
    }
}

fn number(root: &Path, rel: &str) -> Option<u32> {
    rootfs::read_trimmed(root, rel)?.parse().ok()
}

/// Every watchdog under `root`'s `/sys/class/watchdog`, by name.
pub fn probe(root: &Path) -> Vec<WatchdogDevice> {
    let class = rootfs::join(root, Path::new("sys/class/watchdog"));
    let Ok(rd) = std::fs::read_dir(&class) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let at = |f: &str| format!("sys/class/watchdog/{name}/{f}");
            WatchdogDevice {
                identity: rootfs::read_trimmed(root, &at("identity")),
                timeout: number(root, &at("timeout")),
                min_timeout: number(root, &at("min_timeout")),
                max_timeout: number(root, &at("max_timeout")),
                drivers: drivers_of(root, &class, &name),
                name,
            }
        })
        .collect()
}

/// The drivers behind watchdog `name`: its device's chain, or, for a class
/// device without a parent, [`loaded_watchdog_module`].
fn drivers_of(root: &Path, class: &Path, name: &str) -> Vec<BoundDriver> {
    let chain = drivers::chain(root, &class.join(name).join("device"));
    if chain.is_empty() {
        loaded_watchdog_module(root, name)
    } else {
        chain
    }
}

/// The driver of watchdog `name` when sysfs links it to none: some drivers
/// (`i6300esb` on Linux 6.1) register their watchdog with no parent, under
/// `/sys/devices/virtual`. Then the one loaded module that is a hardware
/// watchdog driver (its file under `kernel/drivers/watchdog/` in the
/// running kernel's `modules.dep`; not the core, not `softdog`) is taken as
/// its driver. With several, or none, nothing is guessed and the plan packs
/// no module. (The watchdog core's `holders` would name it too, but only
/// where the core is a module: Debian's arm64 kernels build it in.)
fn loaded_watchdog_module(root: &Path, name: &str) -> Vec<BoundDriver> {
    let Some(release) = rootfs::read_trimmed(root, "proc/sys/kernel/osrelease") else {
        return Vec::new();
    };
    let dep = Path::new("lib/modules").join(release).join("modules.dep");
    let Ok(dep) = std::fs::read_to_string(rootfs::join(root, &dep)) else {
        return Vec::new();
    };
    let loaded =
        |m: &str| rootfs::join(root, &Path::new("sys/module").join(m).join("initstate")).exists();
    let mut found: Vec<String> = dep
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter_map(|f| f.strip_prefix("kernel/drivers/watchdog/"))
        .filter_map(|f| f.split(".ko").next())
        .map(|stem| stem.replace('-', "_"))
        .filter(|m| m != "watchdog" && m != "softdog" && loaded(m))
        .collect();
    found.dedup();
    let [module] = found.as_slice() else {
        return Vec::new();
    };
    vec![BoundDriver {
        device: format!("/sys/class/watchdog/{name}"),
        driver: module.clone(),
        module: Some(module.clone()),
        loadable: true,
    }]
}

/// The watchdog stage 2 arms: the first hardware one.
pub fn choose(devices: &[WatchdogDevice]) -> Option<&WatchdogDevice> {
    devices.iter().find(|d| !d.is_software())
}

/// The plan's `watchdog` section for a device with these watchdogs: the
/// chosen one's, or none (stage 2 then relies on its deadlines).
pub fn plan_for(devices: &[WatchdogDevice]) -> WatchdogPlan {
    choose(devices)
        .map(WatchdogDevice::plan)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs with `softdog` as watchdog0 and an i6300esb (a loadable
    /// module, max timeout 20 s when `max` is given) as watchdog1.
    fn tree(max: Option<&str>) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for (name, drv, id, dev) in [
            (
                "watchdog0",
                "softdog",
                "Software Watchdog",
                "sys/devices/virtual/softdog",
            ),
            (
                "watchdog1",
                "i6300esb",
                "i6300ESB timer",
                "sys/devices/pci0000:00/0000:00:04.0",
            ),
        ] {
            let d = r.join(dev);
            std::fs::create_dir_all(d.join("watchdog").join(name)).unwrap();
            let drvdir = r.join("sys/bus/pci/drivers").join(drv);
            std::fs::create_dir_all(&drvdir).unwrap();
            std::fs::create_dir_all(r.join("sys/module").join(drv)).unwrap();
            std::fs::write(r.join("sys/module").join(drv).join("initstate"), "live\n").unwrap();
            symlink(r.join("sys/module").join(drv), drvdir.join("module")).unwrap();
            symlink(&drvdir, d.join("driver")).unwrap();
            let w = d.join("watchdog").join(name);
            symlink(&d, w.join("device")).unwrap();
            std::fs::write(w.join("identity"), format!("{id}\n")).unwrap();
            std::fs::write(w.join("timeout"), "30\n").unwrap();
            if let Some(m) = max {
                std::fs::write(w.join("max_timeout"), format!("{m}\n")).unwrap();
            }
            std::fs::create_dir_all(r.join("sys/class/watchdog")).unwrap();
            symlink(&w, r.join("sys/class/watchdog").join(name)).unwrap();
        }
        t
    }

    #[test]
    fn the_hardware_watchdog_is_chosen_with_its_module() {
        let t = tree(None);
        let all = probe(t.path());
        assert_eq!(all.len(), 2);
        assert!(all[0].is_software());
        let w = choose(&all).unwrap();
        assert_eq!(w.name, "watchdog1");
        let p = w.plan();
        assert_eq!(p.device.as_deref(), Some("/dev/watchdog1"));
        assert_eq!(p.identity.as_deref(), Some("i6300ESB timer"));
        assert_eq!(p.driver.as_deref(), Some("i6300esb"));
        assert_eq!(p.module.as_deref(), Some("i6300esb"));
        assert_eq!(p.timeout_secs, 60);
        assert_eq!(w.timeout, Some(30));
    }

    /// A watchdog registered without a parent (as `i6300esb` does on
    /// Linux 6.1), with the given modules loaded, in a kernel whose
    /// `modules.dep` has i6300esb, iTCO_wdt, softdog and the core.
    fn virtual_tree(loaded: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let w = r.join("sys/devices/virtual/watchdog/watchdog0");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::write(w.join("identity"), "i6300ESB timer\n").unwrap();
        std::fs::create_dir_all(r.join("sys/class/watchdog")).unwrap();
        symlink(&w, r.join("sys/class/watchdog/watchdog0")).unwrap();
        std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
        std::fs::write(r.join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        let rel = r.join("lib/modules/6.1.0-test");
        std::fs::create_dir_all(&rel).unwrap();
        std::fs::write(
            rel.join("modules.dep"),
            "kernel/drivers/watchdog/i6300esb.ko.xz: kernel/drivers/watchdog/watchdog.ko.xz\n\
             kernel/drivers/watchdog/iTCO_wdt.ko.xz: kernel/drivers/watchdog/watchdog.ko.xz\n\
             kernel/drivers/watchdog/softdog.ko.xz: kernel/drivers/watchdog/watchdog.ko.xz\n\
             kernel/drivers/watchdog/watchdog.ko.xz:\n\
             kernel/drivers/block/virtio_blk.ko.xz:\n",
        )
        .unwrap();
        for m in loaded {
            let d = r.join("sys/module").join(m);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("initstate"), "live\n").unwrap();
        }
        t
    }

    #[test]
    fn a_watchdog_without_a_parent_is_driven_by_the_one_loaded_watchdog_module() {
        let t = virtual_tree(&["i6300esb", "softdog", "watchdog", "virtio_blk"]);
        let all = probe(t.path());
        let p = choose(&all).unwrap().plan();
        assert_eq!(p.identity.as_deref(), Some("i6300ESB timer"));
        assert_eq!(p.module.as_deref(), Some("i6300esb"));
        assert_eq!(all[0].drivers[0].device, "/sys/class/watchdog/watchdog0");
    }

    #[test]
    fn several_loaded_watchdog_modules_or_none_name_no_driver() {
        for loaded in [
            &["i6300esb", "iTCO_wdt"][..],
            &[][..],
            &["softdog", "watchdog"][..],
        ] {
            let t = virtual_tree(loaded);
            let all = probe(t.path());
            assert!(all[0].drivers.is_empty(), "{loaded:?}");
            assert_eq!(all[0].plan().module, None, "{loaded:?}");
        }
    }

    #[test]
    fn the_timeout_is_clamped_to_what_the_driver_accepts() {
        let t = tree(Some("15"));
        let all = probe(t.path());
        assert_eq!(choose(&all).unwrap().plan().timeout_secs, 15);
        let mut w = all[1].clone();
        w.max_timeout = Some(0);
        w.min_timeout = Some(90);
        assert_eq!(w.ramdisk_timeout(), 90);
    }

    #[test]
    fn no_watchdog_or_only_softdog_chooses_none() {
        let t = tempfile::tempdir().unwrap();
        assert!(probe(t.path()).is_empty());
        let t = tree(None);
        let all = probe(t.path());
        assert_eq!(choose(&all[..1]), None);
        assert_eq!(plan_for(&all[..1]), WatchdogPlan::default());
        assert_eq!(plan_for(&[]).device, None);
        assert_eq!(plan_for(&all).device.as_deref(), Some("/dev/watchdog1"));
    }
}
