//! Raspberry Pi tryboot (Pi 4, 400, CM4, 5): `tryboot.txt` = config.txt
//! plus the ramdisk's `kernel=`, `initramfs … followkernel` and `cmdline=`;
//! config.txt and cmdline.txt are not touched. The firmware's one-shot
//! flag is set by rebooting with the argument `0 tryboot`; the bootloader
//! clears it before it reads tryboot.txt, so any reset after that boots
//! config.txt — the old OS. Stage 2 has nothing to disarm.
//!
//! Setting the flag: `reboot(2)` with `LINUX_REBOOT_CMD_RESTART2` and
//! "0 tryboot", sent by systemd after a clean shutdown (`systemctl reboot
//! "0 tryboot"`). Without systemd migrd syncs and makes that call itself:
//! busybox's `reboot` ignores the argument (and sysvinit's takes none), and
//! a reboot without it would just boot the old OS again. Chosen over
//! writing the flag through the firmware mailbox (`/dev/vcio`, tag
//! `0x00038064`) because nothing persistent changes until the reboot
//! itself: `migrd cancel` or `--no-reboot` followed by a plain reboot can
//! never leave a flag behind that the journal does not know about. The
//! Raspberry Pi kernel (5.10 and later) turns that reboot argument into
//! the mailbox call; the mainline kernel ignores it, so `prepare` refuses
//! without a Raspberry Pi kernel (`/dev/vcio` is that kernel's device).

use super::rpi_boot::{check_space, RpiBoot};
use super::{Armer, Ctx, Prepared};
use crate::ramdisk::Built;
use anyhow::{bail, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::rpi::oneshot;
use migrd_bootloaders::StrategyKind;
use std::path::Path;

/// The reboot argument that sets the tryboot flag.
pub const REBOOT_ARG: &str = "0 tryboot";

/// Stage 1 of the tryboot strategy.
#[derive(Default)]
pub struct TrybootArmer {
    boot: Option<RpiBoot>,
}

/// Whether `release` (`uname -r`) is 5.10 or later: the first Raspberry Pi
/// kernels that pass the tryboot reboot flag to the firmware.
pub fn kernel_passes_tryboot(release: &str) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (5, 10)
}

impl TrybootArmer {
    /// The changes for a ramdisk at `initramfs` (device path) booted with
    /// `cmdline`.
    pub fn changes_for(&self, ctx: &Ctx, initramfs: &Path, cmdline: &str) -> Result<Vec<Change>> {
        let boot = self
            .boot
            .as_ref()
            .context("internal: tryboot strategy used before prepare")?;
        let changes = oneshot::tryboot(boot.model, &boot.inputs(initramfs, cmdline))?;
        check_space(ctx, &boot.boot_dir, &changes)?;
        Ok(changes)
    }
}

