//! Probe: read-only facts about the device, gathered from a root prefix so
//! tests run on fixture trees (`tests/fixtures/*`). Nothing here writes.
//!
//! ```no_run
//! let facts = migrd::probe::probe(std::path::Path::new("/"));
//! println!("{:?} {:?}", facts.board.model, facts.boot.firmware);
//! ```

pub mod arch;
pub mod board;
pub mod device_types;
pub mod disks;
pub mod drivers;
pub mod firmware;
pub mod host;
pub mod kexec;
pub mod memory;
pub mod mounts;
pub mod os_release;
pub mod rootfs;
pub mod uboot;
pub mod watchdog;

use migrd_init::arch::Arch;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Everything the probe found.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    /// The root prefix probed (`/` on a live system).
    pub root: PathBuf,
    /// `uname -m`.
    pub kernel_machine: Option<String>,
    /// The migrd architecture of the kernel, if migrd has a stage 2 for it.
    pub arch: Option<Arch>,
    /// The board.
    pub board: board::Board,
    /// os-release (`None` when missing).
    pub os: Option<os_release::OsRelease>,
    /// Whether that OS is a supported source.
    pub os_support: os_release::Support,
    /// Boot chain.
    pub boot: firmware::BootFacts,
    /// Disks and what holds `/` and `/boot`.
    pub disks: disks::DiskFacts,
    /// Memory.
    pub memory: memory::Memory,
    /// The watchdog devices, each with its identity and timeouts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watchdog_devices: Vec<watchdog::WatchdogDevice>,
    /// Host facts.
    pub host: host::Host,
    /// The source OS is balenaOS (config and network profiles live in
    /// `/mnt/boot`).
    pub is_balena_os: bool,
}

/// Probe the system under `root`. Never fails: what cannot be read is
/// recorded as unknown and the checks decide whether that matters.
pub fn probe(root: &Path) -> Facts {
    let kernel_machine = arch::kernel_machine(root);
    let mounts = mounts::read(root);
    let board = board::probe(root, kernel_machine.as_deref());
    let disks = disks::probe(root, &mounts);
    let arch = kernel_machine.as_deref().and_then(arch::from_machine);
    let boot = firmware::probe(root, &board, &mounts, &disks, arch);
    let os = os_release::read(root);
    let os_support = match &os {
        Some(o) => os_release::support(o),
        None => os_release::Support::Unsupported {
            reason: "no /etc/os-release".into(),
        },
    };
    Facts {
        root: root.to_path_buf(),
        arch,
        kernel_machine,
        is_balena_os: os.as_ref().is_some_and(|o| o.id == "balena-os"),
        board,
        os,
        os_support,
        boot,
        disks,
        memory: memory::probe(root),
        watchdog_devices: watchdog::probe(root),
        host: host::probe(root),
    }
}
