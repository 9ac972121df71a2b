//! Is this file a balenaOS image, for which device type and architecture?
//!
//! The image is read once, forward only, through its decompressor: the
//! partition table (MBR with logical partitions, or GPT), each partition's
//! filesystem label, and the boot partition's files — `device-type.json`
//! (slug and arch), `os-release` (version) and the image flag file
//! (`balena-image` or `balena-image-flasher`). takeover used `-i` images
//! unchecked.

use super::image_reader;
use migrd_init::plan::Compression;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest boot partition read into memory to list its files.
const BOOT_CAP: u64 = 256 << 20;

/// One partition of the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Kernel-style index (MBR logicals from 5).
    pub index: u32,
    /// Offset in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT partition name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Filesystem label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `vfat` or `ext4`, when recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
}

impl Partition {
    /// The label or the GPT name.
    pub fn id(&self) -> Option<&str> {
        self.label.as_deref().or(self.name.as_deref())
    }
}

/// What the image holds.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// The file.
    pub path: PathBuf,
    /// Compression.
    pub compression: Compression,
    /// `mbr` or `gpt`.
    pub table: String,
    /// Partitions, by offset.
    pub partitions: Vec<Partition>,
    /// Bytes the disk must have (end of the last partition).
    pub required_bytes: u64,
    /// A flasher image (installs itself from removable media).
    pub flasher: bool,
    /// Device type slug from `device-type.json`.
    pub device_type: Option<String>,
    /// balena architecture from `device-type.json` (`aarch64`, `armv7hf`, `amd64`, `rpi`).
    pub arch: Option<String>,
    /// balenaOS version from the boot partition's os-release.
    pub os_version: Option<String>,
    /// Files at the boot partition's root.
    pub boot_files: Vec<String>,
    /// Uncompressed size, when the whole image was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
}

impl ImageInfo {
    /// Whether the partitions are balenaOS's (`resin-boot`, `resin-rootA`,
    /// `resin-data`, or the `flash-*` ones of a flasher image).
    pub fn is_balena(&self) -> bool {
        let has = |n: &str| self.partitions.iter().any(|p| p.id() == Some(n));
        (has("resin-boot") && has("resin-rootA") && has("resin-data"))
            || (has("flash-boot") && has("flash-rootA"))
    }
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
#[error("image {path}: {reason}")]
pub struct ImageError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// A forward-only reader that can skip to an offset.
struct Forward {
    inner: Box<dyn Read>,
    pos: u64,
}

impl Forward {
    fn skip_to(&mut self, off: u64) -> std::io::Result<()> {
        if off < self.pos {
            return Err(std::io::Error::other(format!(
                "offset {off} is behind {}",
                self.pos
            )));
        }
        let n = std::io::copy(
            &mut (&mut self.inner).take(off - self.pos),
            &mut std::io::sink(),
        )?;
        self.pos += n;
        if self.pos < off {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("image ends at {} before offset {off}", self.pos),
            ));
        }
        Ok(())
    }

    fn read_at(&mut self, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.skip_to(off)?;
        let mut b = vec![0u8; len];
        self.inner.read_exact(&mut b)?;
        self.pos += len as u64;
        Ok(b)
    }

    fn drain(&mut self) -> std::io::Result<u64> {
        self.pos += std::io::copy(&mut self.inner, &mut std::io::sink())?;
        Ok(self.pos)
    }
}

fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

fn le64(b: &[u8], o: usize) -> u64 {
    le32(b, o) | (le32(b, o + 4) << 32)
}

