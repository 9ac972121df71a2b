//! kexec: nothing on disk changes. The running kernel, the built initramfs
//! and the built command line are loaded with `kexec_file_load`, and a
//! clean shutdown (`systemctl kexec`) ends by jumping into them instead of
//! into the firmware. A power cut, a reset, or the reboot stage 2 makes
//! when it gives up all go through the firmware and boot the old OS as it
//! was, so stage 2 has nothing to disarm and `migrd cancel` only unloads.

use super::{Armer, Ctx, Prepared};
use crate::migrate::kexec_file::{self, Loaded};
use crate::ramdisk::Built;
use anyhow::{bail, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::{kexec, StrategyKind};
use std::path::Path;

/// Stage 1 of the kexec strategy.
#[derive(Default)]
pub struct KexecArmer;

impl Armer for KexecArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Kexec
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        kexec::detect(&ctx.facts.boot.kexec).context("--boot-via kexec")?;
        if ctx.root != Path::new("/") {
            bail!(
                "--boot-via kexec loads the running kernel into memory, which only works on the live system (root /), not under {}",
                ctx.root.display()
            );
        }
        Ok(Prepared::default())
    }

    fn changes(&self, _ctx: &Ctx, _built: &Built) -> Result<Vec<Change>> {
        Ok(Vec::new())
    }

    fn activate(&self, ctx: &Ctx, built: &Built) -> Result<()> {
        let kernel = &ctx.kernel.image;
        kexec_file::load(kernel, &built.initramfs, &built.cmdline)?;
        let noted = kexec_file::write_marker(
            ctx.root,
            &Loaded {
                kernel: ctx.device_path(kernel),
                initramfs: ctx.device_path(&built.initramfs),
                initramfs_size: built.initramfs_size,
                cmdline: built.cmdline.clone(),
            },
        );
        if let Err(e) = noted {
            return Err(unload_after(e));
        }
        println!(
            "loaded for kexec: {} with the migration ramdisk ({} bytes); nothing on disk changed, \
             any reboot other than `systemctl kexec` boots this OS (`migrd cancel` unloads it)",
            ctx.device_path(kernel).display(),
            built.initramfs_size
        );
        Ok(())
    }

    fn reboot(&self, _ctx: &Ctx, _built: &Built) -> Result<()> {
        println!("shutting down cleanly and starting the migration ramdisk (systemctl kexec)");
        match std::process::Command::new("systemctl")
            .arg("kexec")
            .status()
        {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(unload_after(anyhow::anyhow!(
                "`systemctl kexec` failed ({st})"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => kexec_without_systemd(),
            Err(e) => Err(unload_after(
                anyhow::Error::new(e).context("running `systemctl kexec`"),
            )),
        }
    }

    fn no_reboot_hint(&self) -> &'static str {
        "the ramdisk is loaded in memory; run `systemctl kexec` to start the migration, or `migrd cancel` to unload it"
    }
}

/// Unload after a failure, so nothing is left half-armed, and say so.
fn unload_after(e: anyhow::Error) -> anyhow::Error {
    match kexec_file::unload() {
        Ok(()) => {
            let _ = std::fs::remove_file(kexec_file::MARKER);
            e.context("the kexec image was unloaded; nothing changed")
        }
        Err(u) => e.context(format!("unloading failed too ({u:#}); run `migrd cancel`")),
    }
}

/// No systemd: flush the filesystems and jump. Services are not stopped
/// cleanly, which is why this is only the fallback.
fn kexec_without_systemd() -> Result<()> {
    println!("systemctl not found: syncing and calling reboot(LINUX_REBOOT_CMD_KEXEC)");
    nix::unistd::sync();
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_KEXEC) {
        Err(e) => Err(unload_after(anyhow::anyhow!(
            "reboot(LINUX_REBOOT_CMD_KEXEC): {e}"
        ))),
        Ok(never) => match never {},
    }
}
