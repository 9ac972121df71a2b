//! U-Boot: migrd's boot script runs first once, clears its own flag with
//! `fatwrite`/`ext4write` and boots the ramdisk (see
//! `migrd_bootloaders::uboot`); self-clearing, so stage 2 has nothing to
//! disarm. Where no such path exists and the operator passed
//! `--uboot-restore-first`, the board's own extlinux.conf or uEnv.txt is
//! edited instead, its original rides in the ramdisk and stage 2 restores
//! it first thing (`DisarmAction::RestoreFile`, as the Raspberry Pi
//! config.txt edit does); on a board that counts boots, its counter is
//! armed too and its environment restored after the board file. The decision is `checks::uboot::decide`, the one
//! `migrd check` reports.

use super::{Armer, Ctx, Prepared};
use crate::checks::uboot::{decide, Decided};
use crate::ramdisk::Built;
use anyhow::{anyhow, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::uboot::bootcount;
use migrd_bootloaders::uboot::restore_first::{self, EditInputs};
use migrd_bootloaders::uboot::{self, ArmInputs, Decision};
use migrd_bootloaders::StrategyKind;
use migrd_init::plan::BootStrategy;

/// Stage 1 of the U-Boot strategy.
#[derive(Default)]
pub struct UbootArmer {
    decided: Option<Decided>,
}

impl UbootArmer {
    /// The changes for a ramdisk at `initramfs` (device path) booted with
    /// `cmdline`.
    pub fn changes_for(
        &self,
        ctx: &Ctx,
        initramfs: &std::path::Path,
        cmdline: &str,
    ) -> Result<Vec<Change>> {
        let d = self
            .decided
            .as_ref()
            .context("internal: U-Boot strategy used before prepare")?;
        let kernel = ctx.device_path(&ctx.kernel.image);
        Ok(match &d.decision {
            Decision::OneShot(flow) => uboot::arm(
                flow,
                &d.facts,
                &ArmInputs {
                    kernel: &kernel,
                    initramfs,
                    cmdline,
                    original_script: d.original.as_deref(),
                },
            )?,
            Decision::RestoreFirst(edit) => {
                let original = d
                    .original
                    .as_deref()
                    .context("internal: the board file was not read before arming")?;
                // The counter first: by the time the board file boots the
                // ramdisk, U-Boot counts those boots.
                let mut changes: Vec<Change> = match &d.counter {
                    Some(Ok(c)) => vec![bootcount::arm(&c.at, c.armed.clone())],
                    _ => Vec::new(),
                };
                changes.extend(restore_first::arm(
                    edit,
                    &d.facts,
                    &EditInputs {
                        original: &String::from_utf8_lossy(original),
                        kernel: &kernel,
                        initramfs,
                        cmdline,
                        dtbs: &d.dtbs,
                    },
                )?);
                changes
            }
        })
    }
}

impl Armer for UbootArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Uboot
    }

    fn plan_strategy(&self) -> BootStrategy {
        match self.decided.as_ref().map(|d| &d.decision) {
            Some(Decision::RestoreFirst(_)) => BootStrategy::UbootRestoreFirst,
            _ => BootStrategy::Uboot,
        }
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        let d = decide(ctx.facts, ctx.args.uboot_restore_first).map_err(|e| anyhow!(e))?;
        let prepared = match (&d.decision, &d.original) {
            (Decision::RestoreFirst(edit), Some(original)) => {
                let (action, saved) = restore_first::disarm(edit, &d.facts, original);
                let mut p = Prepared {
                    disarm: vec![action],
                    ramdisk_files: vec![saved],
                    cmdline_extra: vec![],
                };
                // The environment after the board file: once the board
                // file is back, a reset boots the old OS whatever the count.
                if let Some(Ok(c)) = &d.counter {
                    let (action, saved) =
                        bootcount::disarm(&c.at, &d.facts.filesystems, &c.original);
                    p.disarm.push(action);
                    p.ramdisk_files.push(saved);
                }
                p
            }
            _ => Prepared::default(),
        };
        self.decided = Some(d);
        Ok(prepared)
    }

    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>> {
        self.changes_for(ctx, &ctx.device_path(&built.initramfs), &built.cmdline)
    }

    fn no_reboot_hint(&self) -> &'static str {
        match self.decided.as_ref().map(|d| &d.decision) {
            Some(Decision::RestoreFirst(_)) => {
                "reboot when ready; until the ramdisk has run, every boot boots it (`migrd cancel` undoes the edit)"
            }
            _ => "reboot when ready",
        }
    }
}
