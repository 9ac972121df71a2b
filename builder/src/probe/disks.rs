//! Which disk holds `/` and `/boot`, through partitions, device-mapper (LVM,
//! dm-crypt) and md RAID, and what identifies that disk across boots.
//!
//! The walk starts at the mount's `major:minor` (`/sys/dev/block/M:m`, a
//! symlink into the sysfs device tree) and follows `partition` → parent disk
//! and `slaves/` → lower devices. takeover only accepted a fixed list of
//! majors and failed on device-mapper roots (takeover #106); this handles
//! any major.

use super::mounts::{self, Mount};
use super::rootfs;
use migrd_init::plan::TargetDisk;
use migrd_init::target::{self, SysRoot};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One layer between a filesystem and the disks under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// Kernel name (`sda2`, `dm-0`, `md0`).
    pub name: String,
    /// `disk`, `partition`, `lvm`, `crypt`, `dm`, `md`, `loop`.
    pub kind: String,
    /// device-mapper name (`ubuntu--vg-ubuntu--lv`), for dm layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm_name: Option<String>,
}

/// A filesystem mount and the block layers under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountedOn {
    /// Mount point.
    pub mount_point: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source as the kernel shows it.
    pub source: String,
    /// Layers from the mounted device down to the whole disks.
    pub layers: Vec<Layer>,
    /// The whole disks under it (one unless RAID or a multi-PV volume group).
    pub disks: Vec<String>,
    /// PARTUUID of the partition directly holding the filesystem, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
}

impl MountedOn {
    /// True when the filesystem sits on device-mapper or md (LVM, dm-crypt,
    /// RAID): firmware and GRUB cannot write there.
    pub fn on_virtual_layer(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l.kind.as_str(), "lvm" | "crypt" | "dm" | "md"))
    }
}

/// One whole disk and its identities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskInfo {
    /// Kernel name.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// Serial, if the driver reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// WWID / WWN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwid: Option<String>,
    /// Model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `/dev/disk/by-id` names (from udev's links when present, else the
    /// names udev's rules would make).
    pub by_id: Vec<String>,
    /// PARTUUIDs of its partitions.
    pub partuuids: Vec<String>,
    /// Removable medium (SD card readers report 0 for the built-in slot).
    pub removable: bool,
    /// The drivers its I/O goes through, nearest first (the card or disk
    /// driver, then its controller and buses): the ramdisk must carry them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<super::drivers::BoundDriver>,
}

impl DiskInfo {
    /// The plan's stable description of this disk.
    pub fn target(&self) -> TargetDisk {
        TargetDisk {
            serial: self.serial.clone(),
            wwn: self
                .wwid
                .clone()
                .filter(|w| w.starts_with("naa.") || w.starts_with("0x")),
            by_id: self.by_id.first().cloned(),
            partuuid: self.partuuids.first().cloned(),
            name_hint: Some(self.name.clone()),
            allow_name_only: false,
            size_bytes: Some(self.size_bytes),
            wait_secs: 30,
        }
    }
}

/// Disk facts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskFacts {
    /// What holds `/`.
    pub root: Option<MountedOn>,
    /// What holds `/boot` (may be the same filesystem as `/`).
    pub boot: Option<MountedOn>,
    /// The Raspberry Pi firmware partition (`/boot/firmware` on bookworm, else `/boot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_firmware: Option<MountedOn>,
    /// The EFI system partition (`/boot/efi`), if mounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efi: Option<MountedOn>,
    /// Every whole disk.
    pub disks: Vec<DiskInfo>,
    /// Why root or boot could not be resolved, if they could not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl DiskFacts {
    /// The disk that holds `/` (the default flash target), when exactly one does.
    pub fn root_disk(&self) -> Option<&DiskInfo> {
        let r = self.root.as_ref()?;
        match r.disks.as_slice() {
            [one] => self.disk(one),
            _ => None,
        }
    }

    /// A disk by kernel name (`sda` or `/dev/sda`).
    pub fn disk(&self, name: &str) -> Option<&DiskInfo> {
        let n = name.trim_start_matches("/dev/");
        self.disks.iter().find(|d| d.name == n)
    }
}

/// The sysfs directory of a block device name (`sys/class/block/NAME`),
/// resolved through its symlink into the device tree.
fn class_dir(root: &Path, name: &str) -> PathBuf {
    let p = rootfs::join(root, Path::new("sys/class/block").join(name).as_path());
    std::fs::canonicalize(&p).unwrap_or(p)
}