fn cstr(b: &[u8]) -> Option<String> {
    let s: String = String::from_utf8_lossy(b)
        .trim_matches(|c: char| c == '\0' || c == ' ')
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// Filesystem type and label from a partition's first 4 KiB.
pub fn fs_label(head: &[u8]) -> (Option<String>, Option<String>) {
    if head.len() >= 1024 + 136 && head[1024 + 56] == 0x53 && head[1024 + 57] == 0xef {
        return (Some("ext4".into()), cstr(&head[1024 + 120..1024 + 136]));
    }
    if head.len() >= 512 && head[510] == 0x55 && head[511] == 0xaa {
        if &head[0x52..0x57] == b"FAT32" {
            return (
                Some("vfat".into()),
                cstr(&head[0x47..0x52]).filter(|l| l != "NO NAME"),
            );
        }
        if &head[0x36..0x39] == b"FAT" {
            return (
                Some("vfat".into()),
                cstr(&head[0x2b..0x36]).filter(|l| l != "NO NAME"),
            );
        }
    }
    (None, None)
}

fn gpt_partitions(f: &mut Forward) -> std::io::Result<Vec<Partition>> {
    let hdr = f.read_at(512, 512)?;
    if &hdr[0..8] != b"EFI PART" {
        return Err(std::io::Error::other(
            "protective MBR but no GPT header at LBA 1",
        ));
    }
    let (entries_lba, count, esize) = (le64(&hdr, 72), le32(&hdr, 80), le32(&hdr, 84) as usize);
    if esize < 128 || count > 1024 {
        return Err(std::io::Error::other("implausible GPT header"));
    }
    let table = f.read_at(entries_lba * 512, esize * count as usize)?;
    let mut v = Vec::new();
    for i in 0..count as usize {
        let e = &table[i * esize..(i + 1) * esize];
        if e[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        v.push(Partition {
            index: i as u32 + 1,
            start: first * 512,
            size: (last + 1).saturating_sub(first) * 512,
            name: Some(String::from_utf16_lossy(&name)).filter(|n| !n.is_empty()),
            label: None,
            fstype: None,
        });
    }
    Ok(v)
}

fn mbr_entries(s: &[u8]) -> Vec<(u8, u64, u64)> {
    (0..4)
        .map(|i| {
            let e = &s[446 + 16 * i..446 + 16 * (i + 1)];
            (e[4], le32(e, 8), le32(e, 12))
        })
        .collect()
}

fn is_extended(t: u8) -> bool {
    matches!(t, 0x05 | 0x0f | 0x85)
}

/// Inspect an image. With `read_all`, the whole stream is read (checks the
/// compressed data to its end and gives the uncompressed size).
pub fn inspect(path: &Path, read_all: bool) -> Result<ImageInfo, ImageError> {
    let err = |reason: String| ImageError {
        path: path.into(),
        reason,
    };
    let (compression, r) =
        image_reader::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut f = Forward { inner: r, pos: 0 };
    let s0 = f
        .read_at(0, 512)
        .map_err(|e| err(format!("too short for a disk image: {e}")))?;
    if s0[510] != 0x55 || s0[511] != 0xaa {
        return Err(err(
            "no partition table (no MBR signature): not a disk image".into(),
        ));
    }
    let primaries = mbr_entries(&s0);
    let (table, mut parts) = if primaries[0].0 == 0xee {
        (
            "gpt",
            gpt_partitions(&mut f).map_err(|e| err(format!("reading GPT: {e}")))?,
        )
    } else {
        let mut v = Vec::new();
        for (i, (t, start, sectors)) in primaries.iter().enumerate() {
            if *t != 0 && !is_extended(*t) && *sectors > 0 {
                v.push(Partition {
                    index: i as u32 + 1,
                    start: start * 512,
                    size: sectors * 512,
                    name: None,
                    label: None,
                    fstype: None,
                });
            }
        }
        ("mbr", v)
    };
    // Walk partitions and EBRs in offset order (the stream only goes forward).
    let mut ebrs: Vec<u64> = primaries
        .iter()
        .filter(|(t, _, _)| table == "mbr" && is_extended(*t))
        .map(|(_, s, _)| *s)
        .collect();
    let ext_base = ebrs.first().copied();
    let mut next_logical = 5;
    let mut info = ImageInfo {
        path: path.into(),
        compression,
        table: table.into(),
        partitions: Vec::new(),
        required_bytes: 0,
        flasher: false,
        device_type: None,
        arch: None,
        os_version: None,
        boot_files: Vec::new(),
        uncompressed_size: None,
    };
    let mut done: Vec<Partition> = Vec::new();
    loop {
        parts.sort_by_key(|p| p.start);
        ebrs.sort();
        let next_part = parts.first().map(|p| p.start);
        let next_ebr = ebrs.first().map(|s| s * 512);
        let take_part = match (next_part, next_ebr) {
            (None, None) => break,
            (Some(p), Some(e)) => p < e,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_part {
            {
                let mut part = parts.remove(0);
                let head = match f.read_at(part.start, 4096) {
                    Ok(h) => h,
                    Err(e) => {
                        return Err(err(format!(
                            "partition {} at {} unreadable: {e}",
                            part.index, part.start
                        )))
                    }
                };
                (part.fstype, part.label) = fs_label(&head);
                let bootish = matches!(part.id(), Some("resin-boot" | "flash-boot"));
                if part.fstype.as_deref() == Some("vfat") && bootish {
                    let want = part.size.min(BOOT_CAP);
                    let rest = f
                        .read_at(part.start + 4096, want.saturating_sub(4096) as usize)
                        .map_err(|e| err(format!("boot partition truncated: {e}")))?;
                    let mut buf = head;
                    buf.extend_from_slice(&rest);
                    read_boot(buf, &mut info);
                }
                done.push(part);
            }
        } else {
            {
                let lba = ebrs.remove(0);
                let e = lba * 512;
                let ebr = f
                    .read_at(e, 512)
                    .map_err(|x| err(format!("extended boot record at {e}: {x}")))?;
                if ebr[510] != 0x55 || ebr[511] != 0xaa {
                    continue;
                }
                let es = mbr_entries(&ebr);
                if es[0].0 != 0 && es[0].2 > 0 {
                    parts.push(Partition {
                        index: next_logical,
                        start: (lba + es[0].1) * 512,
                        size: es[0].2 * 512,
                        name: None,
                        label: None,
                        fstype: None,
                    });
                    next_logical += 1;
                }
                if is_extended(es[1].0) {
                    if let Some(base) = ext_base {
                        ebrs.push(base + es[1].1);
                    }
                }
            }
        }
    }
    done.sort_by_key(|p| p.start);
    info.required_bytes = done.iter().map(|p| p.start + p.size).max().unwrap_or(0);
    info.partitions = done;
    if info
        .partitions
        .iter()
        .any(|p| p.id().is_some_and(|n| n.starts_with("flash-")))
    {
        info.flasher = true;
    }
    if read_all {
        info.uncompressed_size = Some(
            f.drain()
                .map_err(|e| err(format!("damaged or truncated at byte {}: {e}", f.pos)))?,
        );
    }
    Ok(info)
}

fn read_boot(buf: Vec<u8>, info: &mut ImageInfo) {
    let Ok(fs) = fatfs::FileSystem::new(std::io::Cursor::new(buf), fatfs::FsOptions::new()) else {
        return;
    };
    let root = fs.root_dir();
    let mut names: Vec<String> = root
        .iter()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    let read = |name: &str| -> Option<String> {
        let mut f = root.open_file(name).ok()?;
        let mut s = String::new();
        f.read_to_string(&mut s).ok()?;
        Some(s)
    };
    if let Some(dt) =
        read("device-type.json").and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        info.device_type = dt["slug"].as_str().map(str::to_string);
        info.arch = dt["arch"].as_str().map(str::to_string);
    }
    if let Some(os) = read("os-release") {
        let o = crate::probe::os_release::parse(&os);
        info.os_version = o.version_id;
    }
    if names
        .iter()
        .any(|n| n == "balena-image-flasher" || n == "resin-image-flasher")
    {
        info.flasher = true;
    }
    info.boot_files = names;
}
