//! GRUB `next_entry` (BIOS or EFI GRUB): a menu entry in custom.cfg and
//! `next_entry` in grubenv; GRUB clears it itself, so stage 2 has nothing to
//! disarm.

use super::{Armer, Ctx, Prepared};
use crate::migrate::grub_facts;
use crate::ramdisk::Built;
use anyhow::{Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::grub::{self, ArmInputs, GrubFacts};
use migrd_bootloaders::StrategyKind;

/// Stage 1 of the GRUB strategy.
#[derive(Default)]
pub struct GrubArmer {
    facts: Option<GrubFacts>,
}

impl Armer for GrubArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Grub
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        let gf = grub_facts::from_probe(ctx.root, ctx.facts)?;
        grub::detect(&gf)?;
        self.facts = Some(gf);
        Ok(Prepared::default())
    }

    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>> {
        let gf = self
            .facts
            .as_ref()
            .context("internal: GRUB strategy used before prepare")?;
        let grub_dir = ctx.on(&gf.grub_dir);
        let custom = std::fs::read_to_string(grub_dir.join("custom.cfg")).ok();
        let env = std::fs::read(grub_dir.join("grubenv")).ok();
        let kernel = ctx.device_path(&ctx.kernel.image);
        let initrd = ctx.device_path(&built.initramfs);
        Ok(grub::arm(
            gf,
            &ArmInputs {
                kernel: &kernel,
                initramfs: &initrd,
                cmdline: &built.cmdline,
                custom_cfg: custom.as_deref(),
                grubenv: env.as_deref(),
            },
        )?)
    }
}
