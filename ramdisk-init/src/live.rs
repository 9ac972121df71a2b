//! The real machine, as PID 1 sees it: early mounts, console, module
//! loading with `finit_module`, power control.

use crate::efi::table::TablePart;
use crate::flash::expect::Expected;
use crate::flash::reread_later::RereadLater;
use crate::flash::touched::Touched;
use crate::flash::{self, Device, FileDevice, OpenMode};
use crate::fsprobe::{self, FsInfo};
use crate::plan::{DecodedImage, WatchdogPlan, PLAN_PATH};
use crate::system::{
    ArmedWatchdog, FlashFailure, FlashProgress, Flashed, ModuleLoad, System, TargetGeometry,
};
use crate::target::{self, Disk, SysRoot};
use crate::watchdog::{self as wd, Watchdog};
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `/dev/<disk>` opened as the flash writes it: read-write, `O_DIRECT`
/// where the device allows, size and sector size read by ioctl.
fn open_disk(disk: &str) -> Result<FileDevice, flash::FlashError> {
    FileDevice::open(
        &Path::new("/dev").join(disk),
        OpenMode {
            create: false,
            direct: true,
        },
    )
}

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

    fn partitions(&self, disk: &str) -> Result<Vec<PathBuf>, String> {
        let dir = Path::new("/sys/block").join(disk);
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let mut parts: Vec<(u32, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let n: u32 = std::fs::read_to_string(e.path().join("partition"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                Some((n, Path::new("/dev").join(e.file_name())))
            })
            .collect();
        parts.sort();
        Ok(parts.into_iter().map(|(_, p)| p).collect())
    }

    fn partuuids(&self, disk: &str) -> Result<Vec<(PathBuf, String)>, String> {
        let node = Path::new("/dev").join(disk);
        let mut f = File::open(&node).map_err(|e| format!("opening {}: {e}", node.display()))?;
        let ids = crate::partuuid::read_numbered(&mut f)
            .map_err(|e| format!("reading the partition table of {}: {e}", node.display()))?;
        let numbered: Vec<(u32, PathBuf)> = self
            .partitions(disk)?
            .into_iter()
            .filter_map(|dev| {
                let name = dev.file_name()?.to_string_lossy().to_string();
                let n = std::fs::read_to_string(
                    Path::new("/sys/class/block").join(name).join("partition"),
                )
                .ok()?
                .trim()
                .parse()
                .ok()?;
                Some((n, dev))
            })
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|(n, id)| {
                numbered
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map(|(_, dev)| (dev.clone(), id))
            })
            .collect())
    }

    fn fs_info(&self, dev: &Path) -> Option<FsInfo> {
        let mut f = File::open(dev).ok()?;
        fsprobe::probe(&mut f).ok().flatten()
    }

    fn mount(&mut self, dev: &Path, fstype: &str, at: &Path) -> Result<(), String> {
        std::fs::create_dir_all(at).map_err(|e| format!("creating {}: {e}", at.display()))?;
        mount(
            Some(dev),
            at,
            Some(fstype),
            MsFlags::MS_NOATIME,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "mounting {} ({fstype}) on {}: {e}",
                dev.display(),
                at.display()
            )
        })
    }

    fn umount(&mut self, at: &Path) -> Result<(), String> {
        nix::unistd::sync();
        nix::mount::umount(at).map_err(|e| format!("unmounting {}: {e}", at.display()))
    }

    fn open_target(&mut self, disk: &str) -> Result<TargetGeometry, String> {
        let dev = open_disk(disk).map_err(|e| e.to_string())?;
        let size = dev
            .capacity()
            .ok_or_else(|| format!("/dev/{disk} reports no size"))?;
        Ok(TargetGeometry {
            size,
            sector_size: dev.sector_size(),
        })
    }

    fn flash(
        &mut self,
        image: &Path,
        expected: Option<&DecodedImage>,
        disk: &str,
        progress: &mut dyn FnMut(FlashProgress),
    ) -> Result<Flashed, FlashFailure> {
        let expected = Expected::from_plan(expected);
        let failed = |e: flash::FlashError, wrote: bool| FlashFailure {
            reason: e.to_string(),
            wrote,
            retry: e.retryable(),
        };
        let mut dev = open_disk(disk).map_err(|e| failed(e, false))?;
        let opts = expected.options(flash::Options::default());
        let mut cb = |p: &flash::Progress| {
            progress(FlashProgress {
                written: p.bytes,
                total: p.total,
            });
        };
        let mut later = RereadLater::new(&mut dev);
        let mut watched = Touched::new(&mut later);
        let r = match flash::write_image(image, &mut watched, &opts, &mut cb) {
            Ok(r) => r,
            Err(e) => return Err(failed(e, watched.wrote())),
        };
        // A hash that differs after a verified write: the disk holds the
        // whole stream, just not the one stage 1 checked.
        expected.check(image, &r).map_err(|e| failed(e, true))?;
        Ok(Flashed {
            bytes: r.bytes,
            sha256: r.sha256,
            verified: r.verified,
        })
    }

    fn reread_partitions(&mut self, disk: &str) -> Result<(), String> {
        let mut dev = open_disk(disk).map_err(|e| e.to_string())?;
        dev.reread_partitions()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn add_partitions(&mut self, disk: &str, parts: &[TablePart]) -> Result<(), String> {
        let p = Path::new("/dev").join(disk);
        let f = File::open(&p).map_err(|e| format!("opening {}: {e}", p.display()))?;
        let ss = flash::ioctl::logical_sector_size(f.as_fd())
            .map_err(|e| format!("sector size of {}: {}", p.display(), e.desc()))?;
        crate::partadd::replace(f.as_fd(), &p.display().to_string(), parts, ss)
    }

    fn efivarfs(&mut self) -> Result<PathBuf, String> {
        let dir = Path::new(crate::efi::vars::DEFAULT_DIR);
        if !Path::new("/sys/firmware/efi").is_dir() {
            return Err("not booted by UEFI (/sys/firmware/efi is missing)".into());
        }
        // Mounted already when the folder lists any variable.
        let listed = std::fs::read_dir(dir).map(|mut d| d.next().is_some());
        if !matches!(listed, Ok(true)) {
            mount_once("efivarfs", crate::efi::vars::DEFAULT_DIR, "efivarfs")?;
        }
        Ok(dir.to_path_buf())
    }

    fn partition_table(&self, disk: &str) -> Result<Vec<TablePart>, String> {
        let p = Path::new("/dev").join(disk);
        let mut f = File::open(&p).map_err(|e| format!("opening {}: {e}", p.display()))?;
        crate::efi::table::read(&mut f)
            .map_err(|e| format!("reading the partition table of {}: {e}", p.display()))
    }

    fn payload_root(&self) -> &Path {
        &self.root
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn open_watchdog(&mut self, plan: &WatchdogPlan) -> Result<ArmedWatchdog, String> {
        let Some(dev) = wd::device::locate(Path::new("/sys"), Path::new("/dev"), plan) else {
            return Err(match (&plan.identity, &plan.device) {
                (None, None) => "the plan names no hardware watchdog".into(),
                (id, dev) => format!(
                    "no watchdog {} found (is its driver loaded?)",
                    id.as_deref().or(dev.as_deref()).unwrap_or_default()
                ),
            });
        };
        let w = Watchdog::arm(&dev, plan.timeout_secs)?;
        Ok(ArmedWatchdog {
            timeout_secs: w.timeout_secs(),
            path: dev,
            device: Box::new(w),
        })
    }

    fn relax_hang_panic(&mut self) -> Result<String, String> {
        wd::hang::relax_hung_task_panic(Path::new("/proc"), wd::hang::FLASH_HUNG_TASK_TIMEOUT_SECS)
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