fn layer_of(root: &Path, dir: &Path) -> Layer {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dm_name = rootfs::read_trimmed(dir, "dm/name");
    let kind = if dir.join("partition").exists() {
        "partition"
    } else if let Some(uuid) = rootfs::read_trimmed(dir, "dm/uuid") {
        if uuid.starts_with("LVM-") {
            "lvm"
        } else if uuid.starts_with("CRYPT-") {
            "crypt"
        } else {
            "dm"
        }
    } else if name.starts_with("md") {
        "md"
    } else if name.starts_with("loop") {
        "loop"
    } else {
        "disk"
    };
    let _ = root;
    Layer {
        name,
        kind: kind.into(),
        dm_name,
    }
}

/// Walk from a block device directory down to whole disks.
fn walk(root: &Path, dir: &Path, layers: &mut Vec<Layer>, disks: &mut Vec<String>, depth: u32) {
    if depth > 16 {
        return;
    }
    let l = layer_of(root, dir);
    let kind = l.kind.clone();
    let name = l.name.clone();
    layers.push(l);
    match kind.as_str() {
        "partition" => {
            if let Some(parent) = dir.parent() {
                walk(root, parent, layers, disks, depth + 1);
            }
        }
        "disk" | "loop" => {
            if !disks.contains(&name) {
                disks.push(name);
            }
        }
        _ => {
            let mut slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            slaves.sort();
            for s in slaves {
                walk(root, &class_dir(root, &s), layers, disks, depth + 1);
            }
        }
    }
}

/// The sysfs directory of the device a mount comes from: by `major:minor`,
/// else (btrfs shows anonymous `0:NN`) by the source path's name.
fn device_dir(root: &Path, m: &Mount) -> Option<PathBuf> {
    if !m.dev.starts_with("0:") {
        let p = rootfs::join(root, Path::new("sys/dev/block").join(&m.dev).as_path());
        if let Ok(c) = std::fs::canonicalize(&p) {
            return Some(c);
        }
    }
    let src = m.source.strip_prefix("/dev/")?;
    // /dev/mapper/x and /dev/disk/by-*/x are symlinks to ../dm-N, ../../sda2.
    let resolved = rootfs::resolve(root, Path::new("dev").join(src).as_path());
    let name = resolved.file_name()?.to_string_lossy().into_owned();
    let d = class_dir(root, &name);
    d.exists().then_some(d)
}

/// PARTUUIDs by partition name from udev's `/dev/disk/by-partuuid` links.
fn partuuid_links(root: &Path) -> Vec<(String, String)> {
    links(root, "dev/disk/by-partuuid")
        .into_iter()
        .map(|(id, target)| (target, id.to_ascii_lowercase()))
        .collect()
}

