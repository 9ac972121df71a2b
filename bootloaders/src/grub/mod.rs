//! The GRUB one-shot strategy (BIOS and EFI GRUB alike).
//!
//! migrd adds one menu entry, with a stable id, to `custom.cfg` (which
//! Debian's and Ubuntu's generated grub.cfg source through 41_custom), and
//! sets `next_entry` to it in grubenv — what `grub-reboot` does. At the next
//! boot GRUB's 00_header code boots that entry once and clears `next_entry`
//! with `save_env` before booting it, so any later reset boots the default
//! entry: the old OS. Nothing for stage 2 to disarm.
//!
//! GRUB can only clear the variable where it can write grubenv in place: a
//! plain filesystem on a plain partition. On LVM, RAID or btrfs it cannot,
//! the entry would boot forever, and [`detect`] refuses.

pub mod env;

use crate::change::Change;
use env::GrubEnv;
use std::path::{Path, PathBuf};

/// The id of migrd's menu entry.
pub const ENTRY_ID: &str = "migrd-oneshot";
const BEGIN: &str = "### BEGIN migrd one-shot entry";
const END: &str = "### END migrd one-shot entry ###";
const TEMPLATE: &str = include_str!("../../../templates/grub/migrd-entry.cfg");

/// What the GRUB strategy needs to know about the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrubFacts {
    /// GRUB's folder on the running system (`/boot/grub`).
    pub grub_dir: PathBuf,
    /// Filesystem type holding it (`ext4`, `vfat`, ...).
    pub grub_dir_fstype: String,
    /// Storage layers under that filesystem (`lvm`, `raid`, `crypt`), empty
    /// for a plain partition.
    pub grub_dir_layers: Vec<String>,
    /// Filesystem UUID of the filesystem that will hold migrd's files.
    pub files_fs_uuid: String,
    /// Where migrd's files go on the running system (`/boot/migrd`).
    pub files_dir: PathBuf,
    /// The same folder as GRUB sees it: relative to its filesystem's root
    /// (`/boot/migrd` when /boot is on the root fs, `/migrd` when /boot is
    /// its own partition).
    pub files_dir_in_fs: String,
}

/// Why GRUB cannot make a one-shot boot here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrubError {
    /// grubenv is on a layer GRUB cannot write.
    #[error(
        "GRUB cannot clear next_entry here: {grubenv} is on {what}, where GRUB's save_env cannot write, \
         so the migration entry would boot again and again. Use another boot strategy (--boot-via efi or kexec) \
         or move /boot to a plain ext4 or FAT partition"
    )]
    EnvNotWritable {
        /// The grubenv path.
        grubenv: String,
        /// The layer or filesystem.
        what: String,
    },
    /// The existing grubenv is damaged.
    #[error("{0} is not a valid GRUB environment block; recreate it with `grub-editenv {0} create` and retry")]
    BadEnv(String),
    /// No GRUB here.
    #[error("no GRUB found: {0} does not exist")]
    NoGrub(String),
}

/// Filesystems GRUB's `save_env` writes to in place.
const WRITABLE_FS: &[&str] = &["ext2", "ext3", "ext4", "vfat", "msdos", "fat"];

/// Check that a one-shot boot through GRUB is possible with these facts.
pub fn detect(f: &GrubFacts) -> Result<(), GrubError> {
    let grubenv = f.grub_dir.join("grubenv").display().to_string();
    if let Some(layer) = f.grub_dir_layers.first() {
        return Err(GrubError::EnvNotWritable {
            grubenv,
            what: format!("{layer} (device-mapper/RAID)"),
        });
    }
    if !WRITABLE_FS.contains(&f.grub_dir_fstype.as_str()) {
        return Err(GrubError::EnvNotWritable {
            grubenv,
            what: format!("a {} filesystem", f.grub_dir_fstype),
        });
    }
    Ok(())
}

/// The menu entry for the migration ramdisk.
pub fn render_entry(f: &GrubFacts, cmdline: &str) -> String {
    TEMPLATE
        .replace("@ENTRY_ID@", ENTRY_ID)
        .replace("@FS_UUID@", &f.files_fs_uuid)
        .replace("@KERNEL@", &format!("{}/vmlinuz", f.files_dir_in_fs))
        .replace("@INITRD@", &format!("{}/initramfs.img", f.files_dir_in_fs))
        .replace("@CMDLINE@", cmdline)
}

