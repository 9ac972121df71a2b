//! Is this file a whole, undamaged balenaOS image, for which device type
//! and architecture? The one validation `check`, `migrate`, `build`,
//! `download` and `write-image` share.
//!
//! The image is decoded once, to its end, forward only, with the flash
//! engine's own decoders ([`super::image_decode`]): a truncated, corrupt
//! (CRC/checksum) or padded-with-garbage file, or one in a format stage 2
//! cannot write, is refused here, before anything is armed. On the way the
//! partition table (MBR with logical partitions, or GPT), each partition's
//! filesystem label and the boot partition's files — `device-type.json`
//! (slug and arch), `os-release` (version) and the image flag file
//! (`balena-image` or `balena-image-flasher`) — are read; then the table
//! must fit the decoded size and hold balenaOS's partitions. The decoded
//! size and SHA-256 go into the plan for stage 2. takeover used `-i` images
//! unchecked.

use super::file_stamp::FileStamp;
use super::image_decode::{self, Hashing, InputHash, Tee};
use migrd_init::flash::extent::image_extent;
use migrd_init::flash::source::{self, Decoders};
use migrd_init::flash::{FlashError, Format};
use migrd_init::plan::Compression;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// Decoded bytes kept from the start of the image (partition tables).
const HEAD: usize = 1 << 20;

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
    /// Size of the file.
    pub file_size: u64,
    /// SHA-256 of the file's bytes, when they were hashed in the same read
    /// as the decoding (not for zip, whose directory is read first).
    pub file_sha256: Option<String>,
    /// The file's stamp when the check began: a second read (a zip's hash)
    /// first makes sure the file is still the one checked.
    #[serde(skip)]
    pub file_stamp: Option<FileStamp>,
    /// Decoded (raw disk image) size.
    pub decoded_size: u64,
    /// SHA-256 of the decoded bytes (as the flash engine hashes what it
    /// writes).
    pub decoded_sha256: String,
    /// Seconds the whole decode and check took.
    pub check_secs: f64,
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

impl ImageInfo {
    /// Nothing known yet of the image at `path` but how it is compressed
    /// and its table kind.
    pub(crate) fn empty(path: &Path, compression: Compression, table: &str) -> Self {
        ImageInfo {
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
            file_size: 0,
            file_sha256: None,
            file_stamp: None,
            decoded_size: 0,
            decoded_sha256: String::new(),
            check_secs: 0.0,
        }
    }
}

/// Why an image is refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// It cannot be read or decoded to its end (unsupported format,
    /// truncated, corrupt, trailing garbage), as the flash engine says.
    #[error("{0}")]
    Decode(FlashError),
    /// It decodes, but is not a balenaOS disk image that fits itself.
    #[error("image {path}: {reason}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset, and what to do.
        reason: String,
    },
}

/// A forward-only reader that can skip to an offset; the first [`HEAD`]
/// bytes are kept and can be read again.
struct Forward<'a> {
    inner: &'a mut dyn Read,
    pos: u64,
    head: Vec<u8>,
}

impl<'a> Forward<'a> {
    /// Start, reading the head.
    fn new(inner: &'a mut dyn Read) -> std::io::Result<Self> {
        let mut head = Vec::new();
        (&mut *inner).take(HEAD as u64).read_to_end(&mut head)?;
        Ok(Forward {
            inner,
            pos: head.len() as u64,
            head,
        })
    }

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
                format!(
                    "the image ends at decoded byte {}, before byte {off}: the file is cut short; download it again",
                    self.pos
                ),
            ));
        }
        Ok(())
    }

    fn read_at(&mut self, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let end = off.saturating_add(len as u64);
        if end <= self.head.len() as u64 {
            return Ok(self.head[off as usize..end as usize].to_vec());
        }
        let mut b = Vec::with_capacity(len);
        if off < self.head.len() as u64 && self.pos == self.head.len() as u64 {
            b.extend_from_slice(&self.head[off as usize..]);
        } else {
            self.skip_to(off)?;
        }
        let want = (len - b.len()) as u64;
        let got = (&mut *self.inner).take(want).read_to_end(&mut b)? as u64;
        self.pos += got;
        if got < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the image ends at decoded byte {}, before byte {end}: the file is cut short; download it again",
                    self.pos
                ),
            ));
        }
        Ok(b)
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

