//! Boot counting in the restore-first mode. A board whose environment sets
//! `bootlimit` and `altbootcmd` runs `altbootcmd` instead of `bootcmd` once
//! `bootcount` exceeds `bootlimit` (U-Boot's `CONFIG_BOOTCOUNT_LIMIT`).
//! With the environment backend (`CONFIG_BOOTCOUNT_ENV`, the one Linux can
//! see) U-Boot counts only while `upgrade_available=1`, and stores the
//! count in the environment at every boot.
//!
//! In the restore-first mode every boot boots the ramdisk until stage 2
//! puts the board file back. So migrd arms the board's counter as well:
//! `bootcount=0` and `upgrade_available=1` in the environment, the
//! original environment riding in the ramdisk and put back by stage 2
//! right after the board file (`DisarmAction::RestoreFile`). A ramdisk
//! that never reaches the restore (kernel panic, missing driver) is then
//! booted `bootlimit` times, after which U-Boot runs the board's own
//! `altbootcmd` — its recovery — instead of looping on the ramdisk.
//!
//! migrd arms only an environment it can put back the way stage 2 puts
//! files back: a single copy kept in a file on a boot filesystem whose
//! partition has a known PARTUUID (U-Boot's `CONFIG_ENV_IS_IN_FAT`, as on
//! Raspberry Pi and many distro-boot boards). An environment on a raw
//! device range or in two copies is reported, not armed. Counters kept
//! elsewhere (RAM, RTC, I²C) count without migrd and are not reset by it.

use super::detect::BootFs;
use super::env::{Env, EnvError};
use super::fw_config::FwEnvConfig;
use crate::change::Change;
use migrd_init::plan::DisarmAction;
use std::path::{Path, PathBuf};

/// Where the original environment file rides inside the ramdisk.
pub const SAVED_ENV: &str = "/migrd/uboot/env-original";

/// The board's counter: `bootlimit` above zero and a non-empty
/// `altbootcmd` (without it U-Boot has nothing else to run).
pub fn counter(env: &Env) -> Option<(u64, &str)> {
    let limit = env.get("bootlimit")?.trim().parse::<u64>().ok()?;
    let alt = env.get("altbootcmd")?;
    (limit > 0 && !alt.trim().is_empty()).then_some((limit, alt))
}

/// The environment file migrd can arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFile {
    /// The file as the device sees it (fw_env.config's device).
    pub device_path: PathBuf,
    /// Index into the facts' boot filesystems.
    pub fs: usize,
    /// The file, inside that filesystem (`/uboot.env`).
    pub in_fs: String,
    /// Byte offset of the environment in the file.
    pub offset: usize,
    /// Size of the environment area.
    pub size: usize,
    /// PARTUUID of the filesystem's partition.
    pub partuuid: String,
}

/// Why the board's counter is not armed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotArmed {
    /// Two copies.
    #[error("the environment is redundant (two copies in /etc/fw_env.config); migrd arms only a single copy")]
    Redundant,
    /// Not a file of a boot filesystem.
    #[error("the environment is kept on {0}, not in a file of a boot filesystem; the ramdisk puts back files by partition, not raw device ranges")]
    NotAFile(String),
    /// A file on a partition without PARTUUID.
    #[error("{0} is on a partition without a known PARTUUID, by which the ramdisk would find it to put it back")]
    NoPartuuid(String),
    /// An offset counted from the end of a file.
    #[error("fw_env.config gives {0} a negative offset, which only block devices take")]
    NegativeOffset(String),
}

