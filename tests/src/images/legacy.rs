//! The legacy device: Debian bookworm on BIOS + GRUB, as a fresh writable
//! copy of the cached image, and booting it to a logged-in root shell.

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

/// A fresh copy of the legacy device's disk.
#[derive(Clone, Debug)]
pub struct LegacyImage {
    /// The raw disk (2 GiB, sparse): MBR, ext4 root at 1 MiB.
    pub disk: PathBuf,
    /// SHA-256 (hex) of `/root/canary` as built.
    pub canary_sha256: String,
}

/// Build (first time or when the recipe changed) or reuse the cached image
/// and put a fresh copy into `out_dir` (`debian-bios.img`,
/// `canary.sha256`). Needs root; the build takes ~1.5 min, the cached path
/// a few seconds.
pub fn image(out_dir: &Path) -> Result<LegacyImage> {
    let script = paths::repo().join("tests/lab/images/debian-bios.sh");
    let out = tools::run(
        Command::new("bash")
            .arg(&script)
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
    Ok(LegacyImage {
        disk,
        canary_sha256,
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

/// Start `qemu` (see [`qemu`]) as boot `name` and wait for the root shell.
pub fn boot(qemu: &Qemu, name: &str) -> Result<Guest> {
    let mut g = Guest::start(qemu, name)?;
    g.login(PROMPT, BOOT_TIMEOUT)
        .with_context(|| format!("legacy device boot {name}"))?;
    Ok(g)
}
