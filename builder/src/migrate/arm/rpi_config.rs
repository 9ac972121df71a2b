//! Raspberry Pi config.txt edit (every Pi; the only way on those without
//! tryboot): the ramdisk's `kernel=`, `initramfs … followkernel` and
//! `cmdline=` lines are appended to config.txt under `[all]`; cmdline.txt
//! is not edited (the ramdisk's command line is a file of its own, named by
//! `cmdline=`), so config.txt is the only file to put back. Its original
//! bytes ride inside the ramdisk and stage 2 restores them first thing
//! (`DisarmAction::RestoreFile` by the partition's PARTUUID). This does not
//! fall back by itself: until the ramdisk has run, every boot boots it.

use super::rpi_boot::{check_space, RpiBoot};
use super::{Armer, Ctx, Prepared};
use crate::ramdisk::Built;
use anyhow::{Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::rpi::oneshot;
use migrd_bootloaders::StrategyKind;
use std::path::Path;

/// Stage 1 of the config.txt strategy.
#[derive(Default)]
pub struct ConfigArmer {
    boot: Option<RpiBoot>,
}

impl ConfigArmer {
    /// The changes for a ramdisk at `initramfs` (device path) booted with
    /// `cmdline`.
    pub fn changes_for(&self, ctx: &Ctx, initramfs: &Path, cmdline: &str) -> Result<Vec<Change>> {
        let boot = self
            .boot
            .as_ref()
            .context("internal: config.txt strategy used before prepare")?;
        let changes = oneshot::config_edit(&boot.inputs(initramfs, cmdline))?;
        check_space(ctx, &boot.boot_dir, &changes)?;
        Ok(changes)
    }
}

impl Armer for ConfigArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::RpiConfig
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        let boot = RpiBoot::read(ctx)?;
        let partuuid = boot.partuuid.clone().with_context(|| {
            format!(
                "the PARTUUID of the partition mounted at {} is unknown (no /dev/disk/by-partuuid link); \
                 the ramdisk needs it to restore config.txt",
                boot.boot_dir.display()
            )
        })?;
        let (action, saved) = oneshot::config_disarm(&partuuid, boot.config_txt.as_bytes());
        self.boot = Some(boot);
        Ok(Prepared {
            disarm: vec![action],
            ramdisk_files: vec![saved],
            cmdline_extra: vec![],
        })
    }

    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>> {
        self.changes_for(ctx, &ctx.device_path(&built.initramfs), &built.cmdline)
    }

    fn no_reboot_hint(&self) -> &'static str {
        "reboot when ready; until the ramdisk has run, every boot boots it (`migrd cancel` undoes the edit)"
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpi_boot::testing::device;
    use super::*;
    use crate::journal::Journaled;
    use migrd_init::plan::DisarmAction;

    const CMDLINE: &str = "console=serial0,115200 rootfstype=ramfs panic=10";

    #[test]
    fn arms_through_the_journal_and_cancel_restores_every_byte() {
        for (name, boot, kernel) in [
            ("rpi3-buster", "/boot", "kernel7.img"),
            ("rpi3bplus-bookworm", "/boot/firmware", "kernel7.img"),
            ("rpi4-bookworm", "/boot/firmware", "kernel8.img"),
        ] {
            let d = device(name, boot, kernel, true);
            let ctx = d.ctx();
            let before = d.text(&format!("{boot}/config.txt"));
            let cmdline_before = d.text(&format!("{boot}/cmdline.txt"));
            let mut a = ConfigArmer::default();
            let p = a.prepare(&ctx).unwrap();
            assert_eq!(
                p.disarm,
                [DisarmAction::RestoreFile {
                    partuuid: "4e5f6a7b-01".into(),
                    fstype: "vfat".into(),
                    path: "config.txt".into(),
                    original: oneshot::SAVED_CONFIG.into(),
                }],
                "{name}"
            );
            assert_eq!(
                p.ramdisk_files,
                [(
                    oneshot::SAVED_CONFIG.to_string(),
                    before.clone().into_bytes()
                )]
            );
            let changes = a
                .changes_for(&ctx, Path::new("/var/lib/migrd/initramfs.img"), CMDLINE)
                .unwrap();
            let mut j = Journaled::begin(ctx.root).unwrap();
            for c in &changes {
                j.apply(c).unwrap();
            }
            let armed = d.text(&format!("{boot}/config.txt"));
            assert!(armed.starts_with(&before), "{name}: only appended");
            assert!(armed.ends_with(&format!(
                "[all]\nkernel={kernel}\ninitramfs migrd-initrd.img followkernel\ncmdline=migrd-cmdline.txt\n"
            )), "{name}: {armed}");
            assert_eq!(d.text(&format!("{boot}/migrd-initrd.img")), "ramdisk bytes");
            assert_eq!(
                d.text(&format!("{boot}/migrd-cmdline.txt")),
                format!("{CMDLINE}\n")
            );
            assert_eq!(
                d.text(&format!("{boot}/cmdline.txt")),
                cmdline_before,
                "cmdline.txt untouched"
            );
            // `migrd cancel`.
            Journaled::load(ctx.root).unwrap().revert().unwrap();
            assert_eq!(d.text(&format!("{boot}/config.txt")), before, "{name}");
            assert!(!ctx
                .root
                .join(boot.trim_start_matches('/'))
                .join("migrd-initrd.img")
                .exists());
            assert!(!ctx
                .root
                .join(boot.trim_start_matches('/'))
                .join("migrd-cmdline.txt")
                .exists());
        }
    }

    #[test]
    fn a_kernel_file_that_is_not_the_running_kernel_is_replaced_by_a_copy() {
        let d = device("rpi4-bookworm", "/boot/firmware", "kernel8.img", false);
        let ctx = d.ctx();
        let mut a = ConfigArmer::default();
        a.prepare(&ctx).unwrap();
        let changes = a
            .changes_for(&ctx, Path::new("/var/lib/migrd/initramfs.img"), CMDLINE)
            .unwrap();
        assert!(
            changes.contains(&Change::Copy {
                from: Path::new("/boot/vmlinuz-6.6.31+rpt-rpi-v8").into(),
                to: Path::new("/boot/firmware/migrd-kernel.img").into(),
                mode: 0o644,
            }),
            "{changes:?}"
        );
        let Some(Change::Write { bytes, .. }) = changes.last() else {
            panic!("{changes:?}")
        };
        assert!(String::from_utf8_lossy(bytes).contains("kernel=migrd-kernel.img\n"));
    }

    #[test]
    fn without_udev_links_the_partuuid_comes_from_the_partition_table() {
        let d = device("rpi3-buster", "/boot", "kernel7.img", true);
        std::fs::remove_dir_all(d.dir.path().join("dev/disk")).unwrap();
        let facts = crate::probe::probe(d.dir.path());
        let ctx = Ctx {
            facts: &facts,
            ..d.ctx()
        };
        let p = ConfigArmer::default().prepare(&ctx).unwrap();
        assert!(
            matches!(&p.disarm[..], [DisarmAction::RestoreFile { partuuid, .. }] if partuuid == "4e5f6a7b-01"),
            "{:?}",
            p.disarm
        );
    }

    #[test]
    fn without_a_partuuid_the_edit_is_refused_before_anything_changes() {
        let d = device("rpi3-buster", "/boot", "kernel7.img", true);
        // Neither udev's links nor a readable partition table.
        std::fs::remove_dir_all(d.dir.path().join("dev/disk")).unwrap();
        std::fs::remove_file(d.dir.path().join("dev/mmcblk0")).unwrap();
        let facts = crate::probe::probe(d.dir.path());
        let ctx = Ctx {
            facts: &facts,
            ..d.ctx()
        };
        let e = ConfigArmer::default()
            .prepare(&ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PARTUUID") && e.contains("/boot"), "{e}");
    }
}