/// Where the environment of `cfg` lives among the boot filesystems `fss`,
/// if migrd can arm it.
pub fn locate(cfg: &FwEnvConfig, fss: &[BootFs]) -> Result<EnvFile, NotArmed> {
    let [loc] = cfg.copies.as_slice() else {
        return Err(NotArmed::Redundant);
    };
    let device = Path::new(&loc.device);
    let (fs, in_fs) = fss
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let rest = device.strip_prefix(&f.mount_point).ok()?;
            Some((i, f.mount_point.components().count(), rest))
        })
        .filter(|(_, _, rest)| !rest.as_os_str().is_empty())
        .max_by_key(|(_, depth, _)| *depth)
        .map(|(i, _, rest)| (i, format!("/{}", rest.display())))
        .filter(|_| !loc.device.starts_with("/dev/"))
        .ok_or_else(|| NotArmed::NotAFile(loc.device.clone()))?;
    let offset =
        usize::try_from(loc.offset).map_err(|_| NotArmed::NegativeOffset(loc.device.clone()))?;
    let partuuid = fss[fs]
        .partuuid
        .clone()
        .ok_or_else(|| NotArmed::NoPartuuid(loc.device.clone()))?;
    Ok(EnvFile {
        device_path: device.to_path_buf(),
        fs,
        in_fs,
        offset,
        size: loc.size,
        partuuid,
    })
}

/// The environment file `file` (its whole bytes) with the counter armed:
/// `bootcount=0` and `upgrade_available=1`, the rest unchanged.
pub fn armed(file: &[u8], at: &EnvFile) -> Result<Vec<u8>, EnvError> {
    let what = at.device_path.display().to_string();
    let end = at.offset.saturating_add(at.size);
    let area = file.get(at.offset..end).ok_or(EnvError::TooSmall {
        what: what.clone(),
        len: file.len().saturating_sub(at.offset),
    })?;
    let mut env = Env::decode(area, false, &what)?.env;
    env.set("bootcount", "0")?;
    env.set("upgrade_available", "1")?;
    let mut out = file.to_vec();
    out[at.offset..end].copy_from_slice(&env.encode(at.size, None)?);
    Ok(out)
}

/// The change that arms the counter: the file rewritten in place (the
/// board's U-Boot reads it through its own FAT or ext4 driver, which
/// follows the file's clusters wherever they are; in place keeps them).
pub fn arm(at: &EnvFile, armed: Vec<u8>) -> Change {
    Change::Write {
        path: at.device_path.clone(),
        bytes: armed,
        mode: 0o644,
        in_place: true,
    }
}

