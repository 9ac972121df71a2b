//! What stage 2 needs from the machine, behind one trait so the state
//! machine in [`crate::stage`] is tested with a fake and runs for real as
//! PID 1 with [`crate::live::LiveSystem`].

use crate::efi::table::TablePart;
use crate::fsprobe::FsInfo;
use crate::plan::{DecodedImage, WatchdogPlan};
use crate::target::Disk;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Result of asking the kernel to load one module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleLoad {
    /// Loaded now.
    Loaded,
    /// Was already loaded (or built in).
    AlreadyLoaded,
    /// A symbol it needs is not there yet: a dependency must load first.
    NeedsDependency,
    /// The module refused because its hardware or CPU feature is absent
    /// (ENODEV/ENXIO): normal for a ramdisk that carries drivers for many
    /// machines.
    NoDevice,
}

/// What a flash run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flashed {
    /// Decoded bytes written.
    pub bytes: u64,
    /// SHA-256 of the decoded image.
    pub sha256: String,
    /// Everything read back and compared.
    pub verified: bool,
}

/// The target disk as the flash engine will see it, read through the same
/// open and ioctls before the point of no return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetGeometry {
    /// Size in bytes (BLKGETSIZE64).
    pub size: u64,
    /// Logical sector size in bytes (BLKSSZGET).
    pub sector_size: u32,
}

/// Why a flash failed, and whether it wrote anything to the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlashFailure {
    /// What went wrong.
    pub reason: String,
    /// A write reached the disk (or may have): the old OS is no longer
    /// known to be whole. `false` means the disk is as it was.
    pub wrote: bool,
    /// Trying again may help (an I/O error, a read-back mismatch). `false`
    /// for a failure of the input itself (it does not decode, does not
    /// fit), which fails the same way every time.
    pub retry: bool,
}

/// Flash progress, for events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlashProgress {
    /// Decoded bytes written so far.
    pub written: u64,
    /// Total decoded bytes, when known.
    pub total: Option<u64>,
}

/// A hardware watchdog opened for the guard, with the timeout its driver
/// set.
pub struct ArmedWatchdog {
    /// The device, for the guard's thread.
    pub device: Box<dyn crate::guard::HardwareWatchdog>,
    /// Its node, for the log.
    pub path: PathBuf,
    /// Seconds before it resets the machine unless petted.
    pub timeout_secs: u32,
}

/// The machine as stage 2 sees it.
pub trait System {
    /// Mount devtmpfs, proc and sysfs and attach the console.
    fn setup(&mut self) -> Result<(), String>;
    /// Text of the plan file.
    fn read_plan(&self) -> Result<String, String>;
    /// Load one kernel module from a path inside the ramdisk.
    fn load_module(&mut self, path: &str) -> Result<ModuleLoad, String>;
    /// The whole disks present now.
    fn disks(&self) -> Result<Vec<Disk>, String>;
    /// Device nodes of the partitions of a disk, in partition order.
    fn partitions(&self, disk: &str) -> Result<Vec<PathBuf>, String>;
    /// The filesystem on a partition, if recognised.
    fn fs_info(&self, dev: &Path) -> Option<FsInfo>;
    /// Each partition of a disk with its PARTUUID, lowercase, as the kernel
    /// names it (GPT partition GUID, or MBR `<signature>-<NN>`).
    fn partuuids(&self, disk: &str) -> Result<Vec<(PathBuf, String)>, String>;
    /// Mount a filesystem read-write.
    fn mount(&mut self, dev: &Path, fstype: &str, at: &Path) -> Result<(), String>;
    /// Unmount it (after syncing).
    fn umount(&mut self, at: &Path) -> Result<(), String>;
    /// Open the target disk the way the flash will (read-write, direct
    /// I/O) and read its size and sector size; writes nothing.
    fn open_target(&mut self, disk: &str) -> Result<TargetGeometry, String>;
    /// Write an image to a whole disk with the flash engine and read it
    /// back, checking it decodes to `expected` (stage 1's size and SHA-256,
    /// when the plan has them); leaves the partition table re-read to
    /// [`System::reread_partitions`].
    fn flash(
        &mut self,
        image: &Path,
        expected: Option<&DecodedImage>,
        disk: &str,
        progress: &mut dyn FnMut(FlashProgress),
    ) -> Result<Flashed, FlashFailure>;
    /// Ask the kernel to re-read the disk's partition table (BLKRRPART,
    /// retried while the disk is busy).
    fn reread_partitions(&mut self, disk: &str) -> Result<(), String>;
    /// Tell the kernel about each of `parts` one by one (BLKPG), replacing
    /// any partition of the same number: for when it keeps the old table.
    fn add_partitions(&mut self, disk: &str, parts: &[TablePart]) -> Result<(), String>;
    /// The efivarfs folder, mounted first if needed. Fails when the machine
    /// was not booted by UEFI.
    fn efivarfs(&mut self) -> Result<PathBuf, String>;
    /// The partitions of a disk as its table lists them.
    fn partition_table(&self, disk: &str) -> Result<Vec<TablePart>, String>;
    /// Where ramdisk paths are rooted (`/` as PID 1).
    fn payload_root(&self) -> &Path;
    /// Wait a little (for disks to appear).
    fn sleep(&self, d: Duration);

    /// Open (and so arm) the plan's hardware watchdog, found by identity
    /// (see [`crate::watchdog::device::locate`]), with its timeout; the
    /// deadline guard's thread pets it from then on. Default: no watchdog
    /// (the fake's, until it says otherwise).
    fn open_watchdog(&mut self, plan: &WatchdogPlan) -> Result<ArmedWatchdog, String> {
        let _ = plan;
        Err("no hardware watchdog".into())
    }

    /// At the point of no return: the kernel's hung-task detector stops
    /// panicking (a slow card's writeback must not reboot a half-written
    /// disk). Returns what changed, for the log. Default: nothing to do.
    fn relax_hang_panic(&mut self) -> Result<String, String> {
        Ok("nothing to relax".into())
    }
}
