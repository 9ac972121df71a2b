//! `/proc/self/mountinfo`: what is mounted where, from which device.

use super::rootfs;
use serde::Serialize;
use std::path::Path;

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Device number `major:minor` (anonymous `0:NN` for btrfs subvolumes, tmpfs, ...).
    pub dev: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Filesystem type (`ext4`, `vfat`, `btrfs`).
    pub fstype: String,
    /// The mount source (`/dev/sda2`, `/dev/mapper/vg-root`, `tmpfs`).
    pub source: String,
    /// Per-mount options (`rw,relatime`).
    pub options: String,
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                dev: pre.get(2)?.to_string(),
                mount_point: unescape(pre.get(4)?),
                options: pre.get(5)?.to_string(),
                fstype: post.first()?.to_string(),
                source: unescape(post.get(1)?),
            })
        })
        .collect()
}

/// Read `<root>/proc/self/mountinfo`.
pub fn read(root: &Path) -> Vec<Mount> {
    std::fs::read_to_string(rootfs::join(root, Path::new("proc/self/mountinfo")))
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The mount that holds `path`: the longest mount point that is a prefix of
/// it, the last one mounted when several share a point.
pub fn mount_for<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let within = |mp: &str| {
        mp == "/" || path == mp || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
    };
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| within(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.len(), *i))
        .map(|(_, m)| m)
}

/// The mount exactly at `mount_point`, if something is mounted there.
pub fn mounted_at<'a>(mounts: &'a [Mount], mount_point: &str) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.mount_point == mount_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UBUNTU: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/ubuntu--vg-ubuntu--lv rw
31 28 8:2 / /boot rw,relatime shared:60 - ext4 /dev/sda2 rw
33 31 8:1 / /boot/efi rw,relatime shared:62 - vfat /dev/sda1 rw,fmask=0077
40 28 0:45 / /mnt/my\\040disk rw - ext4 /dev/sdb1 rw
";

    #[test]
    fn finds_the_mount_holding_a_path() {
        let m = parse(UBUNTU);
        assert_eq!(m.len(), 5);
        assert_eq!(mount_for(&m, "/").map(|m| m.dev.as_str()), Some("253:0"));
        assert_eq!(
            mount_for(&m, "/boot/grub/grubenv").map(|m| m.dev.as_str()),
            Some("8:2")
        );
        assert_eq!(
            mount_for(&m, "/boot/efi/EFI").map(|m| m.fstype.as_str()),
            Some("vfat")
        );
        assert_eq!(
            mount_for(&m, "/bootx").map(|m| m.dev.as_str()),
            Some("253:0")
        );
        assert_eq!(
            mounted_at(&m, "/mnt/my disk").map(|m| m.source.as_str()),
            Some("/dev/sdb1")
        );
        assert!(mounted_at(&m, "/boot/firmware").is_none());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse("nonsense\n\n1 2 3\n").is_empty());
    }
}
