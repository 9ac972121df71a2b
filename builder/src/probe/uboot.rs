//! What the U-Boot strategy needs to know about the device: the
//! filesystems U-Boot may read boot files from (with their PARTUUIDs) and
//! the U-Boot environment through `/etc/fw_env.config`. Read once by the
//! probe, so `migrd check` and `migrd migrate` decide from the same facts.

use super::disks::DiskFacts;
use super::mounts::{self, Mount};
use anyhow::{Context, Result};
use migrd_bootloaders::uboot::detect::{EnvState, BOOT_FILES, PREFIXES};
use migrd_bootloaders::uboot::env::{active_copy, Copy as EnvCopy, Env};
use migrd_bootloaders::uboot::script::ImageArch;
use migrd_bootloaders::uboot::{fw_config, BootFs, UbootFacts};
use migrd_init::arch::Arch;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where boot filesystems are mounted, most specific first.
const MOUNT_POINTS: [&str; 3] = ["/boot/firmware", "/boot", "/"];

/// The boot files on the filesystem mounted at `mp`, as U-Boot sees them
/// (paths inside that filesystem). `other` are the other candidate mount
/// points: their files are not on this filesystem.
fn boot_fs(
    root: &Path,
    mp: &str,
    fstype: &str,
    other: &[&str],
    partuuid: Option<String>,
) -> BootFs {
    let base = root.join(mp.trim_start_matches('/'));
    let mut files = Vec::new();
    for prefix in PREFIXES {
        let device_dir = format!("{}{prefix}", mp.trim_end_matches('/'));
        if other.iter().any(|o| {
            *o != mp && (device_dir == format!("{o}/") || device_dir.starts_with(&format!("{o}/")))
        }) {
            continue; // that folder is another filesystem's mount point
        }
        for f in BOOT_FILES.iter().chain(&["uEnv.txt"]) {
            let in_fs = format!("{prefix}{f}");
            if base.join(in_fs.trim_start_matches('/')).is_file() {
                files.push(in_fs);
            }
        }
    }
    BootFs {
        mount_point: PathBuf::from(mp),
        fstype: fstype.to_string(),
        files,
        partuuid,
    }
}

/// The PARTUUID of the partition mounted at `mp`, from the disk facts.
fn partuuid(disks: &DiskFacts, mp: &str) -> Option<String> {
    [&disks.boot_firmware, &disks.boot, &disks.root]
        .into_iter()
        .flatten()
        .find(|m| m.mount_point == mp)
        .and_then(|m| m.partuuid.clone())
}

fn filesystems(root: &Path, mounts: &[Mount], disks: &DiskFacts) -> Vec<BootFs> {
    let present: Vec<&str> = MOUNT_POINTS
        .into_iter()
        .filter(|mp| *mp == "/" || mounts::mounted_at(mounts, mp).is_some())
        .collect();
    present
        .iter()
        .map(|mp| {
            let fstype = mounts::mounted_at(mounts, mp)
                .map(|m| m.fstype.as_str())
                .unwrap_or("unknown");
            boot_fs(root, mp, fstype, &present, partuuid(disks, mp))
        })
        .collect()
}

fn read_copy(root: &Path, loc: &fw_config::EnvLocation, redundant: bool) -> Result<EnvCopy> {
    let path = root.join(loc.device.trim_start_matches('/'));
    let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", loc.device))?;
    let start = if loc.offset < 0 {
        f.seek(SeekFrom::End(loc.offset))?
    } else {
        f.seek(SeekFrom::Start(loc.offset.unsigned_abs()))?
    };
    let mut buf = vec![0; loc.size];
    f.read_exact(&mut buf)
        .with_context(|| format!("reading {} bytes at {start} of {}", loc.size, loc.device))?;
    Ok(Env::decode(&buf, redundant, &loc.device)?)
}

