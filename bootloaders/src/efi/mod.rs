//! The UEFI `BootNext` strategy.
//!
//! The running kernel (an EFI stub, a PE the firmware can start) and the
//! ramdisk are copied to the ESP, a new `Boot####` entry points at them with
//! the command line (`initrd=` first) as its optional data, and `BootNext`
//! names it. The firmware deletes `BootNext` before it starts the entry, so
//! any later reset boots `BootOrder` — the old OS — which migrd never
//! touches. Stage 2 deletes the entry itself in its disarm step.

use crate::change::Change;
use crate::OneShot;
use migrd_init::efi::load_option::{HardDrive, LoadOption, PartSignature};
use migrd_init::efi::vars::{self, NV_BS_RT};
use std::path::{Path, PathBuf};

/// Description of the ramdisk's entry in the firmware's boot menu.
pub const DESCRIPTION: &str = migrd_init::efi::ONESHOT_DESCRIPTION;
/// migrd's folder on the ESP, as the firmware names it.
pub const ESP_DIR: &str = r"\EFI\migrd";
/// Kernel file name in that folder.
pub const KERNEL: &str = "vmlinuz.efi";
/// Ramdisk file name in that folder.
pub const INITRD: &str = "initrd.img";
/// Room left free on the ESP after the copies (FAT metadata, firmware
/// capsules, the next kernel update).
pub const MARGIN: u64 = 8 << 20;

/// The EFI System Partition the files go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Esp {
    /// Where it is mounted on the running system (`/boot/efi`).
    pub mount: PathBuf,
    /// Partition number, first LBA, size in LBAs, and the table's identity
    /// of the partition (GPT GUID or MBR signature).
    pub hd: HardDrive,
    /// Free bytes on its filesystem.
    pub free_bytes: u64,
}

/// What the BootNext strategy needs to know about the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EfiFacts {
    /// The ESP, when one is mounted.
    pub esp: Option<Esp>,
    /// Secure Boot state (`None`: unknown).
    pub secure_boot: Option<bool>,
    /// Numbers of the existing `Boot####` entries.
    pub boot_numbers: Vec<u16>,
    /// `BootCurrent` and the path of its entry, for the operator.
    pub boot_current: Option<(u16, String)>,
}

/// Why BootNext cannot make a one-shot boot here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EfiError {
    /// Secure Boot on: the firmware starts only signed binaries.
    #[error(
        "Secure Boot is enabled: the firmware would refuse to start the kernel directly from a BootNext entry \
         (only shim, signed by Microsoft, is trusted, and it starts GRUB, not a Linux kernel). \
         Use --boot-via grub (the shim → GRUB path the firmware already trusts) or --boot-via kexec"
    )]
    SecureBoot,
    /// No ESP mounted.
    #[error("no EFI System Partition is mounted (looked at /boot/efi and /efi); mount it and retry, or use --boot-via grub or kexec")]
    NoEsp,
    /// Not enough room for the kernel and ramdisk.
    #[error(
        "the EFI System Partition at {esp} has {free} bytes free but the kernel and ramdisk need {need} \
         (plus {margin} to spare); free space there, or use --boot-via grub or kexec, which boot from /boot"
    )]
    NoSpace {
        /// ESP mount point.
        esp: String,
        /// Free bytes.
        free: u64,
        /// Bytes of kernel and ramdisk.
        need: u64,
        /// The margin kept.
        margin: u64,
    },
    /// Every Boot#### number is taken.
    #[error("all 65536 Boot#### numbers are in use; delete unused firmware boot entries (efibootmgr -b XXXX -B)")]
    NoFreeNumber,
}

/// Check that BootNext can boot `need` bytes of kernel and ramdisk here.
pub fn detect(f: &EfiFacts, need: u64) -> Result<&Esp, EfiError> {
    if f.secure_boot == Some(true) {
        return Err(EfiError::SecureBoot);
    }
    let esp = f.esp.as_ref().ok_or(EfiError::NoEsp)?;
    if need.saturating_add(MARGIN) > esp.free_bytes {
        return Err(EfiError::NoSpace {
            esp: esp.mount.display().to_string(),
            free: esp.free_bytes,
            need,
            margin: MARGIN,
        });
    }
    if vars::first_free(&f.boot_numbers).is_none() {
        return Err(EfiError::NoFreeNumber);
    }
    Ok(esp)
}

