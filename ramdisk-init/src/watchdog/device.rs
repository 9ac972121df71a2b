//! One hardware watchdog, as PID 1 holds it: opening `/dev/watchdogN`
//! starts the countdown, [`Watchdog::pet`] restarts it, and only the magic
//! close (`V` written before closing, [`Watchdog::disarm`]) stops it. A
//! watchdog dropped without it keeps counting (the driver warns "unexpected
//! close, not stopping watchdog"), which is what a crashing PID 1 wants.
//! Kernels built with `CONFIG_WATCHDOG_NOWAYOUT` ignore the magic close:
//! there the countdown can never stop.

use super::ioctl;
use crate::plan::WatchdogPlan;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// An armed watchdog.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
    timeout_secs: u32,
}

impl Watchdog {
    /// Open (and so arm) the watchdog at `path` and ask for `timeout_secs`.
    /// A driver that refuses that timeout keeps its own, read back. When
    /// neither works the device is not a watchdog this code can drive: it
    /// is closed the magic way and the error returned.
    pub fn arm(path: &Path, timeout_secs: u32) -> Result<Watchdog, String> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        let got = match ioctl::set_timeout(file.as_fd(), timeout_secs) {
            Ok(t) if t > 0 => Ok(t),
            _ => ioctl::get_timeout(file.as_fd()),
        };
        let mut wd = Watchdog {
            file,
            path: path.to_path_buf(),
            timeout_secs: 0,
        };
        match got {
            Ok(t) if t > 0 => {
                wd.timeout_secs = t;
                Ok(wd)
            }
            Ok(_) => Err(wd.give_up("the driver reports a timeout of 0".into())),
            Err(e) => Err(wd.give_up(format!("setting and reading its timeout: {e}"))),
        }
    }

    fn give_up(self, why: String) -> String {
        let path = self.path.display().to_string();
        match self.disarm() {
            Ok(()) => format!("{path}: {why}"),
            Err(e) => format!("{path}: {why}; and it may still be counting: {e}"),
        }
    }

    /// The timeout the driver set, in seconds.
    pub fn timeout_secs(&self) -> u32 {
        self.timeout_secs
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Restart the countdown.
    pub fn pet(&self) -> Result<(), String> {
        ioctl::keepalive(self.file.as_fd())
            .map_err(|e| format!("petting {}: {e}", self.path.display()))
    }

    /// Stop the countdown: the magic close. For a clean exit only (and
    /// before powering off, where a still-counting watchdog would reset
    /// the machine into whatever it boots next).
    pub fn disarm(mut self) -> Result<(), String> {
        self.magic_close()
    }

    fn magic_close(&mut self) -> Result<(), String> {
        self.file
            .write_all(b"V")
            .map_err(|e| format!("magic close of {}: {e}", self.path.display()))
    }
}

impl crate::guard::HardwareWatchdog for Watchdog {
    fn keepalive(&mut self) -> Result<(), String> {
        self.pet()
    }
    fn disarm(&mut self) -> Result<(), String> {
        self.magic_close()
    }
}

/// Which device node to open for the plan's watchdog, with `sys` the sysfs
/// root and `dev` the device folder: the watchdog whose `identity` matches
/// the plan's (numbers can change between the old OS and the ramdisk),
/// else the plan's path when it exists, else none.
pub fn locate(sys: &Path, dev: &Path, plan: &WatchdogPlan) -> Option<PathBuf> {
    if let Some(want) = plan.identity.as_deref() {
        let class = sys.join("class/watchdog");
        let mut names: Vec<PathBuf> = std::fs::read_dir(class)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for n in names {
            let id = std::fs::read_to_string(n.join("identity")).unwrap_or_default();
            if id.trim() == want {
                return n.file_name().map(|f| dev.join(f));
            }
        }
    }
    let p = PathBuf::from(plan.device.as_deref()?);
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that is no watchdog is refused, and left closed the magic
    /// way (a `V` written) so a half-opened device would not go on
    /// counting unnoticed.
    #[test]
    fn a_device_without_the_ioctls_is_refused_and_magic_closed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("watchdog0");
        std::fs::write(&p, b"").unwrap();
        let e = Watchdog::arm(&p, 60).unwrap_err();
        assert!(e.contains("watchdog0") && e.contains("timeout"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"V");
        assert!(Watchdog::arm(&d.path().join("nothing"), 60).is_err());
    }

    fn sysfs(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (name, id) in entries {
            let w = t.path().join("sys/class/watchdog").join(name);
            std::fs::create_dir_all(&w).unwrap();
            std::fs::write(w.join("identity"), format!("{id}\n")).unwrap();
        }
        std::fs::create_dir_all(t.path().join("dev")).unwrap();
        t
    }

    #[test]
    fn the_watchdog_is_found_by_identity_whatever_its_number() {
        let t = sysfs(&[
            ("watchdog0", "Software Watchdog"),
            ("watchdog1", "i6300ESB timer"),
        ]);
        let plan = WatchdogPlan {
            device: Some("/dev/watchdog0".into()),
            identity: Some("i6300ESB timer".into()),
            ..Default::default()
        };
        let r = t.path();
        assert_eq!(
            locate(&r.join("sys"), &r.join("dev"), &plan),
            Some(r.join("dev/watchdog1"))
        );
    }

    #[test]
    fn without_a_matching_identity_the_planned_path_is_used_only_if_present() {
        let t = sysfs(&[("watchdog0", "Software Watchdog")]);
        let r = t.path();
        let node = r.join("dev/watchdog0");
        let mut plan = WatchdogPlan {
            device: Some(node.display().to_string()),
            identity: Some("Broadcom BCM2835 Watchdog timer".into()),
            ..Default::default()
        };
        assert_eq!(locate(&r.join("sys"), &r.join("dev"), &plan), None);
        std::fs::write(&node, b"").unwrap();
        assert_eq!(locate(&r.join("sys"), &r.join("dev"), &plan), Some(node));
        plan.device = None;
        assert_eq!(locate(&r.join("sys"), &r.join("dev"), &plan), None);
    }
}