/// The U-Boot environment through `/etc/fw_env.config`, as far as it can be
/// read (reported, never needed for arming).
fn environment(root: &Path) -> EnvState {
    let cfg = root.join("etc/fw_env.config");
    let Ok(text) = std::fs::read_to_string(&cfg) else {
        return EnvState::NotConfigured;
    };
    let conf = match fw_config::parse(&text, "/etc/fw_env.config") {
        Ok(c) => c,
        Err(e) => return EnvState::Unreadable(e.to_string()),
    };
    let copies: Vec<Result<EnvCopy, String>> = conf
        .copies
        .iter()
        .map(|l| read_copy(root, l, conf.redundant()).map_err(|e| format!("{e:#}")))
        .collect();
    let ok = |i: usize| copies.get(i).and_then(|c| c.as_ref().ok());
    match active_copy(ok(0), ok(1)).and_then(ok) {
        Some(c) => EnvState::Read(c.env.clone()),
        None => EnvState::Unreadable(
            copies
                .iter()
                .filter_map(|c| c.as_ref().err().cloned())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// What the U-Boot strategy knows about the device under `root`, or why it
/// cannot use it.
pub fn facts(root: &Path, disks: &DiskFacts, arch: Option<Arch>) -> Result<UbootFacts, String> {
    let arch = match arch {
        Some(Arch::Aarch64) => ImageArch::Arm64,
        Some(Arch::Armv7) => ImageArch::Arm,
        other => {
            return Err(format!(
                "the U-Boot strategy boots ARM kernels only, and this kernel is {}",
                other
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "of an unknown architecture".into())
            ))
        }
    };
    let mounts = mounts::read(root);
    Ok(UbootFacts {
        filesystems: filesystems(root, &mounts, disks),
        env: environment(root),
        arch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrd_bootloaders::uboot::{self, Flow};

    fn disks(root: &Path) -> DiskFacts {
        super::super::disks::probe(root, &mounts::read(root))
    }

    fn mountinfo(root: &Path, lines: &[(&str, &str)]) {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (mp, fs))| format!("{i} 1 179:{i} / {mp} rw - {fs} /dev/mmcblk0p{i} rw\n"))
            .collect();
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::write(root.join("proc/self/mountinfo"), text).unwrap();
    }

    #[test]
    fn separate_fat_boot_with_boot_scr_is_replaced_there() {
        let d = tempfile::tempdir().unwrap();
        mountinfo(d.path(), &[("/", "ext4"), ("/boot", "vfat")]);
        std::fs::create_dir_all(d.path().join("boot")).unwrap();
        std::fs::write(d.path().join("boot/boot.scr"), b"x").unwrap();
        let f = facts(d.path(), &disks(d.path()), Some(Arch::Aarch64)).unwrap();
        assert_eq!(f.filesystems.len(), 2);
        assert_eq!(f.filesystems[0].files, vec!["/boot.scr".to_string()]);
        // "/"'s /boot/ prefix is the other filesystem: not counted twice.
        assert!(f.filesystems[1].files.is_empty());
        assert_eq!(
            uboot::detect(&f).unwrap(),
            Flow::ReplaceScript {
                fs: 0,
                script: "/boot.scr".into()
            }
        );
        assert_eq!(f.env, EnvState::NotConfigured);
    }

    #[test]
    fn environment_is_read_through_fw_env_config_at_an_offset() {
        let d = tempfile::tempdir().unwrap();
        mountinfo(d.path(), &[("/", "ext4")]);
        let mut env = Env::new();
        env.set("bootlimit", "3").unwrap();
        let mut disk = vec![0u8; 0x3000];
        disk[0x1000..0x2000].copy_from_slice(&env.encode(0x1000, None).unwrap());
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("dev/mmcblk0"), &disk).unwrap();
        std::fs::write(
            d.path().join("etc/fw_env.config"),
            "/dev/mmcblk0 -0x2000 0x1000\n",
        )
        .unwrap();
        let f = facts(d.path(), &disks(d.path()), Some(Arch::Armv7)).unwrap();
        assert!(f.counts_boots(), "{:?}", f.env);
        std::fs::write(
            d.path().join("etc/fw_env.config"),
            "/dev/mmcblk0 0 0x1000\n",
        )
        .unwrap();
        let f = facts(d.path(), &disks(d.path()), Some(Arch::Armv7)).unwrap();
        assert!(
            matches!(&f.env, EnvState::Unreadable(e) if e.contains("CRC32")),
            "{:?}",
            f.env
        );
    }

    #[test]
    fn x86_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = facts(d.path(), &disks(d.path()), Some(Arch::X86_64)).unwrap_err();
        assert!(e.contains("ARM kernels only"), "{e}");
    }
}