/// `custom.cfg` without migrd's entry (None when nothing else remains and
/// the file did not exist before is the caller's business: this only edits
/// text).
pub fn strip_entry(existing: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in existing.split_inclusive('\n') {
        if line.starts_with(BEGIN) {
            inside = true;
            continue;
        }
        if inside {
            if line.trim_end() == END {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
    }
    out
}

/// `custom.cfg` with migrd's entry appended (any earlier migrd entry removed).
pub fn with_entry(existing: Option<&str>, entry: &str) -> String {
    let mut s = strip_entry(existing.unwrap_or(""));
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(entry);
    s
}

/// grubenv with `next_entry` pointing at migrd's entry. `recordfail` is
/// removed: Debian's config waits at the menu forever when it is set, which
/// would stop an unattended migration at the menu.
pub fn armed_env(existing: Option<&[u8]>, path: &Path) -> Result<Vec<u8>, GrubError> {
    let mut env = match existing {
        Some(b) => GrubEnv::parse(b).map_err(|_| GrubError::BadEnv(path.display().to_string()))?,
        None => GrubEnv::default(),
    };
    env.set("next_entry", ENTRY_ID);
    env.unset("recordfail");
    env.to_block()
        .map_err(|_| GrubError::BadEnv(path.display().to_string()))
}

/// Inputs of [`arm`] that exist on the running system.
#[derive(Clone, Debug)]
pub struct ArmInputs<'a> {
    /// Kernel to boot (copied next to the ramdisk, so a kernel upgrade before
    /// the reboot cannot break the entry).
    pub kernel: &'a Path,
    /// The migration initramfs.
    pub initramfs: &'a Path,
    /// Kernel command line of the ramdisk boot.
    pub cmdline: &'a str,
    /// Current `custom.cfg`, if any.
    pub custom_cfg: Option<&'a str>,
    /// Current grubenv, if any.
    pub grubenv: Option<&'a [u8]>,
}

/// The changes that arm a one-shot boot.
pub fn arm(f: &GrubFacts, i: &ArmInputs<'_>) -> Result<Vec<Change>, GrubError> {
    detect(f)?;
    let grubenv = f.grub_dir.join("grubenv");
    let env = armed_env(i.grubenv, &grubenv)?;
    Ok(vec![
        Change::MkDir {
            path: f.files_dir.clone(),
        },
        Change::Copy {
            from: i.kernel.to_path_buf(),
            to: f.files_dir.join("vmlinuz"),
            mode: 0o644,
        },
        Change::Copy {
            from: i.initramfs.to_path_buf(),
            to: f.files_dir.join("initramfs.img"),
            mode: 0o600,
        },
        Change::Write {
            path: f.grub_dir.join("custom.cfg"),
            bytes: with_entry(i.custom_cfg, &render_entry(f, i.cmdline)).into_bytes(),
            mode: 0o644,
            in_place: false,
        },
        // Last: until next_entry is set, nothing boots differently.
        Change::Write {
            path: grubenv,
            bytes: env,
            mode: 0o644,
            in_place: i.grubenv.is_some(),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> GrubFacts {
        GrubFacts {
            grub_dir: "/boot/grub".into(),
            grub_dir_fstype: "ext4".into(),
            grub_dir_layers: vec![],
            files_fs_uuid: "0b2c6a3e-1111-2222-3333-444455556666".into(),
            files_dir: "/boot/migrd".into(),
            files_dir_in_fs: "/boot/migrd".into(),
        }
    }

    #[test]
    fn refuses_grubenv_on_lvm_raid_btrfs() {
        assert_eq!(detect(&facts()), Ok(()));
        for (layers, fs, needle) in [
            (vec!["lvm".to_string()], "ext4", "lvm"),
            (vec!["raid1".to_string()], "ext4", "raid1"),
            (vec![], "btrfs", "btrfs"),
            (vec![], "xfs", "xfs"),
        ] {
            let f = GrubFacts {
                grub_dir_layers: layers,
                grub_dir_fstype: fs.into(),
                ..facts()
            };
            let e = detect(&f).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("--boot-via"), "{e}");
        }
    }

    #[test]
    fn entry_uses_the_fs_relative_paths_and_a_stable_id() {
        let f = GrubFacts {
            files_dir_in_fs: "/migrd".into(),
            ..facts()
        };
        let e = render_entry(&f, "rootfstype=ramfs panic=10 console=ttyS0");
        assert!(e.contains("--id migrd-oneshot {"));
        assert!(e.contains(
            "search --no-floppy --fs-uuid --set=root 0b2c6a3e-1111-2222-3333-444455556666"
        ));
        assert!(e.contains("linux /migrd/vmlinuz rootfstype=ramfs panic=10 console=ttyS0\n"));
        assert!(e.contains("initrd /migrd/initramfs.img\n"));
        assert!(!e.contains("recordfail") && !e.contains('@'), "{e}");
    }

    #[test]
    fn custom_cfg_keeps_the_operators_text_and_holds_one_entry() {
        let mine = "menuentry 'rescue' { linux /r }\n";
        let once = with_entry(Some(mine), &render_entry(&facts(), "x"));
        let twice = with_entry(Some(&once), &render_entry(&facts(), "y"));
        assert!(twice.starts_with(mine));
        assert_eq!(twice.matches("--id migrd-oneshot").count(), 1);
        assert!(twice.contains("linux /boot/migrd/vmlinuz y"));
        assert_eq!(strip_entry(&twice), mine);
        assert_eq!(
            strip_entry(&with_entry(None, &render_entry(&facts(), "x"))),
            ""
        );
    }

    #[test]
    fn arming_sets_next_entry_and_clears_recordfail_last() {
        let mut old = GrubEnv::default();
        old.set("recordfail", "1");
        old.set("saved_entry", "debian");
        let old = old.to_block().unwrap();
        let i = ArmInputs {
            kernel: Path::new("/boot/vmlinuz-6.1"),
            initramfs: Path::new("/var/lib/migrd/initramfs.img"),
            cmdline: "rootfstype=ramfs",
            custom_cfg: None,
            grubenv: Some(&old),
        };
        let changes = arm(&facts(), &i).unwrap();
        let Some(Change::Write {
            path,
            bytes,
            in_place,
            ..
        }) = changes.last()
        else {
            panic!()
        };
        assert_eq!(path, Path::new("/boot/grub/grubenv"));
        assert!(in_place, "grubenv must keep its blocks");
        let env = GrubEnv::parse(bytes).unwrap();
        assert_eq!(env.get("next_entry"), Some(ENTRY_ID));
        assert_eq!(env.get("recordfail"), None);
        assert_eq!(env.get("saved_entry"), Some("debian"));
        let bad = ArmInputs {
            grubenv: Some(b"garbage"),
            ..i
        };
        assert!(matches!(arm(&facts(), &bad), Err(GrubError::BadEnv(_))));
    }
}
