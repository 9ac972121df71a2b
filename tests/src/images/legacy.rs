//! The legacy device: Debian bookworm on BIOS + GRUB, or on UEFI (OVMF) with
//! Debian's signed shim and GRUB, as a fresh writable copy of the cached
//! image, and booting it to a logged-in root shell.

use super::tools;
use crate::guest::Guest;
use crate::paths;
use crate::qemu::Qemu;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The guest's hostname.
pub const HOSTNAME: &str = "vmlab-legacy";
/// Root's shell prompt after the serial autologin.
pub const PROMPT: &str = "root@vmlab-legacy:~# ";
/// GRUB's id of the Debian entry (the default).
pub const DEBIAN_ENTRY: &str = "debian";
/// Where the canary lives in the guest.
pub const CANARY: &str = "/root/canary";
/// Boot to the root shell: ~20 s under TCG when the machine is idle.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// The firmware the device boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, MBR disk, GRUB for BIOS.
    Bios,
    /// OVMF on q35, GPT disk with an ESP; Secure Boot enforced (Microsoft's
    /// keys enrolled) or not.
    Uefi {
        /// Boot with OVMF's Secure Boot build and the enrolled-keys vars.
        secure_boot: bool,
    },
}

/// OVMF's code (read-only flash).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's Secure Boot code (needs SMM).
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

/// A fresh copy of the legacy device's disk.
#[derive(Clone, Debug)]
pub struct LegacyImage {
    /// The raw disk (2 GiB, sparse): MBR with an ext4 root at 1 MiB (BIOS),
    /// or GPT with the ESP at 1 MiB and the ext4 root after it (UEFI).
    pub disk: PathBuf,
    /// SHA-256 (hex) of `/root/canary` as built.
    pub canary_sha256: String,
    /// The firmware.
    pub firmware: Firmware,
    /// UEFI only: this device's own OVMF variable store (a fresh copy,
    /// holding the "debian" boot entry), written by the firmware and by the
    /// guest through efivarfs.
    pub vars: Option<PathBuf>,
}

/// Build (first time or when the recipe changed) or reuse the cached image
/// and put a fresh copy into `out_dir` (`debian-bios.img`,
/// `canary.sha256`). Needs root; the build takes ~1.5 min, the cached path
/// a few seconds.
pub fn image(out_dir: &Path) -> Result<LegacyImage> {
    image_for(out_dir, Firmware::Bios)
}

/// Like [`image`], for a device booting with `firmware`.
pub fn image_for(out_dir: &Path, firmware: Firmware) -> Result<LegacyImage> {
    let script = paths::repo().join("tests/lab/images/debian.sh");
    let fw = match firmware {
        Firmware::Bios => "bios",
        Firmware::Uefi { .. } => "uefi",
    };
    let out = tools::run(
        Command::new("bash")
            .arg(&script)
            .arg(fw)
            .arg(out_dir)
            .stderr(Stdio::inherit()),
        "debootstrap",
    )?;
    let disk = PathBuf::from(String::from_utf8_lossy(&out).trim());
    let sums = std::fs::read_to_string(out_dir.join("canary.sha256"))
        .with_context(|| format!("reading {}/canary.sha256", out_dir.display()))?;
    let canary_sha256 = sums
        .split_whitespace()
        .next()
        .context("empty canary.sha256")?
        .to_string();
    let vars = match firmware {
        Firmware::Bios => None,
        Firmware::Uefi { secure_boot } => Some(out_dir.join(if secure_boot {
            "debian-uefi.vars-sb.fd"
        } else {
            "debian-uefi.vars.fd"
        })),
    };
    Ok(LegacyImage {
        disk,
        canary_sha256,
        firmware,
        vars,
    })
}

/// QEMU for the legacy device booting `disk` through SeaBIOS and GRUB (no
/// `-kernel`), 1 GiB of RAM, logs in `log_dir`. Add more disks before
/// starting it.
pub fn qemu(disk: &Path, log_dir: &Path) -> Qemu {
    let mut q = Qemu::x86_64(log_dir);
    q.args(["-m", "1024"]).disk(disk, Some("LEGACY0001"));
    q
}

/// QEMU for the device `img`, with its firmware: SeaBIOS (see [`qemu`]) or
/// OVMF on q35 with the device's own variable store (Secure Boot needs SMM
/// and a secure flash).
pub fn qemu_for(img: &LegacyImage, log_dir: &Path) -> Qemu {
    let mut q = Qemu::x86_64(log_dir);
    if let (Firmware::Uefi { secure_boot }, Some(vars)) = (img.firmware, &img.vars) {
        let code = if secure_boot {
            OVMF_CODE_SECBOOT
        } else {
            OVMF_CODE
        };
        q.args(["-machine", "q35,smm=on"]);
        if secure_boot {
            q.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
        }
        q.args([
            "-drive",
            &format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ]);
    }
    q.args(["-m", "1024"]).disk(&img.disk, Some("LEGACY0001"));
    q
}

/// Start `qemu` (see [`qemu`]) as boot `name` and wait for the root shell.
pub fn boot(qemu: &Qemu, name: &str) -> Result<Guest> {
    let mut g = Guest::start(qemu, name)?;
    g.login(PROMPT, BOOT_TIMEOUT)
        .with_context(|| format!("legacy device boot {name}"))?;
    Ok(g)
}
