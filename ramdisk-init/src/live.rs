//! The real machine, as PID 1 sees it: early mounts, console, module
//! loading with `finit_module`, power control.

use crate::plan::PLAN_PATH;
use crate::system::{ModuleLoad, System};
use crate::target::{self, Disk, SysRoot};
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The live system under PID 1.
pub struct LiveSystem {
    root: PathBuf,
}

impl Default for LiveSystem {
    fn default() -> Self {
        LiveSystem {
            root: PathBuf::from("/"),
        }
    }
}

fn mount_once(src: &str, target: &str, fstype: &str) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    match mount(
        Some(src),
        target,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(e) => Err(format!("mounting {fstype} on {target}: {e}")),
    }
}

/// Reopen stdin/stdout/stderr on `/dev/console`: the kernel opens it for
/// init only if it existed when init started.
pub fn attach_console() -> Result<(), String> {
    let c = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .map_err(|e| format!("opening /dev/console: {e}"))?;
    for fd in 0..3 {
        if c.as_raw_fd() != fd {
            nix::unistd::dup2(c.as_raw_fd(), fd).map_err(|e| format!("dup2 console: {e}"))?;
        }
    }
    Ok(())
}

impl System for LiveSystem {
    fn setup(&mut self) -> Result<(), String> {
        mount_once("devtmpfs", "/dev", "devtmpfs")?;
        mount_once("proc", "/proc", "proc")?;
        mount_once("sysfs", "/sys", "sysfs")?;
        // The console may already be attached; a failure here is not fatal
        // because the events still go to whatever fd 1 is.
        let _ = attach_console();
        Ok(())
    }

    fn read_plan(&self) -> Result<String, String> {
        std::fs::read_to_string(PLAN_PATH).map_err(|e| format!("reading {PLAN_PATH}: {e}"))
    }

    fn load_module(&mut self, path: &str) -> Result<ModuleLoad, String> {
        let f = File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
        let compressed = [".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|s| path.ends_with(s));
        let flags = if compressed {
            ModuleInitFlags::from_bits_retain(4) // MODULE_INIT_COMPRESSED_FILE
        } else {
            ModuleInitFlags::empty()
        };
        let params = CString::default();
        match finit_module(&f, &params, flags) {
            Ok(()) => Ok(ModuleLoad::Loaded),
            Err(Errno::EEXIST) => Ok(ModuleLoad::AlreadyLoaded),
            Err(Errno::ENOENT) => Ok(ModuleLoad::NeedsDependency),
            Err(Errno::ENODEV) | Err(Errno::ENXIO) => Ok(ModuleLoad::NoDevice),
            Err(e) => Err(e.to_string()),
        }
    }

    fn disks(&self) -> Result<Vec<Disk>, String> {
        target::scan(&SysRoot::live()).map_err(|e| format!("listing /sys/block: {e}"))
    }

    fn payload_root(&self) -> &Path {
        &self.root
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Flush disks and power off or reboot. PID 1 must never return, so if the
/// kernel refuses, this waits forever (the watchdog or `panic=` takes over).
pub fn leave(power_off: bool) -> ! {
    nix::unistd::sync();
    let mode = if power_off {
        RebootMode::RB_POWER_OFF
    } else {
        RebootMode::RB_AUTOBOOT
    };
    let _ = reboot(mode);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
