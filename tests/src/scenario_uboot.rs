//! An ARM U-Boot device prepared for a migration: a fresh
//! [`arm64_legacy`] disk (arm64, or 32-bit for [`Board::VirtArmv7`]), the
//! synthetic balenaOS for U-Boot of the same architecture, and a tools disk
//! with that architecture's `migrd`, its init, the image and a config.json
//! (the x86 counterpart is [`crate::scenario`]).

use crate::guest::Guest;
use crate::images::arm64_legacy::{self, Board};
use crate::images::{balena, data_disk};
use crate::paths;
use crate::qemu::Qemu;
use crate::scenario::{boot_unattended, config_json_for, STEP, TOOLS_LABEL};
use anyhow::{ensure, Result};
use std::time::{Duration, Instant};

/// The Rust target of the arm64 devices' binaries.
pub const TRIPLE: &str = "aarch64-unknown-linux-musl";

/// A prepared arm64 U-Boot device.
pub struct UbootLab {
    /// Logs and disks of this run.
    pub logs: paths::LogDir,
    /// QEMU (virt + U-Boot) with the device's disk and the tools disk.
    pub qemu: Qemu,
    /// SHA-256 of the device's canary file.
    pub canary_sha256: String,
    /// The device's disk (raw): a power-cut test copies it to restore a
    /// state.
    pub disk: std::path::PathBuf,
    /// When preparation started.
    pub t0: Instant,
    /// The board the device is.
    pub board: Board,
}

/// The synthetic balenaOS a U-Boot `board` migrates to.
pub fn balena_boot(board: Board) -> Result<balena::Boot> {
    match board {
        Board::Virt | Board::VirtBootcount => Ok(balena::Boot::Uboot),
        Board::VirtArmv7 => Ok(balena::Boot::UbootArmv7),
        Board::Pi2 | Board::Pi3 | Board::Pi4 => {
            anyhow::bail!("scenario_uboot is for U-Boot boards")
        }
    }
}

/// A fresh arm64 device for `scenario`, logs in `target/lab/logs/<scenario>/`.
pub fn lab(scenario: &str) -> Result<UbootLab> {
    lab_on(scenario, Board::Virt)
}

/// Like [`lab`], for a `virt` board of another kind
/// ([`Board::VirtBootcount`], [`Board::VirtArmv7`]).
pub fn lab_on(scenario: &str, board: Board) -> Result<UbootLab> {
    let t0 = Instant::now();
    let logs = paths::log_dir(scenario)?;
    let arch = board.arch();
    let boot = balena_boot(board)?;
    let dev = arm64_legacy::image_for(&logs, board, &[])?;
    let img = balena::image_for(&logs.join("balena"), boot)?;
    let stage = logs.join("tools");
    std::fs::create_dir_all(&stage)?;
    std::fs::copy(arch.migrd_bin()?, stage.join("migrd"))?;
    std::fs::copy(
        paths::init_bin(arch.triple())?,
        stage.join(format!("migrd-init-{}", arch.migrd_name())),
    )?;
    std::fs::copy(&img.gz, stage.join("balena.img.gz"))?;
    std::fs::write(
        stage.join("config.json"),
        config_json_for(boot.device_type()),
    )?;
    let size = std::fs::metadata(&img.gz)?.len() + (64 << 20);
    data_disk::ext4_disk(
        &stage,
        &logs.join("tools.img"),
        TOOLS_LABEL,
        (size >> 20) + 32,
    )?;
    let mut qemu = arm64_legacy::qemu(&dev, &logs);
    qemu.disk(&logs.join("tools.img"), Some("TOOLS0001"));
    eprintln!(
        "{scenario}: device prepared in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(UbootLab {
        logs,
        qemu,
        canary_sha256: dev.canary_sha256,
        disk: dev.disk,
        t0,
        board,
    })
}

impl UbootLab {
    /// Boot the old OS (through U-Boot) to its shell, with the tools disk
    /// mounted on /mnt.
    pub fn old_os(&self, name: &str) -> Result<Guest> {
        let mut g = arm64_legacy::boot_board(&self.qemu, name, self.board)?;
        g.run_ok(
            &format!("mount -o ro LABEL={TOOLS_LABEL} /mnt || mount -o ro /dev/vdb /mnt"),
            Duration::from_secs(60),
        )?;
        Ok(g)
    }

    /// Boot whatever the disk boots now and wait for QEMU to exit; returns
    /// the serial log.
    pub fn unattended(&self, name: &str) -> Result<String> {
        boot_unattended(&self.qemu, name)
    }

    /// Back in the old OS after the ramdisk went back: canary intact, the
    /// one-shot flag cleared by U-Boot; returns what `migrd status` says.
    pub fn check_back_in_old_os(&self, name: &str) -> Result<String> {
        let mut g = self.old_os(name)?;
        crate::scenario::check_canary(&mut g, arm64_legacy::CANARY, &self.canary_sha256)?;
        let flag = g.run_ok(
            &format!("cat {}", arm64_legacy::ONESHOT_FLAG),
            Duration::from_secs(30),
        )?;
        ensure!(
            flag.trim_end_matches('\0').trim() == "migrd_oneshot=0",
            "one-shot flag not cleared: {flag:?}"
        );
        let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
        g.send_line("poweroff")?;
        g.wait_exit(STEP)?;
        Ok(status)
    }
}
