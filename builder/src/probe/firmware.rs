//! How the machine boots: UEFI or BIOS, the Raspberry Pi firmware or U-Boot,
//! Secure Boot (read from efivars directly, no `mokutil`), and which
//! bootloader pieces a one-shot strategy could use.

use super::board::Board;
use super::disks::DiskFacts;
use super::mounts::{self, Mount};
use super::rootfs;
use serde::Serialize;
use std::path::Path;

/// The boot firmware family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// PC BIOS (or UEFI CSM).
    Bios,
    /// UEFI (`/sys/firmware/efi` exists).
    Uefi,
    /// Raspberry Pi VideoCore firmware (`config.txt`).
    Rpi,
    /// U-Boot or another device-tree bootloader.
    Uboot,
}

/// GRUB as found on the system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrubFacts {
    /// Directory holding `grub.cfg` (`/boot/grub`, `/boot/grub2`).
    pub dir: String,
    /// Filesystem type of that directory.
    pub fstype: Option<String>,
    /// Whether GRUB itself can rewrite `grubenv` there at boot (needed for
    /// `next_entry` to clear itself): a plain partition with ext2/3/4 or vfat,
    /// not LVM, RAID, dm-crypt or btrfs.
    pub env_writable: bool,
    /// Why not, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The Raspberry Pi firmware partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RpiFacts {
    /// Where it is mounted (`/boot/firmware` on bookworm, `/boot` before).
    pub boot_dir: String,
    /// `config.txt` found there.
    pub config_txt: bool,
    /// `cmdline.txt` found there.
    pub cmdline_txt: bool,
    /// The board's firmware supports tryboot (Pi 4/400/CM4/5).
    pub tryboot: bool,
}

/// Everything boot-related the probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootFacts {
    /// The firmware family.
    pub firmware: Firmware,
    /// Secure Boot: `Some(true)` enabled, `Some(false)` disabled, `None`
    /// not UEFI or efivars unreadable.
    pub secure_boot: Option<bool>,
    /// efivarfs is readable (BootNext can be set).
    pub efivars: bool,
    /// The device path of the firmware entry that booted this system
    /// (`BootCurrent`), in efibootmgr's notation: tells whether GRUB (or shim)
    /// is the active boot manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_current: Option<String>,
    /// GRUB, if installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grub: Option<GrubFacts>,
    /// Raspberry Pi firmware partition, if this is a Pi.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpi: Option<RpiFacts>,
    /// On a U-Boot board: its boot filesystems and environment (what the
    /// U-Boot strategy decides from), or why they cannot be used.
    #[serde(skip)]
    pub uboot: Option<Result<migrd_bootloaders::uboot::UbootFacts, String>>,
    /// What the kexec strategy needs to know about the running kernel.
    pub kexec: migrd_bootloaders::kexec::KexecFacts,
}

const EFI_GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Secure Boot state from efivarfs (4 attribute bytes, then the value) or
/// the legacy sysfs `vars/` interface.
pub fn secure_boot(root: &Path) -> Option<bool> {
    let efivar = rootfs::join(
        root,
        Path::new(&format!("sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL}")),
    );
    if let Ok(b) = std::fs::read(efivar) {
        return b.get(4).map(|v| *v == 1);
    }
    let legacy = rootfs::join(
        root,
        Path::new(&format!(
            "sys/firmware/efi/vars/SecureBoot-{EFI_GLOBAL}/data"
        )),
    );
    std::fs::read(legacy).ok()?.first().map(|v| *v == 1)
}

/// The path of the `BootCurrent` entry, from efivarfs.
pub fn boot_current(root: &Path) -> Option<String> {
    use migrd_init::efi::{load_option::LoadOption, vars};
    let v = vars::EfiVars::new(rootfs::join(root, Path::new("sys/firmware/efi/efivars")));
    let n = v.boot_current().ok()??;
    let entry = v.read(&vars::boot_var(n)).ok()??;
    LoadOption::decode(&entry.data)
        .ok()
        .map(|o| o.path_string())
}

fn grub(root: &Path, mounts: &[Mount], disks: &DiskFacts) -> Option<GrubFacts> {
    let dir = ["/boot/grub", "/boot/grub2"]
        .into_iter()
        .find(|d| rootfs::exists(root, &format!("{d}/grub.cfg")))?;
    let m = mounts::mount_for(mounts, dir);
    let fstype = m.map(|m| m.fstype.clone());
    let holder = if m.map(|m| m.mount_point.as_str()) == Some("/") {
        disks.root.as_ref()
    } else {
        disks.boot.as_ref()
    };
    let reason = match (fstype.as_deref(), holder) {
        (None, _) => Some(format!("cannot tell which filesystem holds {dir}")),
        (Some(fs), _) if !matches!(fs, "ext2" | "ext3" | "ext4" | "vfat") => Some(format!(
            "{dir} is on {fs}; GRUB only writes grubenv on ext2/3/4 or FAT"
        )),
        (_, Some(h)) if h.on_virtual_layer() => Some(format!(
            "{dir} is on {} ({}); GRUB cannot write grubenv on LVM, RAID or dm-crypt",
            h.source,
            h.layers.first().map(|l| l.kind.as_str()).unwrap_or("?")
        )),
        _ => None,
    };
    Some(GrubFacts {
        dir: dir.into(),
        fstype,
        env_writable: reason.is_none(),
        reason,
    })
}

fn rpi(root: &Path, mounts: &[Mount], board: &Board) -> Option<RpiFacts> {
    if board.family.as_deref() != Some("rpi") {
        return None;
    }
    let boot_dir = if mounts::mounted_at(mounts, "/boot/firmware").is_some()
        || rootfs::exists(root, "boot/firmware/config.txt")
    {
        "/boot/firmware"
    } else {
        "/boot"
    };
    Some(RpiFacts {
        config_txt: rootfs::exists(root, &format!("{boot_dir}/config.txt")),
        cmdline_txt: rootfs::exists(root, &format!("{boot_dir}/cmdline.txt")),
        boot_dir: boot_dir.into(),
        tryboot: board.tryboot,
    })
}

/// Probe the boot chain.
pub fn probe(
    root: &Path,
    board: &Board,
    mounts: &[Mount],
    disks: &DiskFacts,
    arch: Option<migrd_init::arch::Arch>,
) -> BootFacts {
    let uefi = rootfs::exists(root, "sys/firmware/efi");
    let firmware = if uefi {
        Firmware::Uefi
    } else if board.family.as_deref() == Some("rpi") {
        Firmware::Rpi
    } else if board.source == "device-tree" {
        Firmware::Uboot
    } else {
        Firmware::Bios
    };
    let uboot = (firmware == Firmware::Uboot).then(|| super::uboot::facts(root, disks, arch));
    let secure_boot = if uefi { secure_boot(root) } else { None };
    BootFacts {
        firmware,
        secure_boot,
        efivars: uefi && rootfs::exists(root, "sys/firmware/efi/efivars"),
        boot_current: if uefi { boot_current(root) } else { None },
        grub: grub(root, mounts, disks),
        rpi: rpi(root, mounts, board),
        uboot,
        kexec: super::kexec::probe(root, secure_boot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_from_efivarfs_bytes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(secure_boot(d.path()), None);
        let f = dir.join(format!("SecureBoot-{EFI_GLOBAL}"));
        std::fs::write(&f, [6, 0, 0, 0, 1]).unwrap();
        assert_eq!(secure_boot(d.path()), Some(true));
        std::fs::write(&f, [6, 0, 0, 0, 0]).unwrap();
        assert_eq!(secure_boot(d.path()), Some(false));
    }
}
