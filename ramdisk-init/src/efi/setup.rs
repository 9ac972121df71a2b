//! Stage 2, after flashing a UEFI image: one firmware boot entry for the new
//! OS's `\EFI\BOOT\bootx64.efi` on its ESP, first in `BootOrder`; the
//! ramdisk's entry and entries on the overwritten partitions removed.
//!
//! The new entry is written and put first before anything is deleted, so an
//! interruption leaves at worst a stale entry, never no entry. Without any
//! entry the firmware still finds `\EFI\BOOT\bootx64.efi` on the disk (the
//! removable-media path), which is why a failure here does not fail the
//! migration.

use super::load_option::{HardDrive, LoadOption};
use super::table::TablePart;
use super::vars::{boot_var, EfiVars, NV_BS_RT};
use super::ONESHOT_DESCRIPTION;
use crate::plan::EfiSetup;
use crate::system::System;
use std::path::{Path, PathBuf};

/// Description of the new OS's entry.
pub const DESCRIPTION: &str = "balenaOS";
/// The loader the entry starts (the removable-media path every UEFI image
/// carries).
pub const LOADER: &str = r"\EFI\BOOT\bootx64.efi";

/// The kernel's device name of partition `n` of `disk` (`sda1`, `nvme0n1p1`).
pub fn part_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// Whether `EFI/BOOT/BOOTX64.EFI` exists under `root`, in any letter case
/// (FAT is case-insensitive; a plain folder in tests is not).
pub fn has_loader(root: &Path) -> bool {
    let mut dir = root.to_path_buf();
    for part in ["efi", "boot", "bootx64.efi"] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return false;
        };
        let Some(hit) = rd
            .flatten()
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(part))
        else {
            return false;
        };
        dir = hit.path();
    }
    dir.is_file()
}

/// The new OS's ESP on `disk`: the GPT ESP-type partition, else the first
/// FAT partition holding `\EFI\BOOT\bootx64.efi`.
pub fn find_esp<S: System>(
    sys: &mut S,
    disk: &str,
    table: &[TablePart],
) -> Result<HardDrive, String> {
    if let Some(p) = table.iter().find(|p| p.esp_type) {
        return Ok(p.hd);
    }
    let devs = sys.partitions(disk)?;
    for p in table {
        let name = part_name(disk, p.hd.partition);
        let Some(dev) = devs
            .iter()
            .find(|d| d.file_name().is_some_and(|f| f.to_string_lossy() == name))
        else {
            continue;
        };
        let Some(fs) = sys.fs_info(dev).filter(|f| f.fstype == "vfat") else {
            continue;
        };
        let mnt: PathBuf = sys.payload_root().join("mnt").join("esp");
        std::fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        sys.mount(dev, &fs.fstype, &mnt)?;
        let found = has_loader(&mnt);
        sys.umount(&mnt)?;
        if found {
            return Ok(p.hd);
        }
    }
    Err(format!(
        "no EFI System Partition on /dev/{disk}: no GPT ESP-type partition and no FAT partition with {LOADER}"
    ))
}

/// Create the entry, put it first, remove the stale ones. Returns what was
/// done, one line each.
pub fn run<S: System>(sys: &mut S, disk: &str, setup: &EfiSetup) -> Result<Vec<String>, String> {
    let vars = EfiVars::new(sys.efivarfs()?);
    let table = sys.partition_table(disk)?;
    let esp = find_esp(sys, disk, &table)?;
    let old: Vec<String> = setup
        .old_partuuids
        .iter()
        .map(|p| p.to_lowercase())
        .collect();
    let mut done = Vec::new();
    let mut stale = Vec::new();
    let entries = vars.boot_entries().map_err(|e| e.to_string())?;
    for (n, o) in &entries {
        let Ok(o) = o else { continue };
        let on_old = o.hard_drive().is_some_and(|h| old.contains(&h.partuuid()));
        if o.description == ONESHOT_DESCRIPTION || on_old {
            stale.push((*n, o.clone()));
        }
    }
    let n = vars.first_free_boot().map_err(|e| e.to_string())?;
    let entry = LoadOption::new(DESCRIPTION, esp, LOADER, None);
    vars.write(&boot_var(n), NV_BS_RT, &entry.encode())
        .map_err(|e| e.to_string())?;
    done.push(format!("created Boot{n:04X}: {entry}"));
    let mut order = vars.boot_order().map_err(|e| e.to_string())?;
    order.retain(|x| *x != n && !stale.iter().any(|(s, _)| s == x));
    order.insert(0, n);
    vars.set_boot_order(&order).map_err(|e| e.to_string())?;
    done.push(format!(
        "BootOrder {}",
        order
            .iter()
            .map(|x| format!("{x:04X}"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    for (s, o) in stale {
        vars.delete(&boot_var(s)).map_err(|e| e.to_string())?;
        done.push(format!("deleted stale Boot{s:04X}: {o}"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_device_names() {
        assert_eq!(part_name("sda", 1), "sda1");
        assert_eq!(part_name("vda", 12), "vda12");
        assert_eq!(part_name("nvme0n1", 1), "nvme0n1p1");
        assert_eq!(part_name("mmcblk0", 2), "mmcblk0p2");
    }

    #[test]
    fn loader_found_in_any_case() {
        let d = tempfile::tempdir().unwrap();
        assert!(!has_loader(d.path()));
        std::fs::create_dir_all(d.path().join("EFI/BOOT")).unwrap();
        assert!(!has_loader(d.path()));
        std::fs::write(d.path().join("EFI/BOOT/BOOTX64.EFI"), b"MZ").unwrap();
        assert!(has_loader(d.path()));
        let l = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(l.path().join("efi/boot")).unwrap();
        std::fs::write(l.path().join("efi/boot/bootx64.efi"), b"MZ").unwrap();
        assert!(has_loader(l.path()));
    }
}
