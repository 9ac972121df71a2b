//! One-shot boot strategies for migrd.
//!
//! Every strategy arms a boot into the migration ramdisk that happens once:
//! a reset at any moment before stage 2 passes its point of no return must
//! boot the old OS. Each strategy will implement [`OneShot`]; the kinds are
//! listed in [`StrategyKind`] and named on the command line by
//! `--boot-via`.

pub mod change;
pub mod efi;
pub mod grub;
pub mod kexec;
pub mod rpi;
pub mod uboot;

use migrd_init::plan::BootStrategy;
use std::fmt;
use std::str::FromStr;

/// The strategies, as an operator names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyKind {
    /// GRUB `next_entry` (BIOS or EFI).
    Grub,
    /// UEFI `BootNext`.
    Efi,
    /// Raspberry Pi tryboot.
    RpiTryboot,
    /// Raspberry Pi config.txt/cmdline.txt.
    RpiConfig,
    /// U-Boot self-clearing entry.
    Uboot,
    /// kexec into the ramdisk.
    Kexec,
}

impl StrategyKind {
    /// All kinds, in the order `--boot-via` lists them.
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::Grub,
        StrategyKind::Efi,
        StrategyKind::RpiTryboot,
        StrategyKind::RpiConfig,
        StrategyKind::Uboot,
        StrategyKind::Kexec,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Grub => "grub",
            StrategyKind::Efi => "efi",
            StrategyKind::RpiTryboot => "rpi-tryboot",
            StrategyKind::RpiConfig => "rpi-config",
            StrategyKind::Uboot => "uboot",
            StrategyKind::Kexec => "kexec",
        }
    }

    /// The plan's record of this strategy.
    pub fn plan_strategy(self) -> BootStrategy {
        match self {
            StrategyKind::Grub => BootStrategy::Grub,
            StrategyKind::Efi => BootStrategy::Efi,
            StrategyKind::RpiTryboot => BootStrategy::RpiTryboot,
            StrategyKind::RpiConfig => BootStrategy::RpiConfig,
            StrategyKind::Uboot => BootStrategy::Uboot,
            StrategyKind::Kexec => BootStrategy::Kexec,
        }
    }

    /// Whether a reset before stage 2 runs boots the old OS without any help
    /// from stage 2 (config.txt edits only fall back once the ramdisk has
    /// restored them).
    pub fn self_clearing(self) -> bool {
        !matches!(self, StrategyKind::RpiConfig)
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `--boot-via` value.
#[derive(Debug, thiserror::Error)]
#[error("unknown boot strategy '{0}': use one of grub, efi, rpi-tryboot, rpi-config, uboot, kexec")]
pub struct UnknownStrategy(String);

impl FromStr for StrategyKind {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

/// What every strategy does. `arm` and `cancel` run in stage 1; the undo
/// steps stage 2 needs are returned by `arm` as plan data, so stage 2 never
/// links bootloader code.
pub trait OneShot {
    /// Error type of the strategy.
    type Error: std::error::Error;
    /// Facts the strategy needs to decide whether it can run here.
    type Facts;
    /// Why this strategy can (Ok) or cannot (Err, with the reason) make a
    /// one-shot boot on a machine with these facts.
    fn detect(facts: &Self::Facts) -> Result<(), Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for k in StrategyKind::ALL {
            assert_eq!(k.name().parse::<StrategyKind>().ok(), Some(k));
        }
        let e = "lilo"
            .parse::<StrategyKind>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("lilo") && e.contains("kexec"));
    }

    #[test]
    fn only_config_txt_needs_stage_two_to_fall_back() {
        let needs: Vec<_> = StrategyKind::ALL
            .into_iter()
            .filter(|k| !k.self_clearing())
            .collect();
        assert_eq!(needs, [StrategyKind::RpiConfig]);
    }
}
