//! Stage 1's side of the one-shot boot strategies: one file per strategy
//! behind [`Armer`]. The pure logic (what to write, how to encode it) lives
//! in the `migrd-bootloaders` crate; this layer reads the device, decides,
//! and hands the resulting [`Change`]s to the undo journal.
//!
//! The flow in [`super::run_at`]: `prepare` (before the ramdisk is built: may
//! refuse, and says what stage 2 must disarm) → the ramdisk is built with
//! that plan → the operator confirms → `changes` are applied through the
//! journal → `reboot`.

pub mod efi;
pub mod grub;
pub mod kexec;
pub mod rpi_boot;
pub mod rpi_config;
pub mod rpi_tryboot;
pub mod uboot;

use super::kernel::RunningKernel;
use crate::commands::migrate_args::MigrateArgs;
use crate::probe::Facts;
use crate::ramdisk::Built;
use anyhow::{bail, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::StrategyKind;
use migrd_init::plan::{BootStrategy, DisarmAction};
use std::path::{Path, PathBuf};

/// What every strategy can read.
pub struct Ctx<'a> {
    /// Root of the device's filesystem (`/`, a fixture tree in tests).
    pub root: &'a Path,
    /// The probe's facts.
    pub facts: &'a Facts,
    /// The running kernel (the ramdisk boots it).
    pub kernel: &'a RunningKernel,
    /// The operator's flags.
    pub args: &'a MigrateArgs,
}

impl Ctx<'_> {
    /// A device path (`/boot/x`) under the root.
    pub fn on(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// A path under the root as the device sees it (`/boot/x`).
    pub fn device_path(&self, p: &Path) -> PathBuf {
        PathBuf::from("/").join(p.strip_prefix(self.root).unwrap_or(p))
    }
}

/// What a strategy decided before the ramdisk is built.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    /// Undo steps stage 2 runs first thing (the plan's `boot.disarm`).
    pub disarm: Vec<DisarmAction>,
    /// Files carried inside the ramdisk for the disarm steps (saved
    /// originals): path inside the ramdisk, bytes.
    pub ramdisk_files: Vec<(String, Vec<u8>)>,
    /// Kernel arguments the strategy needs on the ramdisk's command line.
    pub cmdline_extra: Vec<String>,
}

/// One strategy, as stage 1 runs it.
pub trait Armer {
    /// Which strategy this is.
    fn kind(&self) -> StrategyKind;
    /// The plan's boot strategy (tells stage 2 whether a reboot falls back
    /// by itself); known after `prepare`.
    fn plan_strategy(&self) -> BootStrategy {
        self.kind().plan_strategy()
    }
    /// Check the strategy can make a one-shot boot here (refuse with the
    /// reason and what to do otherwise) and say what stage 2 must undo.
    /// Changes nothing on the device.
    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared>;
    /// The changes that arm the one-shot boot into `built`, applied through
    /// the undo journal in order (the last one is the one that makes the
    /// next boot different).
    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>>;
    /// Arm what is not a file change, after the journaled changes and also
    /// with `--no-reboot` (kexec loads the kernel and ramdisk into memory).
    /// On error nothing may stay armed by this step.
    fn activate(&self, _ctx: &Ctx, _built: &Built) -> Result<()> {
        Ok(())
    }
    /// Start the armed boot. Most strategies reboot through the init system.
    fn reboot(&self, _ctx: &Ctx, _built: &Built) -> Result<()> {
        reboot_system()
    }
    /// What to tell the operator who asked for `--no-reboot`.
    fn no_reboot_hint(&self) -> &'static str {
        "reboot when ready"
    }
}

/// The armer for a strategy.
pub fn armer(kind: StrategyKind) -> Result<Box<dyn Armer>> {
    match kind {
        StrategyKind::Grub => Ok(Box::new(grub::GrubArmer::default())),
        StrategyKind::Efi => Ok(Box::new(efi::EfiArmer::default())),
        StrategyKind::RpiTryboot => Ok(Box::new(rpi_tryboot::TrybootArmer::default())),
        StrategyKind::RpiConfig => Ok(Box::new(rpi_config::ConfigArmer::default())),
        StrategyKind::Uboot => Ok(Box::new(uboot::UbootArmer::default())),
        StrategyKind::Kexec => Ok(Box::new(kexec::KexecArmer)),
    }
}

/// Reboot through the init system.
pub fn reboot_system() -> Result<()> {
    println!("rebooting");
    for cmd in [["systemctl", "reboot"], ["reboot", ""]] {
        let mut c = std::process::Command::new(cmd[0]);
        if !cmd[1].is_empty() {
            c.arg(cmd[1]);
        }
        if let Ok(st) = c.status() {
            if st.success() {
                return Ok(());
            }
        }
    }
    bail!("could not reboot (systemctl reboot and reboot failed); reboot the device yourself — the migration is armed")
}
