//! Finding the target disk by stable identity.
//!
//! Stage 2 has no udev, so it reads what udev would have read: sysfs
//! attributes (serial, WWID, model, size) and the partition table on the disk
//! itself (for PARTUUIDs). All paths hang off a [`SysRoot`] so tests run on
//! fixture trees.

use crate::plan::TargetDisk;
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where sysfs and /dev are (`/sys` and `/dev` on a live system).
#[derive(Clone, Debug)]
pub struct SysRoot {
    /// The sysfs mount.
    pub sys: PathBuf,
    /// The devtmpfs mount.
    pub dev: PathBuf,
}

impl SysRoot {
    /// The live system.
    pub fn live() -> Self {
        SysRoot {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// What stage 2 knows about one whole disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Kernel name (`vda`, `sda`, `mmcblk0`, `nvme0n1`).
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Serial number, if the driver reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// WWID / WWN, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwid: Option<String>,
    /// Model string, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// PARTUUIDs of the partitions on it (lowercase).
    pub partuuids: Vec<String>,
}

/// Block devices that are never a migration target.
fn is_candidate_name(name: &str) -> bool {
    const NEVER: [&str; 9] = [
        "loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd", "mtdblock",
    ];
    let virtual_or_optical = NEVER.iter().any(|p| name.starts_with(p));
    // eMMC hardware boot partitions and the replay-protected block.
    let mmc_special =
        name.starts_with("mmcblk") && (name.contains("boot") || name.ends_with("rpmb"));
    !virtual_or_optical && !mmc_special
}

fn read_attr(p: &Path) -> Option<String> {
    let s = std::fs::read_to_string(p).ok()?;
    let t = s.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// List the whole disks the kernel knows now.
pub fn scan(root: &SysRoot) -> std::io::Result<Vec<Disk>> {
    let mut out = Vec::new();
    let dir = match std::fs::read_dir(root.sys.join("block")) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in dir.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if !is_candidate_name(&name) {
            continue;
        }
        let b = root.sys.join("block").join(&name);
        let sectors: u64 = read_attr(&b.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue; // empty card reader slot, ejected medium
        }
        let serial = read_attr(&b.join("serial")).or_else(|| read_attr(&b.join("device/serial")));
        let wwid = read_attr(&b.join("wwid"))
            .or_else(|| read_attr(&b.join("device/wwid")))
            .or_else(|| read_attr(&b.join("device/wwn")));
        let model =
            read_attr(&b.join("device/model")).or_else(|| read_attr(&b.join("device/name")));
        let partuuids = File::open(root.dev.join(&name))
            .map(|mut f| crate::partuuid::read_partuuids(&mut f).unwrap_or_default())
            .unwrap_or_default();
        out.push(Disk {
            name,
            size_bytes: sectors * 512, // sysfs `size` is always in 512-byte units
            serial,
            wwid,
            model,
            partuuids,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The `/dev/disk/by-id` names udev would give this disk (the common rules:
/// virtio, NVMe, MMC, ATA, WWN).
pub fn by_id_names(d: &Disk) -> Vec<String> {
    let clean = |s: &str| s.trim().replace(' ', "_");
    let mut v = Vec::new();
    if let Some(s) = &d.serial {
        let s = clean(s);
        if d.name.starts_with("vd") {
            v.push(format!("virtio-{s}"));
        }
        if let Some(m) = &d.model {
            let m = clean(m);
            if d.name.starts_with("nvme") {
                v.push(format!("nvme-{m}_{s}"));
            } else if d.name.starts_with("mmcblk") {
                v.push(format!("mmc-{m}_{s}"));
            } else if d.name.starts_with("sd") {
                v.push(format!("ata-{m}_{s}"));
                v.push(format!("scsi-{m}_{s}"));
            }
        }
    }
    if let Some(w) = &d.wwid {
        let w = clean(w);
        if let Some(rest) = w.strip_prefix("naa.") {
            v.push(format!("wwn-0x{rest}"));
        } else if w.starts_with("0x") {
            v.push(format!("wwn-{w}"));
        }
    }
    v
}

/// Why a disk does or does not match.
fn mismatch(t: &TargetDisk, d: &Disk) -> Option<String> {
    let eq = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    if let Some(s) = &t.serial {
        if !d.serial.as_deref().is_some_and(|x| eq(x, s)) {
            return Some(format!("serial is not {s}"));
        }
    }
    if let Some(w) = &t.wwn {
        let w = w.trim_start_matches("wwn-");
        let ok = d
            .wwid
            .as_deref()
            .is_some_and(|x| eq(x, w) || eq(&format!("0x{}", x.trim_start_matches("naa.")), w));
        if !ok {
            return Some(format!("wwn is not {w}"));
        }
    }
    if let Some(id) = &t.by_id {
        let id = id.trim_start_matches("/dev/disk/by-id/");
        if !by_id_names(d).iter().any(|n| n == id) {
            return Some(format!("no by-id name {id}"));
        }
    }
    if let Some(p) = &t.partuuid {
        if !d.partuuids.iter().any(|x| eq(x, p)) {
            return Some(format!("no partition with PARTUUID {p}"));
        }
    }
    if t.allow_name_only
        && t.serial.is_none()
        && t.wwn.is_none()
        && t.by_id.is_none()
        && t.partuuid.is_none()
    {
        if let Some(n) = &t.name_hint {
            if d.name != n.trim_start_matches("/dev/") {
                return Some(format!("name is not {n}"));
            }
        }
    }
    if let Some(sz) = t.size_bytes {
        if d.size_bytes != sz {
            return Some(format!("size {} is not {sz}", d.size_bytes));
        }
    }
    None
}

/// Outcome of matching the plan's target against the disks present.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// Nothing matched.
    #[error("no disk matches the target ({wanted}); disks present: {seen}")]
    NotFound {
        /// The target, described.
        wanted: String,
        /// The disks seen, with their identities.
        seen: String,
    },
    /// More than one matched: refusing to guess.
    #[error("{count} disks match the target ({wanted}): {names}; refusing to guess")]
    Ambiguous {
        /// The target, described.
        wanted: String,
        /// How many matched.
        count: usize,
        /// Their names.
        names: String,
    },
    /// The plan names no stable identity.
    #[error("the plan names no stable identity for the target disk")]
    Unidentified,
}

/// Describe a target for messages.
pub fn describe(t: &TargetDisk) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &t.serial {
        parts.push(format!("serial={s}"));
    }
    if let Some(s) = &t.wwn {
        parts.push(format!("wwn={s}"));
    }
    if let Some(s) = &t.by_id {
        parts.push(format!("by-id={s}"));
    }
    if let Some(s) = &t.partuuid {
        parts.push(format!("partuuid={s}"));
    }
    if let Some(s) = &t.name_hint {
        parts.push(format!("name={s}"));
    }
    if let Some(s) = t.size_bytes {
        parts.push(format!("size={s}"));
    }
    parts.join(" ")
}

/// Pick the one disk matching the target.
pub fn select<'a>(t: &TargetDisk, disks: &'a [Disk]) -> Result<&'a Disk, FindError> {
    if !t.is_identified() {
        return Err(FindError::Unidentified);
    }
    let hits: Vec<&Disk> = disks.iter().filter(|d| mismatch(t, d).is_none()).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(FindError::NotFound {
            wanted: describe(t),
            seen: if disks.is_empty() {
                "none".into()
            } else {
                disks
                    .iter()
                    .map(|d| format!("{} ({})", d.name, mismatch(t, d).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        many => Err(FindError::Ambiguous {
            wanted: describe(t),
            count: many.len(),
            names: many
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, SysRoot) {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        let dev = d.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let disk = |name: &str, size: &str, attrs: &[(&str, &str)]| {
            let b = sys.join("block").join(name);
            std::fs::create_dir_all(b.join("device")).unwrap();
            std::fs::write(b.join("size"), size).unwrap();
            for (k, v) in attrs {
                std::fs::write(b.join(k), v).unwrap();
            }
        };
        disk("vda", "2048\n", &[("serial", "MIGRDTEST\n")]);
        disk("vdb", "4096\n", &[("serial", "OTHER\n")]);
        disk("loop0", "100\n", &[]);
        disk(
            "sda",
            "8192\n",
            &[
                ("device/model", "QEMU HARDDISK   \n"),
                ("device/serial", "QM0001\n"),
                ("device/wwid", "naa.5000c500a1b2c3d4\n"),
            ],
        );
        disk("sdb", "0\n", &[]);
        (d, SysRoot { sys, dev })
    }

    #[test]
    fn scan_lists_whole_disks_with_identities() {
        let (_d, root) = fixture();
        let disks = scan(&root).unwrap();
        let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "vda", "vdb"]);
        assert_eq!(disks[1].serial.as_deref(), Some("MIGRDTEST"));
        assert_eq!(disks[1].size_bytes, 2048 * 512);
        assert_eq!(disks[0].model.as_deref(), Some("QEMU HARDDISK"));
    }

    #[test]
    fn selects_by_serial_wwn_and_by_id() {
        let (_d, root) = fixture();
        let disks = scan(&root).unwrap();
        let t = TargetDisk {
            serial: Some("migrdtest".into()),
            ..Default::default()
        };
        assert_eq!(select(&t, &disks).unwrap().name, "vda");
        let t = TargetDisk {
            wwn: Some("0x5000c500a1b2c3d4".into()),
            ..Default::default()
        };
        assert_eq!(select(&t, &disks).unwrap().name, "sda");
        let t = TargetDisk {
            by_id: Some("/dev/disk/by-id/virtio-OTHER".into()),
            ..Default::default()
        };
        assert_eq!(select(&t, &disks).unwrap().name, "vdb");
        let t = TargetDisk {
            by_id: Some("ata-QEMU_HARDDISK_QM0001".into()),
            ..Default::default()
        };
        assert_eq!(select(&t, &disks).unwrap().name, "sda");
    }

    #[test]
    fn all_given_identities_must_agree() {
        let (_d, root) = fixture();
        let disks = scan(&root).unwrap();
        let t = TargetDisk {
            serial: Some("MIGRDTEST".into()),
            size_bytes: Some(1),
            ..Default::default()
        };
        let e = select(&t, &disks).unwrap_err().to_string();
        assert!(
            e.contains("no disk matches") && e.contains("vda (size"),
            "{e}"
        );
    }

    #[test]
    fn a_bare_name_is_not_an_identity_unless_allowed() {
        let (_d, root) = fixture();
        let disks = scan(&root).unwrap();
        let mut t = TargetDisk {
            name_hint: Some("/dev/vdb".into()),
            ..Default::default()
        };
        assert!(matches!(select(&t, &disks), Err(FindError::Unidentified)));
        t.allow_name_only = true;
        assert_eq!(select(&t, &disks).unwrap().name, "vdb");
    }

    #[test]
    fn ambiguity_is_refused() {
        let disks = vec![
            Disk {
                name: "sda".into(),
                serial: Some("X".into()),
                ..Default::default()
            },
            Disk {
                name: "sdb".into(),
                serial: Some("X".into()),
                ..Default::default()
            },
        ];
        let t = TargetDisk {
            serial: Some("X".into()),
            ..Default::default()
        };
        assert!(matches!(
            select(&t, &disks),
            Err(FindError::Ambiguous { count: 2, .. })
        ));
    }
}