/// Decode `path` to its end with the flash engine's decoders and refuse it
/// unless it is a whole balenaOS disk image: see the module documentation.
pub fn inspect(path: &Path) -> Result<ImageInfo, ImageError> {
    let started = Instant::now();
    let stamp = FileStamp::of(path).ok();
    let flash_info = source::inspect(path).map_err(ImageError::Decode)?;
    if flash_info.input_len == 0 {
        return Err(layout_error(
            path,
            "is empty (0 bytes at byte 0): not a disk image; download it again".into(),
        ));
    }
    let format = flash_info.inner.as_ref().map_or(flash_info.format, |i| i.0);
    let file = std::fs::File::open(path).map_err(|source| {
        ImageError::Decode(FlashError::Open {
            path: path.into(),
            source,
        })
    })?;
    let hashed = InputHash::new();
    let consumed = Arc::new(AtomicU64::new(0));
    let bar = image_decode::bar(path, flash_info.input_len);
    let input = Hashing::new(file, hashed.clone());
    let (layout, decoded) = source::with_decoded_from(
        path,
        input,
        &flash_info,
        Decoders::best(),
        consumed.clone(),
        |r| {
            let mut tee = Tee::new(r, consumed, bar);
            let layout = Forward::new(&mut tee)
                .map_err(|e| e.to_string())
                .and_then(|mut f| read_layout(path, compression_of(&flash_info), &mut f));
            tee.drain();
            (layout, tee.finish())
        },
    )
    .map_err(ImageError::Decode)?;
    let (size, sha256) = decoded.map_err(|f| ImageError::Decode(f.named(path, format)))?;
    let (mut info, head) = layout.map_err(|reason| layout_error(path, reason))?;
    info.file_size = flash_info.input_len;
    info.file_sha256 = InputHash::finish_shared(hashed, flash_info.input_len);
    info.file_stamp = stamp;
    info.decoded_size = size;
    info.decoded_sha256 = sha256;
    fits(&info, &head).map_err(|reason| layout_error(path, reason))?;
    info.check_secs = started.elapsed().as_secs_f64();
    Ok(info)
}

fn layout_error(path: &Path, reason: String) -> ImageError {
    ImageError::Layout {
        path: path.into(),
        reason,
    }
}

/// The plan's name for the outer container.
fn compression_of(info: &source::ImageInfo) -> Compression {
    match info.format {
        Format::Gzip => Compression::Gzip,
        Format::Zstd => Compression::Zstd,
        Format::Xz => Compression::Xz,
        Format::Zip => Compression::Zip,
        Format::Raw => Compression::None,
    }
}

/// Does the decoded image hold its own partition table, and balenaOS's
/// partitions?
fn fits(info: &ImageInfo, head: &[u8]) -> Result<(), String> {
    let size = info.decoded_size;
    if let Some(problem) = head_problem(head, Some(size)) {
        return Err(problem);
    }
    if let Some(p) = info.partitions.iter().find(|p| p.start + p.size > size) {
        return Err(format!("partition {} ({}) spans bytes {}..{} but the image decodes to only {size} bytes (it ends at decoded byte {size}): the file is cut short; download it again", p.index, p.id().unwrap_or("no label"), p.start, p.start + p.size));
    }
    if !info.is_balena() {
        let found: Vec<&str> = info.partitions.iter().filter_map(|p| p.id()).collect();
        return Err(format!("is not a balenaOS image: the {} partition table at decoded byte 0 has no resin-boot/resin-rootA/resin-data partitions (found {found:?}); use a balenaOS image from the balena dashboard", info.table.to_uppercase()));
    }
    Ok(())
}

/// Why `head` (the first decoded MiB, or the whole image when shorter) is
/// not the start of a disk image whose partition table fits in `size`
/// decoded bytes (when known); `None` when it is. Shared with
/// `write-image`, which checks the head before its first write.
pub fn head_problem(head: &[u8], size: Option<u64>) -> Option<String> {
    if looks_like_html(head) {
        return Some("no partition table: it is an HTML page (decoded byte 0 starts with '<'), not a disk image: a failed or redirected download? download the image again".into());
    }
    if head.len() < 512 {
        let n = head.len();
        return Some(format!("decodes to only {n} bytes (ends at decoded byte {n}): too short for a disk image, whose partition table alone takes 512 bytes; download it again"));
    }
    if head[510] != 0x55 || head[511] != 0xaa {
        return Some(format!(
            "no partition table: no MBR signature at decoded bytes 510-511 (found {:02x} {:02x}, want 55 aa): not a disk image; download it again",
            head[510], head[511]
        ));
    }
    match (size, image_extent(head)) {
        (Some(size), Some((end, table))) if end > size => Some(format!("its {table} reaches byte {end} but the image decodes to only {size} bytes (it ends at decoded byte {size}): the file is cut short; download it again")),
        _ => None,
    }
}

/// A web page where an image was expected (a failed download).
fn looks_like_html(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(1024)]).to_ascii_lowercase();
    let t = text.trim_start();
    t.starts_with('<') && (t.contains("<html") || t.contains("<!doctype"))
}

