//! The GRUB strategy's facts, from the probe: where GRUB and /boot are, on
//! which filesystem and layers, and the filesystem's UUID (read from the
//! device itself, like GRUB's `search --fs-uuid` will).

use crate::probe::disks::MountedOn;
use crate::probe::Facts;
use anyhow::{bail, Context, Result};
use migrd_bootloaders::grub::GrubFacts;
use migrd_init::fsprobe;
use std::path::{Path, PathBuf};

/// Path of `p` relative to the root of the filesystem mounted at `mount_point`.
pub fn in_fs(p: &str, mount_point: &str) -> String {
    let rel = if mount_point == "/" {
        p
    } else {
        p.strip_prefix(mount_point).unwrap_or(p)
    };
    if rel.starts_with('/') {
        rel.to_string()
    } else {
        format!("/{rel}")
    }
}

/// Read the filesystem UUID of a mounted filesystem's device.
pub fn fs_uuid(root: &Path, m: &MountedOn) -> Result<(String, String)> {
    let dev = root.join(m.source.trim_start_matches('/'));
    let mut f = std::fs::File::open(&dev)
        .with_context(|| format!("opening {} to read its filesystem UUID", dev.display()))?;
    match fsprobe::probe(&mut f)? {
        Some(i) => Ok((i.uuid, i.fstype)),
        None => bail!(
            "{} ({}) is not an ext2/3/4 or FAT filesystem migrd can boot from",
            m.source,
            m.fstype
        ),
    }
}

/// Build the GRUB facts for the device.
pub fn from_probe(root: &Path, facts: &Facts) -> Result<GrubFacts> {
    let Some(grub) = &facts.boot.grub else {
        bail!("GRUB is not installed here (no /boot/grub/grub.cfg); choose another --boot-via");
    };
    let Some(boot) = facts.disks.boot.as_ref().or(facts.disks.root.as_ref()) else {
        bail!(
            "cannot tell which filesystem holds /boot: {}",
            facts.disks.problems.join("; ")
        );
    };
    let (uuid, _) = fs_uuid(root, boot)?;
    Ok(assemble(&grub.dir, boot, uuid))
}

/// The strategy's facts from the probe's: GRUB's folder, the filesystem
/// holding /boot (with the storage layers under it) and its UUID.
pub fn assemble(grub_dir: &str, boot: &MountedOn, uuid: String) -> GrubFacts {
    let files_dir = "/boot/migrd";
    GrubFacts {
        grub_dir: PathBuf::from(grub_dir),
        grub_dir_fstype: boot.fstype.clone(),
        grub_dir_layers: boot
            .layers
            .iter()
            .filter(|l| matches!(l.kind.as_str(), "lvm" | "crypt" | "dm" | "md"))
            .map(|l| l.kind.clone())
            .collect(),
        files_fs_uuid: uuid,
        files_dir: PathBuf::from(files_dir),
        files_dir_in_fs: in_fs(files_dir, &boot.mount_point),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::probe::disks::Layer;

    fn mounted(mount_point: &str, fstype: &str, kinds: &[&str]) -> MountedOn {
        MountedOn {
            mount_point: mount_point.into(),
            fstype: fstype.into(),
            source: "/dev/x".into(),
            layers: kinds
                .iter()
                .enumerate()
                .map(|(i, k)| Layer {
                    name: format!("l{i}"),
                    kind: k.to_string(),
                    dm_name: None,
                })
                .collect(),
            disks: vec!["sda".into()],
            partuuid: None,
        }
    }

    #[test]
    fn grubenv_on_lvm_raid_or_btrfs_is_refused_from_probe_facts() {
        use migrd_bootloaders::grub::detect;
        // /boot on the root filesystem, which sits on LVM (Ubuntu's default
        // without a separate /boot): refuse, naming the layer.
        let f = assemble(
            "/boot/grub",
            &mounted("/", "ext4", &["lvm", "partition", "disk"]),
            "u".into(),
        );
        let e = detect(&f).unwrap_err().to_string();
        assert!(e.contains("lvm") && e.contains("--boot-via"), "{e}");
        let f = assemble(
            "/boot/grub",
            &mounted("/", "ext4", &["md", "partition", "disk"]),
            "u".into(),
        );
        assert!(detect(&f).is_err());
        let f = assemble(
            "/boot/grub",
            &mounted("/", "btrfs", &["partition", "disk"]),
            "u".into(),
        );
        assert!(detect(&f).unwrap_err().to_string().contains("btrfs"));
        // A separate plain /boot partition is fine, and paths become
        // relative to it.
        let f = assemble(
            "/boot/grub",
            &mounted("/boot", "ext4", &["partition", "disk"]),
            "u".into(),
        );
        assert!(detect(&f).is_ok());
        assert_eq!(f.files_dir_in_fs, "/migrd");
    }

    #[test]
    fn paths_are_relative_to_their_filesystem() {
        assert_eq!(in_fs("/boot/migrd", "/"), "/boot/migrd");
        assert_eq!(in_fs("/boot/migrd", "/boot"), "/migrd");
    }
}
