//! What stage 2 needs from the machine, behind one trait so the state
//! machine in [`crate::stage`] is tested with a fake and runs for real as
//! PID 1 with [`crate::live::LiveSystem`].

use crate::target::Disk;
use std::path::Path;
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
    /// Where payload paths are rooted (`/` as PID 1).
    fn payload_root(&self) -> &Path;
    /// Wait a little (for disks to appear).
    fn sleep(&self, d: Duration);
}
