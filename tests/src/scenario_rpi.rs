//! A Raspberry Pi prepared for a migration, booted the way its firmware
//! would boot it: before each boot the firmware model
//! ([`crate::rpi_firmware`], an emulator of the firmware's file selection,
//! not the firmware) reads the SD card's boot partition and picks the
//! kernel, initramfs files, command line and device tree; QEMU's `raspi3b`
//! then boots exactly those (it cannot run the GPU firmware itself).
//!
//! The device ([`arm64_legacy`] for [`Board::Pi3`] or [`Board::Pi4`]): Raspberry Pi OS
//! bookworm's boot files on a FAT partition at `/boot/firmware`, a busybox
//! root on ext4, Debian's arm64 kernel; the aarch64 `migrd`, its init, the
//! synthetic Pi balenaOS and a config.json in `/root/tools` (the SD card is
//! the only disk the machine has).

use crate::guest::Guest;
use crate::images::arm64_legacy::{self, Board};
use crate::images::balena;
use crate::paths;
use crate::qemu::Qemu;
use crate::rpi_firmware::{self, BootFs, FatImage, Firmware, Selection};
use crate::scenario::{config_json_for, STEP};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the tools are in the device.
pub const TOOLS: &str = "/root/tools";
/// The kernel's last line on a reboot or power-off ("reboot: Restarting
/// system", "reboot: Power down", "reboot: System halted"); a restart is
/// then proven by the machine's reset (see [`RpiLab::end`]).
pub const REBOOT: &str = "reboot: ";
/// How the kernel's restart line starts (with or without an argument).
pub const RESTARTING: &str = "reboot: Restarting system";
use crate::guest::RESTART_FAILED;
/// From the restart line to the machine's reset (QEMU's exit).
const RESET_TIMEOUT: Duration = Duration::from_secs(30);
/// How the kernel says it restarts with an argument (`reboot(2)` with
/// `LINUX_REBOOT_CMD_RESTART2`).
pub const RESTART_WITH: &str = "Restarting system with command '";

/// A prepared Raspberry Pi (a Pi 3, or the Pi 3 presented as a Pi 4).
pub struct RpiLab {
    /// Logs and disks of this run.
    pub logs: paths::LogDir,
    /// The SD card image.
    pub sd: PathBuf,
    /// SHA-256 of the device's canary file.
    pub canary_sha256: String,
    /// When preparation started.
    pub t0: Instant,
    /// The firmware's state across boots (the tryboot flag).
    pub firmware: Firmware,
    /// The board the device is.
    pub board: Board,
    /// For a Pi 2: the lock that keeps a second Pi 2 scenario from running
    /// beside this one ([`crate::slots::exclusive`]).
    _alone: Option<nix::fcntl::Flock<std::fs::File>>,
}

/// The first MBR partition of `disk`: (offset, length) in bytes.
fn first_partition(disk: &Path) -> Result<(u64, u64)> {
    let head = crate::report::read_head(disk, 512)?;
    ensure!(
        head.len() == 512 && head[510] == 0x55 && head[511] == 0xaa,
        "{}: no MBR",
        disk.display()
    );
    let le = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    Ok((u64::from(le(454)) * 512, u64::from(le(458)) * 512))
}

/// A fresh Pi `board` ([`Board::Pi3`] or [`Board::Pi4`]) for `scenario`,
/// logs in `target/lab/logs/<scenario>/`.
pub fn lab(scenario: &str, board: Board) -> Result<RpiLab> {
    // Before the slot (which the log folder takes): see slots::exclusive.
    let alone = match board {
        Board::Pi2 => Some(crate::slots::exclusive("raspi2b")?),
        _ => None,
    };
    let t0 = Instant::now();
    let logs = paths::log_dir(scenario)?;
    let boot = match board {
        Board::Pi2 => balena::Boot::Pi2,
        Board::Pi3 => balena::Boot::Pi3,
        Board::Pi4 => balena::Boot::Pi4,
        Board::Virt | Board::VirtArmv7 | Board::VirtBootcount => {
            anyhow::bail!("scenario_rpi::lab is for Raspberry Pi boards")
        }
    };
    let img = balena::image_for(&logs.join("balena"), boot)?;
    let config = logs.join("config.json");
    std::fs::write(&config, config_json_for(boot.device_type()))?;
    let arch = board.arch();
    let init = format!("/root/tools/migrd-init-{}", arch.migrd_name());
    let tools = [
        (arch.migrd_bin()?, "/root/tools/migrd"),
        (paths::init_bin(arch.triple())?, init.as_str()),
        (img.gz.clone(), "/root/tools/balena.img.gz"),
        (config, "/root/tools/config.json"),
    ];
    let dev = arm64_legacy::image_for(&logs, board, &tools)?;
    eprintln!(
        "{scenario}: device prepared in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(RpiLab {
        logs,
        sd: dev.disk,
        canary_sha256: dev.canary_sha256,
        t0,
        firmware: Firmware::default(),
        board,
        _alone: alone,
    })
}

impl RpiLab {
    /// The board as the firmware model knows it.
    fn firmware_board(&self) -> rpi_firmware::Board {
        match self.board {
            Board::Pi4 => rpi_firmware::Board::Pi4,
            Board::Pi2 => rpi_firmware::Board::Pi2,
            Board::Pi3 | Board::Virt | Board::VirtArmv7 | Board::VirtBootcount => {
                rpi_firmware::Board::Pi3
            }
        }
    }

    /// A file of the SD card's boot partition, read from the host.
    pub fn boot_file(&self, path: &str) -> Result<Vec<u8>> {
        let (off, len) = first_partition(&self.sd)?;
        FatImage::open(&self.sd, off, len)?
            .read(path)
            .with_context(|| format!("{path} is not on the boot partition"))
    }