impl Armer for TrybootArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::RpiTryboot
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        let boot = RpiBoot::read(ctx)?;
        if !boot.model.has_tryboot() {
            bail!(oneshot::RpiError::NoTryboot(boot.model));
        }
        let autoboot = std::fs::read_to_string(ctx.on(&boot.boot_dir).join("autoboot.txt")).ok();
        oneshot::check_autoboot(autoboot.as_deref())?;
        if !ctx.on(std::path::Path::new("/dev/vcio")).exists() {
            bail!("the running kernel is not a Raspberry Pi kernel (no /dev/vcio), so `reboot \"{REBOOT_ARG}\"` would not set the firmware's tryboot flag; use --boot-via rpi-config, or boot a Raspberry Pi OS kernel");
        }
        if !kernel_passes_tryboot(&ctx.kernel.release) {
            bail!(
                "kernel {} is older than 5.10 and does not pass the tryboot flag to the firmware; update the kernel or use --boot-via rpi-config",
                ctx.kernel.release
            );
        }
        self.boot = Some(boot);
        Ok(Prepared::default())
    }

    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>> {
        self.changes_for(ctx, &ctx.device_path(&built.initramfs), &built.cmdline)
    }

    fn reboot(&self, _ctx: &Ctx, _built: &Built) -> Result<()> {
        println!("rebooting with the tryboot flag (systemctl reboot \"{REBOOT_ARG}\")");
        match std::process::Command::new("systemctl")
            .args(["reboot", REBOOT_ARG])
            .status()
        {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => bail!("`systemctl reboot \"{REBOOT_ARG}\"` failed ({st}); run it yourself — a plain reboot boots the old OS"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!("systemctl not found: syncing and calling reboot(2) with \"{REBOOT_ARG}\"");
                crate::migrate::restart2::restart_with(REBOOT_ARG)
            }
            Err(e) => Err(anyhow::Error::new(e).context("running `systemctl reboot`")),
        }
    }

    fn no_reboot_hint(&self) -> &'static str {
        "run `sudo systemctl reboot \"0 tryboot\"` when ready; a plain reboot boots the old OS (tryboot.txt is only read with that flag)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_that_pass_the_flag() {
        assert!(kernel_passes_tryboot("5.10.103-v7+"));
        assert!(kernel_passes_tryboot("6.6.31+rpt-rpi-v8"));
        assert!(!kernel_passes_tryboot("4.19.97-v7l+"));
        assert!(!kernel_passes_tryboot("5.4.83-v8+"));
        assert!(!kernel_passes_tryboot("garbage"));
    }
}

#[cfg(test)]
mod more_tests {
    use super::super::rpi_boot::testing::device;
    use super::*;
    use crate::journal::Journaled;

    #[test]
    fn tryboot_writes_tryboot_txt_only_and_cancel_removes_it() {
        let d = device("rpi4-bookworm", "/boot/firmware", "kernel8.img", true);
        let ctx = d.ctx();
        let mut a = TrybootArmer::default();
        let e = a.prepare(&ctx).unwrap_err().to_string();
        assert!(e.contains("/dev/vcio") && e.contains("rpi-config"), "{e}");
        std::fs::write(d.dir.path().join("dev/vcio"), b"").unwrap();
        let p = a.prepare(&ctx).unwrap();
        assert!(p.disarm.is_empty() && p.ramdisk_files.is_empty());
        let config = d.text("/boot/firmware/config.txt");
        let changes = a
            .changes_for(&ctx, Path::new("/var/lib/migrd/initramfs.img"), "panic=10")
            .unwrap();
        let mut j = Journaled::begin(ctx.root).unwrap();
        for c in &changes {
            j.apply(c).unwrap();
        }
        assert_eq!(
            d.text("/boot/firmware/config.txt"),
            config,
            "config.txt untouched"
        );
        let tb = d.text("/boot/firmware/tryboot.txt");
        assert_eq!(
            tb,
            format!("{config}\n{}\n[all]\nkernel=kernel8.img\ninitramfs migrd-initrd.img followkernel\ncmdline=migrd-cmdline.txt\n", oneshot::MARK)
        );
        Journaled::load(ctx.root).unwrap().revert().unwrap();
        assert!(!d.dir.path().join("boot/firmware/tryboot.txt").exists());
    }

    #[test]
    fn an_autoboot_a_b_setup_refuses_tryboot() {
        let d = device("rpi4-bookworm", "/boot/firmware", "kernel8.img", true);
        std::fs::write(d.dir.path().join("dev/vcio"), b"").unwrap();
        std::fs::write(
            d.dir.path().join("boot/firmware/autoboot.txt"),
            "[all]\ntryboot_a_b=1\nboot_partition=2\n",
        )
        .unwrap();
        let e = TrybootArmer::default()
            .prepare(&d.ctx())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tryboot_a_b=1") && e.contains("rpi-config"),
            "{e}"
        );
    }

    #[test]
    fn a_pi3_has_no_tryboot() {
        let d = device("rpi3bplus-bookworm", "/boot/firmware", "kernel7.img", true);
        std::fs::write(d.dir.path().join("dev/vcio"), b"").unwrap();
        let e = TrybootArmer::default()
            .prepare(&d.ctx())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Raspberry Pi 3+") && e.contains("rpi-config"),
            "{e}"
        );
    }
}