/// Marker type for [`OneShot`].
pub struct BootNext;

impl OneShot for BootNext {
    type Error = EfiError;
    type Facts = EfiFacts;
    /// Whether BootNext can work at all here (the space check needs the
    /// ramdisk's size: [`detect`] with it, [`arm`] repeats it).
    fn detect(facts: &EfiFacts) -> Result<(), EfiError> {
        detect(facts, 0).map(|_| ())
    }
}

/// Inputs of [`arm`] from the running system.
#[derive(Clone, Debug)]
pub struct ArmInputs<'a> {
    /// The running kernel image (`/boot/vmlinuz-<release>`, an EFI stub).
    pub kernel: &'a Path,
    /// Its size in bytes.
    pub kernel_size: u64,
    /// The migration ramdisk.
    pub initramfs: &'a Path,
    /// Its size in bytes.
    pub initramfs_size: u64,
    /// The ramdisk's kernel command line (without `initrd=`).
    pub cmdline: &'a str,
}

/// The Boot#### number [`arm`] uses: the lowest free one.
pub fn entry_number(f: &EfiFacts) -> Option<u16> {
    vars::first_free(&f.boot_numbers)
}

/// The efivarfs name of the ramdisk's entry.
pub fn entry_var(f: &EfiFacts) -> Option<String> {
    entry_number(f).map(vars::boot_var)
}

/// The ramdisk's boot entry.
pub fn load_option(hd: HardDrive, cmdline: &str) -> LoadOption {
    let cmd = format!(r"initrd={ESP_DIR}\{INITRD} {cmdline}");
    LoadOption::new(
        DESCRIPTION,
        hd,
        &format!(r"{ESP_DIR}\{KERNEL}"),
        Some(cmd.trim_end()),
    )
}

/// The changes that arm the one-shot boot, in order: folder, kernel,
/// ramdisk, the Boot#### entry, and last `BootNext` (the one change that
/// makes the next boot different). `BootOrder` is never touched.
pub fn arm(f: &EfiFacts, i: &ArmInputs) -> Result<Vec<Change>, EfiError> {
    let esp = detect(f, i.kernel_size.saturating_add(i.initramfs_size))?;
    let n = entry_number(f).ok_or(EfiError::NoFreeNumber)?;
    let dir = esp.mount.join("EFI").join("migrd");
    Ok(vec![
        Change::MkDir { path: dir.clone() },
        Change::Copy {
            from: i.kernel.to_path_buf(),
            to: dir.join(KERNEL),
            mode: 0o644,
        },
        Change::Copy {
            from: i.initramfs.to_path_buf(),
            to: dir.join(INITRD),
            mode: 0o644,
        },
        Change::EfiVar {
            name: vars::boot_var(n),
            attributes: NV_BS_RT,
            data: Some(load_option(esp.hd, i.cmdline).encode()),
        },
        Change::EfiVar {
            name: vars::global("BootNext"),
            attributes: NV_BS_RT,
            data: Some(n.to_le_bytes().to_vec()),
        },
    ])
}

/// Whether the loader path of the running entry (`BootCurrent`) is GRUB or
/// shim: GRUB is then the active boot manager.
pub fn is_grub_path(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    [
        "grubx64.efi",
        "shimx64.efi",
        "grubaa64.efi",
        "shimaa64.efi",
        "grubia32.efi",
        "shimia32.efi",
    ]
    .iter()
    .any(|n| p.contains(n))
}