/// Stage 2's step that puts the original environment back, and the file
/// the ramdisk carries for it (path inside the ramdisk, bytes).
pub fn disarm(at: &EnvFile, fss: &[BootFs], original: &[u8]) -> (DisarmAction, (String, Vec<u8>)) {
    (
        DisarmAction::RestoreFile {
            partuuid: at.partuuid.clone(),
            fstype: fss[at.fs].fstype.clone(),
            path: at.in_fs.trim_start_matches('/').to_string(),
            original: SAVED_ENV.into(),
        },
        (SAVED_ENV.to_string(), original.to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uboot::fw_config;

    fn fss() -> Vec<BootFs> {
        vec![
            BootFs {
                mount_point: "/boot/firmware".into(),
                fstype: "vfat".into(),
                files: vec!["/extlinux/extlinux.conf".into()],
                partuuid: Some("0a64d15c-01".into()),
            },
            BootFs {
                mount_point: "/".into(),
                fstype: "ext4".into(),
                files: vec![],
                partuuid: None,
            },
        ]
    }

    fn cfg(text: &str) -> FwEnvConfig {
        fw_config::parse(text, "fw_env.config").unwrap()
    }

    #[test]
    fn a_file_on_the_boot_partition_is_located_there() {
        let at = locate(&cfg("/boot/firmware/uboot.env 0x0 0x4000\n"), &fss()).unwrap();
        assert_eq!(at.fs, 0);
        assert_eq!(at.in_fs, "/uboot.env");
        assert_eq!(at.partuuid, "0a64d15c-01");
        assert_eq!((at.offset, at.size), (0, 0x4000));
    }

    #[test]
    fn what_cannot_be_put_back_is_not_armed() {
        let e = locate(&cfg("/dev/mmcblk0 0x3f8000 0x8000\n"), &fss()).unwrap_err();
        assert_eq!(e, NotArmed::NotAFile("/dev/mmcblk0".into()));
        assert!(e.to_string().contains("raw device ranges"), "{e}");
        let e = locate(
            &cfg("/boot/firmware/uboot.env 0 0x4000\n/boot/firmware/uboot2.env 0 0x4000\n"),
            &fss(),
        )
        .unwrap_err();
        assert_eq!(e, NotArmed::Redundant);
        // On the root filesystem, whose partition has no known PARTUUID.
        let e = locate(&cfg("/var/uboot.env 0 0x4000\n"), &fss()).unwrap_err();
        assert_eq!(e, NotArmed::NoPartuuid("/var/uboot.env".into()));
        let e = locate(&cfg("/boot/firmware/uboot.env -0x4000 0x4000\n"), &fss()).unwrap_err();
        assert_eq!(
            e,
            NotArmed::NegativeOffset("/boot/firmware/uboot.env".into())
        );
    }

    #[test]
    fn only_a_positive_limit_with_an_altbootcmd_counts() {
        let mut env = Env::new();
        assert_eq!(counter(&env), None);
        env.set("bootlimit", "3").unwrap();
        assert_eq!(
            counter(&env),
            None,
            "no altbootcmd: nothing to fall back to"
        );
        env.set("altbootcmd", "run recovery").unwrap();
        assert_eq!(counter(&env), Some((3, "run recovery")));
        env.set("bootlimit", "0").unwrap();
        assert_eq!(counter(&env), None, "bootlimit=0 turns counting off");
        env.set("bootlimit", "x").unwrap();
        assert_eq!(counter(&env), None);
    }

    #[test]
    fn arming_sets_the_count_and_keeps_everything_else() {
        let at = locate(&cfg("/boot/firmware/uboot.env 0x100 0x1000\n"), &fss()).unwrap();
        let mut env = Env::new();
        env.set("bootcmd", "run distro_bootcmd").unwrap();
        env.set("bootlimit", "2").unwrap();
        env.set("bootcount", "7").unwrap();
        let mut file = vec![0xa5u8; 0x100];
        file.extend(env.encode(0x1000, None).unwrap());
        file.extend(b"tail");
        let out = armed(&file, &at).unwrap();
        assert_eq!(out.len(), file.len());
        assert_eq!(
            &out[..0x100],
            &file[..0x100],
            "bytes before the area changed"
        );
        assert_eq!(&out[0x1100..], b"tail", "bytes after the area changed");
        let got = Env::decode(&out[0x100..0x1100], false, "x").unwrap().env;
        assert_eq!(got.get("bootcount"), Some("0"));
        assert_eq!(got.get("upgrade_available"), Some("1"));
        assert_eq!(got.get("bootcmd"), Some("run distro_bootcmd"));
        assert_eq!(got.get("bootlimit"), Some("2"));
        // A damaged or short file is an error, not a guess.
        let mut bad = file.clone();
        bad[0x200] ^= 1;
        assert!(matches!(armed(&bad, &at), Err(EnvError::BadCrc { .. })));
        assert!(matches!(
            armed(&file[..0x800], &at),
            Err(EnvError::TooSmall { .. })
        ));
    }

    #[test]
    fn stage_2_puts_the_original_back_by_partuuid() {
        let at = locate(&cfg("/boot/firmware/uboot.env 0 0x4000\n"), &fss()).unwrap();
        let (action, (saved, bytes)) = disarm(&at, &fss(), b"orig");
        assert_eq!(
            action,
            DisarmAction::RestoreFile {
                partuuid: "0a64d15c-01".into(),
                fstype: "vfat".into(),
                path: "uboot.env".into(),
                original: SAVED_ENV.into(),
            }
        );
        assert_eq!(
            (saved.as_str(), bytes.as_slice()),
            (SAVED_ENV, &b"orig"[..])
        );
        assert_eq!(
            arm(&at, b"new".to_vec()),
            Change::Write {
                path: "/boot/firmware/uboot.env".into(),
                bytes: b"new".to_vec(),
                mode: 0o644,
                in_place: true
            }
        );
    }
}
