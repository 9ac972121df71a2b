//! Power cuts for the lab's devices: QEMU is killed (SIGKILL, so the
//! guest's page cache and anything its kernel had not yet written are
//! lost; the disk files keep what reached them, as a real disk keeps what
//! the controller acknowledged) and the device is started again from the
//! same files.
//!
//! - [`cut_when`]: cut a running boot the moment the ramdisk prints a given
//!   stage-2 event.
//! - [`Saved`]: a copy of a device's persistent state (disk, SD card, UEFI
//!   variable store) taken at a cut, put back to start another cut from
//!   the same point.
//!
//! The tests: `power_cut_bios` (every stage-2 step, the flash, injection)
//! and `power_cut_boot_paths` (arming and the one-shot on UEFI BootNext,
//! U-Boot and the Raspberry Pi's config.txt).

use crate::events::{self, summary};
use crate::guest::Guest;
use crate::scenario::STEP;
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Copy `from` to `to`, keeping holes (the lab's disks are sparse).
pub fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    let st = std::process::Command::new("cp")
        .args(["--sparse=always", "-f"])
        .arg(from)
        .arg(to)
        .status()
        .context("cp")?;
    ensure!(st.success(), "cp {} {}", from.display(), to.display());
    Ok(())
}

/// A device's persistent state as it was at one moment.
pub struct Saved {
    /// (the live file QEMU uses, its saved copy)
    files: Vec<(PathBuf, PathBuf)>,
}

impl Saved {
    /// Copy each of `live` into `dir` (which must be outside the scenario's
    /// pruned folder if the state must outlive the scenario).
    pub fn take(dir: &Path, live: &[&Path]) -> Result<Saved> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (i, l) in live.iter().enumerate() {
            let name = l.file_name().context("a state file without a name")?;
            let copy = dir.join(format!("{i}-{}", name.to_string_lossy()));
            copy_sparse(l, &copy)?;
            files.push((l.to_path_buf(), copy));
        }
        Ok(Saved { files })
    }

    /// Put the saved state back in place of the live files.
    pub fn restore(&self) -> Result<()> {
        for (live, copy) in &self.files {
            copy_sparse(copy, live)?;
        }
        Ok(())
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (_, copy) in &self.files {
            let _ = std::fs::remove_file(copy);
        }
    }
}

/// Cut the power of the running boot `g` once its serial shows a stage-2
/// event of `step` (with `status`, if given) for which `pick` holds; returns
/// the serial up to the cut. Fails if `old_prompt` (the old OS's shell
/// prompt) shows first: the device booted the old OS, not the ramdisk.
pub fn cut_when(
    g: &mut Guest,
    step: &str,
    status: Option<&str>,
    pick: impl Fn(&Value) -> bool,
    old_prompt: &str,
) -> Result<String> {
    let t0 = Instant::now();
    loop {
        let serial = g.serial();
        let ev = events::parse(&serial);
        let hit = ev
            .iter()
            .any(|e| e["step"] == step && status.map_or(true, |s| e["status"] == s) && pick(e));
        if hit {
            g.kill();
            return Ok(serial);
        }
        ensure!(
            !serial.contains(old_prompt),
            "{}: the old OS booted, not the migration ramdisk: {:?}",
            g.log().display(),
            summary(&ev)
        );
        ensure!(
            g.exited()?.is_none(),
            "{}: QEMU exited before the cut at {step}: {:?}",
            g.log().display(),
            summary(&ev)
        );
        ensure!(
            t0.elapsed() < STEP,
            "{}: no {step} event: {:?}",
            g.log().display(),
            summary(&ev)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the ramdisk printed an event of `step` in `serial` (so it ran,
/// at least up to that step).
pub fn ran(serial: &str, step: &str) -> bool {
    events::parse(serial).iter().any(|e| e["step"] == step)
}

/// What a boot came up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Came {
    /// The old OS's shell prompt showed.
    OldOs,
    /// The migration ramdisk printed its first event.
    Ramdisk,
}

/// Wait until boot `g` shows `old_prompt` or the ramdisk's `start` event
/// (without consuming the prompt: [`Guest::login`] still finds it).
pub fn old_os_or_ramdisk(g: &mut Guest, old_prompt: &str) -> Result<Came> {
    let t0 = Instant::now();
    loop {
        let serial = g.serial();
        if serial.contains(old_prompt) {
            return Ok(Came::OldOs);
        }
        if ran(&serial, "start") {
            return Ok(Came::Ramdisk);
        }
        ensure!(
            g.exited()?.is_none(),
            "{}: QEMU exited before the old OS or the ramdisk came up",
            g.log().display()
        );
        ensure!(
            t0.elapsed() < STEP,
            "{}: neither the old OS nor the ramdisk came up",
            g.log().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