/// `(link name, target file name)` for every symlink in a /dev/disk dir.
fn links(root: &Path, dir: &str) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(rootfs::join(root, Path::new(dir))) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = rd
        .flatten()
        .filter_map(|e| {
            let t = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                t.file_name()?.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// Resolve the block layers under the filesystem at `mount_point`.
pub fn mounted_on(root: &Path, mounts: &[Mount], path: &str) -> Option<MountedOn> {
    let m = mounts::mount_for(mounts, path)?;
    let dir = device_dir(root, m)?;
    let (mut layers, mut disks) = (Vec::new(), Vec::new());
    walk(root, &dir, &mut layers, &mut disks, 0);
    let top = layers.first().map(|l| l.name.clone()).unwrap_or_default();
    let partuuid = partuuid_links(root)
        .into_iter()
        .find(|(t, _)| *t == top)
        .map(|(_, id)| id)
        .or_else(|| partuuid_from_table(root, &top, disks.first()?));
    Some(MountedOn {
        mount_point: m.mount_point.clone(),
        fstype: m.fstype.clone(),
        source: m.source.clone(),
        layers,
        disks,
        partuuid,
    })
}

/// A partition's PARTUUID read from its disk's partition table, for
/// systems without udev's `/dev/disk/by-partuuid` links (busybox-based
/// images, minimal containers): its number from sysfs, the table from
/// `/dev/<disk>`.
fn partuuid_from_table(root: &Path, part: &str, disk: &str) -> Option<String> {
    let number: u32 = rootfs::read_trimmed(&class_dir(root, part), "partition")?
        .parse()
        .ok()?;
    let mut dev =
        std::fs::File::open(rootfs::join(root, Path::new("dev").join(disk).as_path())).ok()?;
    migrd_init::partuuid::read_numbered(&mut dev)
        .ok()?
        .into_iter()
        .find(|(n, _)| *n == number)
        .map(|(_, id)| id)
}

fn read_u32(dir: &Path, rel: &str) -> Option<u32> {
    rootfs::read_trimmed(dir, rel)?.parse().ok()
}

/// Every whole disk with its identities.
pub fn scan_disks(root: &Path) -> Vec<DiskInfo> {
    let sys = SysRoot {
        sys: rootfs::join(root, Path::new("sys")),
        dev: rootfs::join(root, Path::new("dev")),
    };
    let by_id_links = links(root, "dev/disk/by-id");
    target::scan(&sys)
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let q = sys.sys.join("block").join(&d.name);
            let mut by_id: Vec<String> = by_id_links
                .iter()
                .filter(|(_, t)| *t == d.name)
                .map(|(l, _)| l.clone())
                .collect();
            if by_id.is_empty() {
                by_id = target::by_id_names(&d);
            }
            let mut partuuids = d.partuuids.clone();
            if partuuids.is_empty() {
                // No readable /dev node (not root, or a fixture): udev's links.
                partuuids = partuuid_links(root)
                    .into_iter()
                    .filter(|(t, _)| t.starts_with(&d.name) && *t != d.name)
                    .map(|(_, id)| id)
                    .collect();
            }
            DiskInfo {
                logical_sector_size: read_u32(&q, "queue/logical_block_size").unwrap_or(512),
                physical_sector_size: read_u32(&q, "queue/physical_block_size").unwrap_or(512),
                removable: read_u32(&q, "removable") == Some(1),
                drivers: super::drivers::disk_chain(root, &d.name),
                name: d.name,
                size_bytes: d.size_bytes,
                serial: d.serial,
                wwid: d.wwid,
                model: d.model,
                by_id,
                partuuids,
            }
        })
        .collect()
}

/// Probe disks: what holds `/`, `/boot`, the Pi firmware partition and the ESP.
pub fn probe(root: &Path, mounts: &[Mount]) -> DiskFacts {
    let mut f = DiskFacts {
        disks: scan_disks(root),
        ..DiskFacts::default()
    };
    f.root = mounted_on(root, mounts, "/");
    if f.root.is_none() {
        f.problems.push(
            "could not resolve the device holding / from /proc/self/mountinfo and /sys/dev/block"
                .into(),
        );
    }
    f.boot = mounted_on(root, mounts, "/boot");
    f.boot_firmware = if mounts::mounted_at(mounts, "/boot/firmware").is_some() {
        mounted_on(root, mounts, "/boot/firmware")
    } else {
        None
    };
    f.efi =
        mounts::mounted_at(mounts, "/boot/efi").and_then(|_| mounted_on(root, mounts, "/boot/efi"));
    f
}

#[cfg(test)]
mod table_tests {
    use super::partuuid_from_table;

    /// Without udev's links the PARTUUID comes from the disk's MBR: the
    /// disk signature and the partition's number from sysfs.
    #[test]
    fn partuuid_without_udev_links_is_read_from_the_table() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("sys/class/block/mmcblk0p2")).unwrap();
        std::fs::write(r.join("sys/class/block/mmcblk0p2/partition"), "2\n").unwrap();
        std::fs::create_dir_all(r.join("dev")).unwrap();
        let mut mbr = vec![0u8; 4096 * 512];
        mbr[440..444].copy_from_slice(&0x0a64_d15c_u32.to_le_bytes());
        for (i, (ty, start, len)) in [(0x0cu8, 2048u32, 1024u32), (0x83, 4096, 2048)]
            .into_iter()
            .enumerate()
        {
            let e = 446 + 16 * i;
            mbr[e + 4] = ty;
            mbr[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            mbr[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        std::fs::write(r.join("dev/mmcblk0"), &mbr).unwrap();
        assert_eq!(
            partuuid_from_table(r, "mmcblk0p2", "mmcblk0").as_deref(),
            Some("0a64d15c-02")
        );
        assert_eq!(partuuid_from_table(r, "mmcblk0p3", "mmcblk0"), None);
    }
}