/// An MBR or GPT partition as a Hard Drive node.
pub fn hard_drive(partition: u32, start: u64, size: u64, signature: PartSignature) -> HardDrive {
    HardDrive {
        partition,
        start,
        size,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> EfiFacts {
        EfiFacts {
            esp: Some(Esp {
                mount: "/boot/efi".into(),
                hd: hard_drive(
                    1,
                    2048,
                    1_048_576,
                    PartSignature::Gpt("0fc63daf-8483-4772-8e79-3d69d8477de4".parse().unwrap()),
                ),
                free_bytes: 400 << 20,
            }),
            secure_boot: Some(false),
            boot_numbers: vec![0, 1, 2, 4],
            boot_current: Some((4, r"HD(1,GPT,..)/File(\EFI\debian\shimx64.efi)".into())),
        }
    }

    fn inputs() -> ArmInputs<'static> {
        ArmInputs {
            kernel: Path::new("/boot/vmlinuz-6.1.0-18-amd64"),
            kernel_size: 8 << 20,
            initramfs: Path::new("/boot/migrd/initramfs.img"),
            initramfs_size: 200 << 20,
            cmdline: "console=ttyS0 panic=10",
        }
    }

    #[test]
    fn arms_files_entry_and_bootnext_last_never_bootorder() {
        let ch = arm(&facts(), &inputs()).unwrap();
        assert_eq!(ch.len(), 5);
        assert_eq!(
            ch[0],
            Change::MkDir {
                path: "/boot/efi/EFI/migrd".into()
            }
        );
        assert_eq!(
            ch[1],
            Change::Copy {
                from: "/boot/vmlinuz-6.1.0-18-amd64".into(),
                to: "/boot/efi/EFI/migrd/vmlinuz.efi".into(),
                mode: 0o644
            }
        );
        assert!(
            matches!(&ch[2], Change::Copy { to, .. } if to == Path::new("/boot/efi/EFI/migrd/initrd.img"))
        );
        // The lowest free number is 3.
        let Change::EfiVar {
            name,
            attributes,
            data: Some(data),
        } = &ch[3]
        else {
            panic!("{:?}", ch[3])
        };
        assert_eq!(name, &vars::boot_var(3));
        assert_eq!(*attributes, 7);
        let o = LoadOption::decode(data).unwrap();
        assert_eq!(o.description, "migrd one-shot");
        assert_eq!(
            o.path_string(),
            r"HD(1,GPT,0fc63daf-8483-4772-8e79-3d69d8477de4,0x800,0x100000)/File(\EFI\migrd\vmlinuz.efi)"
        );
        assert_eq!(
            o.optional_text().as_deref(),
            Some(r"initrd=\EFI\migrd\initrd.img console=ttyS0 panic=10")
        );
        assert_eq!(
            ch[4],
            Change::EfiVar {
                name: format!("BootNext-{}", vars::GLOBAL),
                attributes: 7,
                data: Some(vec![3, 0])
            }
        );
        assert!(!ch
            .iter()
            .any(|c| matches!(c, Change::EfiVar { name, .. } if name.starts_with("BootOrder"))));
        assert_eq!(entry_var(&facts()), Some(vars::boot_var(3)));
    }

    #[test]
    fn refuses_secure_boot_pointing_at_grub() {
        let mut f = facts();
        f.secure_boot = Some(true);
        let e = arm(&f, &inputs()).unwrap_err();
        assert_eq!(e, EfiError::SecureBoot);
        let msg = e.to_string();
        assert!(
            msg.contains("Secure Boot") && msg.contains("--boot-via grub"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_a_full_esp_with_the_numbers() {
        let mut f = facts();
        if let Some(e) = f.esp.as_mut() {
            e.free_bytes = 210 << 20; // 208 MiB needed + 8 MiB margin
        }
        let e = arm(&f, &inputs()).unwrap_err();
        assert!(matches!(e, EfiError::NoSpace { need, .. } if need == 208 << 20));
        assert!(e.to_string().contains("/boot/efi"), "{e}");
        if let Some(e) = f.esp.as_mut() {
            e.free_bytes = (216 << 20) + 1;
        }
        assert!(arm(&f, &inputs()).is_ok());
    }

    #[test]
    fn refuses_without_an_esp_or_numbers() {
        let mut f = facts();
        assert!(BootNext::detect(&f).is_ok());
        f.esp = None;
        assert_eq!(detect(&f, 1).unwrap_err(), EfiError::NoEsp);
        assert_eq!(BootNext::detect(&f).unwrap_err(), EfiError::NoEsp);
        let mut f = facts();
        f.boot_numbers = (0..=u16::MAX).collect();
        assert_eq!(detect(&f, 1).unwrap_err(), EfiError::NoFreeNumber);
    }

    #[test]
    fn grub_and_shim_paths_are_recognised() {
        assert!(is_grub_path(r"HD(1,GPT,x)/File(\EFI\debian\shimx64.efi)"));
        assert!(is_grub_path(r"\EFI\ubuntu\GRUBX64.EFI"));
        assert!(!is_grub_path(r"\EFI\systemd\systemd-bootx64.efi"));
        assert!(!is_grub_path(r"\EFI\migrd\vmlinuz.efi"));
    }
}
