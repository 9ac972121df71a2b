//! Can the boot really be one-shot here? Which strategy, and why not the
//! others — decided from probe facts.

use super::{CheckResult, Options, Status};
use crate::probe::firmware::Firmware;
use crate::probe::Facts;
use migrd_bootloaders::{kexec, StrategyKind};
use serde::Serialize;

/// One strategy's verdict on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The strategy.
    pub strategy: String,
    /// Usable here.
    pub usable: bool,
    /// Why or why not.
    pub reason: String,
}

/// Whether `k` can arm a boot on this machine, and why.
pub fn usable(f: &Facts, k: StrategyKind) -> Result<String, String> {
    let b = &f.boot;
    match k {
        StrategyKind::Grub => match &b.grub {
            None => Err("GRUB is not installed (no /boot/grub/grub.cfg)".into()),
            Some(g) if !g.env_writable => Err(g.reason.clone().unwrap_or_default()),
            Some(g) => Ok(format!(
                "grubenv next_entry in {} ({})",
                g.dir,
                g.fstype.as_deref().unwrap_or("?")
            )),
        },
        StrategyKind::Efi if b.firmware != Firmware::Uefi => Err("not booted by UEFI".into()),
        StrategyKind::Efi if !b.efivars => Err("efivarfs is not available to set BootNext".into()),
        StrategyKind::Efi if b.secure_boot == Some(true) => {
            Err("Secure Boot would refuse an unsigned kernel entry".into())
        }
        StrategyKind::Efi => Ok("BootNext to a new Boot#### entry; firmware clears it".into()),
        StrategyKind::RpiTryboot => match &b.rpi {
            Some(r) if r.tryboot && r.config_txt => Ok(format!("tryboot.txt in {}", r.boot_dir)),
            Some(_) => {
                Err("this Raspberry Pi's firmware has no tryboot (Pi 4/400/CM4/5 only)".into())
            }
            None => Err("not a Raspberry Pi".into()),
        },
        StrategyKind::RpiConfig => match &b.rpi {
            Some(r) if r.config_txt && r.cmdline_txt => Ok(format!(
                "config.txt/cmdline.txt in {} (restored by the ramdisk)",
                r.boot_dir
            )),
            Some(r) => Err(format!(
                "config.txt or cmdline.txt missing in {}",
                r.boot_dir
            )),
            None => Err("not a Raspberry Pi".into()),
        },
        StrategyKind::Uboot if b.firmware != Firmware::Uboot => Err("not a U-Boot board".into()),
        StrategyKind::Uboot if b.uboot_files.is_empty() => {
            Err("no uEnv.txt, boot.scr or extlinux.conf found".into())
        }
        StrategyKind::Uboot => Ok(format!(
            "self-clearing entry via {}",
            b.uboot_files.join(", ")
        )),
        StrategyKind::Kexec => kexec::usable(&b.kexec).map_err(|e| e.to_string()),
    }
}

/// Preference order for this firmware.
pub fn preference(fw: Firmware) -> &'static [StrategyKind] {
    use StrategyKind::*;
    match fw {
        Firmware::Uefi => &[Efi, Grub, Kexec],
        Firmware::Bios => &[Grub, Kexec],
        Firmware::Rpi => &[RpiTryboot, RpiConfig, Kexec],
        Firmware::Uboot => &[Uboot, Kexec],
    }
}

/// Every strategy's verdict.
pub fn candidates(f: &Facts) -> Vec<Candidate> {
    StrategyKind::ALL
        .iter()
        .map(|k| {
            let r = usable(f, *k);
            Candidate {
                strategy: k.name().into(),
                usable: r.is_ok(),
                reason: r.unwrap_or_else(|e| e),
            }
        })
        .collect()
}

/// The `boot-strategy` check and the chosen strategy.
pub fn strategy(f: &Facts, o: &Options) -> (CheckResult, Option<StrategyKind>) {
    let n = "boot-strategy";
    let pick = match o.boot_via {
        Some(k) => match usable(f, k) {
            Ok(why) => Some((k, why)),
            Err(e) => {
                return (
                    CheckResult::new(n, Status::Fail, format!("--boot-via {k}: {e}")),
                    None,
                )
            }
        },
        None => preference(f.boot.firmware)
            .iter()
            .find_map(|k| usable(f, *k).ok().map(|w| (*k, w))),
    };
    match pick {
        Some((k, why)) if !k.self_clearing() => (
            CheckResult::new(
                n,
                Status::Warn,
                format!("{k}: {why}; it only falls back to the old OS once the ramdisk runs"),
            ),
            Some(k),
        ),
        Some((k, why)) => (
            CheckResult::new(n, Status::Pass, format!("{k}: {why}")),
            Some(k),
        ),
        None => {
            let why: Vec<String> = preference(f.boot.firmware)
                .iter()
                .filter_map(|k| usable(f, *k).err().map(|e| format!("{k}: {e}")))
                .collect();
            (
                CheckResult::new(
                    n,
                    Status::Fail,
                    format!("no one-shot boot is possible here ({})", why.join("; ")),
                ),
                None,
            )
        }
    }
}