    /// End boot `g`: wait for the kernel's reboot or power-off line and
    /// return it. A restart counts only when the machine really resets:
    /// the Pi restarts through its watchdog block, and QEMU's raspi
    /// machines emulate it, so under `-no-reboot` QEMU exits; a kernel
    /// that cannot reach it prints [`RESTART_FAILED`] and halts, which a
    /// real Pi would do forever, and fails the boot here. A power-off ends
    /// the boot either way (QEMU is stopped if the machine only halts).
    ///
    /// A restart whose argument contains "tryboot" sets the model's
    /// tryboot flag: the Raspberry Pi kernel's firmware driver hands such
    /// an argument to the firmware as the tryboot reboot flag; Debian's
    /// kernel, which the lab runs, prints the argument but does not forward
    /// it, so the model takes it from that line.
    pub fn end(&mut self, g: &mut Guest) -> Result<String> {
        let r = g
            .wait_for(REBOOT, STEP)
            .and_then(|_| g.wait_for("\n", Duration::from_secs(30)));
        let line = match r {
            Ok(l) => format!("{REBOOT}{}", l.trim_end()),
            Err(e) => {
                g.kill();
                return Err(e.context(format!(
                    "no reboot or power-off line; see {}",
                    g.log().display()
                )));
            }
        };
        if !line.starts_with(RESTARTING) {
            if g.wait_exit(Duration::from_secs(10)).is_err() {
                g.kill();
            }
            return Ok(line);
        }
        if let Some(cmd) = line.split(RESTART_WITH).nth(1) {
            if cmd.contains("tryboot") {
                self.firmware.tryboot_flag = true;
            }
        }
        let reset = g.wait_exit(RESET_TIMEOUT);
        ensure!(
            !g.serial().contains(RESTART_FAILED),
            "{line}, then {RESTART_FAILED:?}: the kernel could not reset the board \
             (is the watchdog driver bcm2835_wdt loaded?); see {}",
            g.log().display()
        );
        reset.with_context(|| format!("{line}, but the machine did not reset"))?;
        Ok(line)
    }

    /// What the firmware picks from the SD card's boot partition now (the
    /// tryboot flag is consumed), with the picked files copied out of it as
    /// `<name>.kernel`, `<name>.initrd` (the initramfs files one after the
    /// other, as the firmware loads them) and `<name>.dtb`.
    pub fn select(&mut self, name: &str) -> Result<(Selection, Qemu)> {
        let (off, len) = first_partition(&self.sd)?;
        let fat = FatImage::open(&self.sd, off, len)?;
        let sel = self
            .firmware
            .boot(&fat, self.firmware_board())
            .with_context(|| format!("the firmware model, boot {name}"))?;
        eprintln!(
            "{name}: firmware model read {} → kernel {}, initramfs {:?}, cmdline from {}: {}",
            sel.config_file, sel.kernel, sel.initramfs, sel.cmdline_file, sel.cmdline
        );
        let read = |p: &str| {
            fat.read(p)
                .with_context(|| format!("{p} is not on the boot partition"))
        };
        let kernel = self.logs.join(format!("{name}.kernel"));
        std::fs::write(&kernel, read(&sel.kernel)?)?;
        let dtb = self.logs.join(format!("{name}.dtb"));
        std::fs::write(&dtb, read(&sel.dtb)?)?;
        let mut q = match self.board {
            Board::Pi2 => Qemu::raspi2b(&self.logs),
            _ => Qemu::raspi3b(&self.logs),
        };
        q.args(["-kernel", &kernel.display().to_string()])
            .args(["-dtb", &dtb.display().to_string()]);
        if !sel.initramfs.is_empty() {
            let mut bytes = Vec::new();
            for f in &sel.initramfs {
                bytes.extend(read(f)?);
            }
            let initrd = self.logs.join(format!("{name}.initrd"));
            std::fs::write(&initrd, bytes)?;
            q.args(["-initrd", &initrd.display().to_string()]);
        }
        q.args(["-append", &sel.cmdline]).args([
            "-drive",
            &format!("if=sd,format=raw,file={}", self.sd.display()),
        ]);
        Ok((sel, q))
    }

    /// Boot the old OS to its shell.
    pub fn old_os(&mut self, name: &str) -> Result<Guest> {
        let (_, q) = self.select(name)?;
        arm64_legacy::boot_board(&q, name, self.board)
    }

    /// Boot what the firmware picks, wait for the kernel's reboot or
    /// power-off line and stop QEMU; returns the selection and the serial
    /// log.
    pub fn unattended(&mut self, name: &str) -> Result<(Selection, String)> {
        let (sel, q) = self.select(name)?;
        let mut g = Guest::start(&q, name)?;
        self.end(&mut g)
            .with_context(|| format!("boot {name} did not reboot or power off"))?;
        Ok((sel, g.serial()))
    }

    /// Back in the old OS: canary intact, config.txt as before the
    /// migration; returns what `migrd status` says.
    pub fn check_back_in_old_os(&mut self, name: &str, config_txt: &str) -> Result<String> {
        let mut g = self.old_os(name)?;
        crate::scenario::check_canary(&mut g, arm64_legacy::CANARY, &self.canary_sha256)?;
        let now = g.run_ok("cat /boot/firmware/config.txt", Duration::from_secs(30))?;
        ensure!(
            now.trim_end() == config_txt.trim_end(),
            "config.txt not restored:\n{now}\n---- was ----\n{config_txt}"
        );
        let status = g.run_ok(&format!("{TOOLS}/migrd status"), Duration::from_secs(60))?;
        g.send_line("poweroff")?;
        self.end(&mut g)?;
        Ok(status)
    }
}