/// The layout, read forward from the decoded stream: partitions, labels,
/// the boot partition's files. Also returns the head (first MiB).
fn read_layout(
    path: &Path,
    compression: Compression,
    f: &mut Forward,
) -> Result<(ImageInfo, Vec<u8>), String> {
    if let Some(problem) = head_problem(&f.head, None) {
        return Err(problem);
    }
    let (table, mut parts, mut ebrs) = primary_table(f)?;
    let ext_base = ebrs.first().copied();
    let mut next_logical = 5;
    let mut info = ImageInfo::empty(path, compression, table);
    let mut done: Vec<Partition> = Vec::new();
    // Walk partitions and EBRs in offset order (the stream only goes forward).
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
            let part = parts.remove(0);
            done.push(read_partition(f, part, &mut info)?);
            continue;
        }
        let lba = ebrs.remove(0);
        let (logical, next) = read_ebr(f, lba, ext_base, next_logical)?;
        if let Some(p) = logical {
            parts.push(p);
            next_logical += 1;
        }
        ebrs.extend(next);
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
    Ok((info, std::mem::take(&mut f.head)))
}

/// The partition table in the first sector: "gpt" or "mbr", the primary
/// (or GPT) partitions, and the LBAs of the extended partitions' first
/// boot records.
fn primary_table(f: &mut Forward) -> Result<(&'static str, Vec<Partition>, Vec<u64>), String> {
    let primaries = mbr_entries(&f.head[..512]);
    if primaries[0].0 == 0xee {
        let parts = gpt_partitions(f).map_err(|e| format!("reading GPT: {e}"))?;
        return Ok(("gpt", parts, Vec::new()));
    }
    let mut parts = Vec::new();
    let mut ebrs = Vec::new();
    for (i, (t, start, sectors)) in primaries.iter().enumerate() {
        if is_extended(*t) {
            ebrs.push(*start);
        } else if *t != 0 && *sectors > 0 {
            parts.push(Partition {
                index: i as u32 + 1,
                start: start * 512,
                size: sectors * 512,
                name: None,
                label: None,
                fstype: None,
            });
        }
    }
    Ok(("mbr", parts, ebrs))
}

/// Read `part`'s filesystem type and label and, for a FAT boot partition,
/// its files into `info`.
fn read_partition(
    f: &mut Forward,
    mut part: Partition,
    info: &mut ImageInfo,
) -> Result<Partition, String> {
    let head = f
        .read_at(part.start, 4096)
        .map_err(|e| format!("partition {} at {} unreadable: {e}", part.index, part.start))?;
    (part.fstype, part.label) = fs_label(&head);
    let bootish = matches!(part.id(), Some("resin-boot" | "flash-boot"));
    if part.fstype.as_deref() == Some("vfat") && bootish {
        let want = part.size.min(BOOT_CAP);
        let rest = f
            .read_at(part.start + 4096, want.saturating_sub(4096) as usize)
            .map_err(|e| format!("boot partition truncated: {e}"))?;
        let mut buf = head;
        buf.extend_from_slice(&rest);
        read_boot(buf, info);
    }
    Ok(part)
}

/// Read the extended boot record at `lba`: the logical partition it
/// describes (numbered `index`) and the LBA of the next record, if any.
/// A record without its signature ends the chain.
fn read_ebr(
    f: &mut Forward,
    lba: u64,
    ext_base: Option<u64>,
    index: u32,
) -> Result<(Option<Partition>, Option<u64>), String> {
    let at = lba * 512;
    let ebr = f
        .read_at(at, 512)
        .map_err(|x| format!("extended boot record at {at}: {x}"))?;
    if ebr[510] != 0x55 || ebr[511] != 0xaa {
        return Ok((None, None));
    }
    let es = mbr_entries(&ebr);
    let logical = (es[0].0 != 0 && es[0].2 > 0).then(|| Partition {
        index,
        start: (lba + es[0].1) * 512,
        size: es[0].2 * 512,
        name: None,
        label: None,
        fstype: None,
    });
    let next = match (is_extended(es[1].0), ext_base) {
        (true, Some(base)) => Some(base + es[1].1),
        _ => None,
    };
    Ok((logical, next))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(end_sector: u32) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[446 + 4] = 0x83;
        h[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        h[446 + 12..446 + 16].copy_from_slice(&(end_sector - 1).to_le_bytes());
        h[510] = 0x55;
        h[511] = 0xaa;
        h
    }

    /// Each head problem is named with its decoded offset; a table that fits
    /// (or a size not known yet) is no problem.
    #[test]
    fn head_problems_name_the_offset() {
        let p = |h: &[u8], s| head_problem(h, s).unwrap_or_default();
        assert!(p(b"<!DOCTYPE html><html>", None).contains("HTML page"));
        assert!(p(&[0u8; 100], None).contains("decoded byte 100"));
        assert!(p(&[0u8; 4096], None).contains("decoded bytes 510-511 (found 00 00"));
        assert_eq!(head_problem(&mbr(16), Some(8192)), None);
        assert_eq!(head_problem(&mbr(16), None), None);
        assert!(p(&mbr(16), Some(4096)).contains("reaches byte 8192"));
    }
}
