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

/// Whether `k` can arm a boot on this machine with the operator's options,
/// and why.
pub fn usable(f: &Facts, k: StrategyKind, o: &Options) -> Result<String, String> {
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
        StrategyKind::Efi if b.secure_boot == Some(true) => Err(
            "Secure Boot is on: the firmware would refuse to start the kernel from a BootNext entry \
             (only the signed shim → GRUB path is trusted); use --boot-via grub"
                .into(),
        ),
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
        // The same decision `migrd migrate` arms.
        StrategyKind::Uboot => {
            super::uboot::decide(f, o.uboot_restore_first).map(|d| super::uboot::reason(&d))
        }
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

/// Whether GRUB is the boot manager the firmware started: the `BootCurrent`
/// entry loads grubx64/shimx64; without `BootCurrent`, GRUB being installed
/// and able to clear `next_entry`.
pub fn grub_active(f: &Facts) -> bool {
    match &f.boot.boot_current {
        Some(path) => migrd_bootloaders::efi::is_grub_path(path),
        None => usable(f, StrategyKind::Grub, &Options::default()).is_ok(),
    }
}

/// Preference order on this machine: on UEFI, GRUB first when it is the
/// active boot manager (its menu and next_entry are what the operator
/// knows), BootNext first otherwise.
pub fn order(f: &Facts) -> Vec<StrategyKind> {
    use StrategyKind::*;
    match f.boot.firmware {
        Firmware::Uefi if grub_active(f) => vec![Grub, Efi, Kexec],
        fw => preference(fw).to_vec(),
    }
}

/// Whether a reset before stage 2 has run boots the old OS by itself (the
/// U-Boot restore-first mode does not).
pub fn self_clearing(f: &Facts, k: StrategyKind, o: &Options) -> bool {
    match k {
        StrategyKind::Uboot => super::uboot::decide(f, o.uboot_restore_first)
            .map(|d| d.self_clearing())
            .unwrap_or(true),
        k => k.self_clearing(),
    }
}

/// Every strategy's verdict.
pub fn candidates(f: &Facts, o: &Options) -> Vec<Candidate> {
    StrategyKind::ALL
        .iter()
        .map(|k| {
            let r = usable(f, *k, o);
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
        Some(k) => match usable(f, k, o) {
            Ok(why) => Some((k, why)),
            Err(e) => {
                return (
                    CheckResult::new(n, Status::Fail, format!("--boot-via {k}: {e}")),
                    None,
                )
            }
        },
        None => order(f)
            .iter()
            .find_map(|k| usable(f, *k, o).ok().map(|w| (*k, w))),
    };
    match pick {
        Some((k, why)) if !self_clearing(f, k, o) => (
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
            let why: Vec<String> = order(f)
                .iter()
                .filter_map(|k| usable(f, *k, o).err().map(|e| format!("{k}: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::firmware::GrubFacts;

    fn uefi(current: Option<&str>, grub: bool, secure_boot: Option<bool>) -> Facts {
        let d = tempfile::tempdir().unwrap();
        let mut f = crate::probe::probe(d.path());
        f.boot.firmware = Firmware::Uefi;
        f.boot.efivars = true;
        f.boot.secure_boot = secure_boot;
        f.boot.boot_current = current.map(str::to_string);
        f.boot.grub = grub.then(|| GrubFacts {
            dir: "/boot/grub".into(),
            fstype: Some("ext4".into()),
            env_writable: true,
            reason: None,
        });
        f
    }

    fn options(boot_via: Option<StrategyKind>) -> Options {
        Options {
            no_os_check: true,
            no_dt_check: true,
            no_api_check: true,
            no_vpn_check: true,
            no_nwmgr_check: true,
            timeout: std::time::Duration::from_secs(1),
            boot_via,
            uboot_restore_first: false,
            log_to: None,
            flash_to: None,
            no_watchdog: false,
        }
    }

    #[test]
    fn grub_first_when_the_firmware_started_shim_or_grub() {
        let shim = r"HD(1,GPT,x,0x800,0x100000)/File(\EFI\debian\shimx64.efi)";
        let f = uefi(Some(shim), true, Some(false));
        assert!(grub_active(&f));
        assert_eq!(order(&f)[0], StrategyKind::Grub);
        assert_eq!(strategy(&f, &options(None)).1, Some(StrategyKind::Grub));
        // --boot-via overrides.
        assert_eq!(
            strategy(&f, &options(Some(StrategyKind::Efi))).1,
            Some(StrategyKind::Efi)
        );
    }

    #[test]
    fn bootnext_first_when_another_loader_is_active() {
        let sdboot = r"HD(1,GPT,x,0x800,0x100000)/File(\EFI\systemd\systemd-bootx64.efi)";
        let f = uefi(Some(sdboot), true, Some(false));
        assert!(!grub_active(&f));
        assert_eq!(strategy(&f, &options(None)).1, Some(StrategyKind::Efi));
        // No BootCurrent: GRUB that can clear next_entry is taken as active.
        assert!(grub_active(&uefi(None, true, None)));
        assert!(!grub_active(&uefi(None, false, None)));
        assert_eq!(
            strategy(&uefi(None, false, None), &options(None)).1,
            Some(StrategyKind::Efi)
        );
    }

    #[test]
    fn secure_boot_makes_bootnext_unusable_with_the_reason() {
        let f = uefi(None, true, Some(true));
        let e = usable(&f, StrategyKind::Efi, &options(None)).unwrap_err();
        assert!(
            e.contains("Secure Boot") && e.contains("--boot-via grub"),
            "{e}"
        );
        let (c, k) = strategy(&f, &options(Some(StrategyKind::Efi)));
        assert_eq!(k, None);
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("Secure Boot"), "{}", c.message);
        assert_eq!(strategy(&f, &options(None)).1, Some(StrategyKind::Grub));
        let efi = candidates(&f, &options(None))
            .into_iter()
            .find(|c| c.strategy == "efi")
            .unwrap();
        assert!(!efi.usable && efi.reason.contains("Secure Boot"));
    }
}
