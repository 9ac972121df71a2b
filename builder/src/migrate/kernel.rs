//! The running kernel: the ramdisk boots the same kernel the device runs
//! now, so its modules and config are the ones on disk.
//!
//! Raspberry Pi OS before bookworm has no `/boot/vmlinuz-<release>`: the
//! firmware loads its own `kernel*.img`, which is the running kernel. The
//! Raspberry Pi strategies take that file (see `arm::rpi_boot`), so for
//! them the image may be missing ([`running_for`]).

use anyhow::{bail, Context, Result};
use migrd_bootloaders::StrategyKind;
use std::path::{Path, PathBuf};

/// The running kernel's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningKernel {
    /// `uname -r`.
    pub release: String,
    /// Its image (`/boot/vmlinuz-<release>`).
    pub image: PathBuf,
    /// `/lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// `/boot/config-<release>`, if present.
    pub config: Option<PathBuf>,
    /// `console=` arguments of the running kernel, so the ramdisk reports on
    /// the same console.
    pub consoles: Vec<String>,
}

/// Find the running kernel's files under `root`.
pub fn running(root: &Path) -> Result<RunningKernel> {
    read(root, true)
}

/// The running kernel as `strategy` needs it: the Raspberry Pi strategies
/// boot the firmware's kernel file when `/boot/vmlinuz-<release>` is
/// missing (Raspberry Pi OS before bookworm), so for them only the modules
/// must be there; `image` then names the missing file.
pub fn running_for(root: &Path, strategy: StrategyKind) -> Result<RunningKernel> {
    read(
        root,
        !matches!(strategy, StrategyKind::RpiTryboot | StrategyKind::RpiConfig),
    )
}

fn read(root: &Path, need_image: bool) -> Result<RunningKernel> {
    let rel_file = root.join("proc/sys/kernel/osrelease");
    let release = std::fs::read_to_string(&rel_file)
        .with_context(|| format!("reading {}", rel_file.display()))?
        .trim()
        .to_string();
    let image = root.join("boot").join(format!("vmlinuz-{release}"));
    if need_image && !image.is_file() {
        bail!(
            "the running kernel's image {} is missing; the ramdisk boots that kernel. \
             Reinstall the kernel package or reboot into an installed kernel",
            image.display()
        );
    }
    let modules_dir = root.join("lib/modules").join(&release);
    if !modules_dir.join("modules.dep").is_file() {
        bail!(
            "{} has no modules.dep; run `depmod {release}`",
            modules_dir.display()
        );
    }
    let config = Some(root.join("boot").join(format!("config-{release}"))).filter(|p| p.is_file());
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    Ok(RunningKernel {
        release,
        image,
        modules_dir,
        config,
        consoles: consoles(&cmdline),
    })
}

/// The `console=` arguments of a kernel command line.
pub fn consoles(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter(|a| a.starts_with("console="))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_running_kernel_and_its_consoles() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
        std::fs::write(r.join("proc/sys/kernel/osrelease"), "6.1.0-56-amd64\n").unwrap();
        std::fs::write(
            r.join("proc/cmdline"),
            "BOOT_IMAGE=/vmlinuz root=UUID=x ro console=tty0 console=ttyS0,115200 quiet\n",
        )
        .unwrap();
        let e = running(r).unwrap_err().to_string();
        assert!(e.contains("vmlinuz-6.1.0-56-amd64"), "{e}");
        std::fs::create_dir_all(r.join("boot")).unwrap();
        std::fs::write(r.join("boot/vmlinuz-6.1.0-56-amd64"), b"k").unwrap();
        std::fs::create_dir_all(r.join("lib/modules/6.1.0-56-amd64")).unwrap();
        std::fs::write(r.join("lib/modules/6.1.0-56-amd64/modules.dep"), b"").unwrap();
        let k = running(r).unwrap();
        assert_eq!(k.release, "6.1.0-56-amd64");
        assert_eq!(k.consoles, ["console=tty0", "console=ttyS0,115200"]);
        assert_eq!(k.config, None);
    }

    #[test]
    fn the_pi_strategies_do_without_vmlinuz_but_not_without_modules() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
        std::fs::write(r.join("proc/sys/kernel/osrelease"), "5.15.84-v7l+\n").unwrap();
        let e = running_for(r, StrategyKind::RpiConfig)
            .unwrap_err()
            .to_string();
        assert!(e.contains("modules.dep"), "{e}");
        std::fs::create_dir_all(r.join("lib/modules/5.15.84-v7l+")).unwrap();
        std::fs::write(r.join("lib/modules/5.15.84-v7l+/modules.dep"), b"").unwrap();
        for k in [StrategyKind::RpiConfig, StrategyKind::RpiTryboot] {
            let got = running_for(r, k).unwrap();
            assert_eq!(got.image, r.join("boot/vmlinuz-5.15.84-v7l+"));
            assert!(!got.image.exists());
        }
        for k in [StrategyKind::Uboot, StrategyKind::Grub, StrategyKind::Kexec] {
            let e = running_for(r, k).unwrap_err().to_string();
            assert!(e.contains("vmlinuz-5.15.84-v7l+"), "{k}: {e}");
        }
    }
}
