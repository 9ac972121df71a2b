//! Walking a multi-segment initramfs the way the kernel does: stored newc
//! archives, compressed streams holding archives, zero padding between
//! them. Used by `migrd inspect` and by tests.

use anyhow::{bail, Context, Result};
use cpio::newc::Reader;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// One entry as listed by `migrd inspect`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EntryInfo {
    /// Path inside the ramdisk (no leading `/`).
    pub name: String,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// Data size in bytes.
    pub size: u64,
}

impl EntryInfo {
    /// `ls -l`-style type and permission string (`drwxr-xr-x`).
    pub fn mode_string(&self) -> String {
        let t = match self.mode & 0o170000 {
            0o040000 => 'd',
            0o120000 => 'l',
            0o020000 => 'c',
            0o060000 => 'b',
            0o010000 => 'p',
            _ => '-',
        };
        let mut s = String::from(t);
        for shift in [6u32, 3, 0] {
            let b = (self.mode >> shift) & 7;
            s.push(if b & 4 != 0 { 'r' } else { '-' });
            s.push(if b & 2 != 0 { 'w' } else { '-' });
            s.push(if b & 1 != 0 { 'x' } else { '-' });
        }
        s
    }
}

/// One segment of the initramfs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SegmentInfo {
    /// Byte offset where the segment starts.
    pub offset: u64,
    /// Length in bytes (compressed length for compressed segments).
    pub length: u64,
    /// `none`, `gzip`, `zstd` or `xz`.
    pub compression: String,
    /// Entries, in archive order (the trailer left out).
    pub entries: Vec<EntryInfo>,
}

/// A buffered reader that counts the bytes consumed from it, so segment
/// boundaries are known after a decompressor stops at its stream's end.
struct Counting<R> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.pos += amt as u64;
    }
}

/// Read the cpio archive at the start of `r` up to and including its
/// trailer; the contents of entries named in `want` are returned.
fn read_archive<R: Read>(
    mut r: R,
    want: &mut dyn FnMut(&str) -> bool,
    found: &mut Vec<(String, Vec<u8>)>,
) -> Result<(R, Vec<EntryInfo>)> {
    let mut entries = Vec::new();
    loop {
        let mut rd = Reader::new(r).context("reading a cpio header")?;
        let e = rd.entry();
        if e.is_trailer() {
            return Ok((rd.finish()?, entries));
        }
        let info = EntryInfo {
            name: e.name().to_string(),
            mode: e.mode(),
            size: u64::from(e.file_size()),
        };
        if want(&info.name) {
            let mut buf = Vec::new();
            rd.read_to_end(&mut buf)?;
            found.push((info.name.clone(), buf));
        }
        entries.push(info);
        r = rd
            .finish()
            .context("reading cpio entry data (truncated archive?)")?;
    }
}

/// Files picked out while walking: (path, contents).
pub type FoundFiles = Vec<(String, Vec<u8>)>;

/// Walk every segment of the initramfs at `path`. Files whose names make
/// `want` true are returned with their contents.
pub fn read_segments(
    path: &Path,
    want: &mut dyn FnMut(&str) -> bool,
) -> Result<(Vec<SegmentInfo>, FoundFiles)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = Counting {
        inner: BufReader::with_capacity(1 << 16, f),
        pos: 0,
    };
    let mut segs = Vec::new();
    let mut found = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let zeros = buf.iter().take_while(|b| **b == 0).count();
        if zeros > 0 {
            r.consume(zeros);
            continue;
        }
        let mut magic = [0u8; 8];
        let n = buf.len().min(8);
        magic[..n].copy_from_slice(&buf[..n]);
        let head = &magic[..n];
        let offset = r.pos;
        let (compression, entries) = if head.starts_with(b"07070") {
            let (_, e) = read_archive(&mut r, want, &mut found)?;
            ("none", e)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            let mut d = flate2::bufread::GzDecoder::new(&mut r);
            let (_, e) = read_archive(&mut d, want, &mut found)?;
            io::copy(&mut d, &mut io::sink())?;
            ("gzip", e)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let mut d = zstd::stream::read::Decoder::with_buffer(&mut r)?.single_frame();
            let (_, e) = read_archive(&mut d, want, &mut found)?;
            io::copy(&mut d, &mut io::sink())?;
            ("zstd", e)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            let mut d = xz2::bufread::XzDecoder::new(&mut r);
            let (_, e) = read_archive(&mut d, want, &mut found)?;
            io::copy(&mut d, &mut io::sink())?;
            ("xz", e)
        } else {
            bail!(
                "{}: unknown data at offset {offset} (first bytes {:02x?}); not a cpio archive or a gzip/zstd/xz stream",
                path.display(),
                &head[..head.len().min(8)]
            );
        };
        segs.push(SegmentInfo {
            offset,
            length: r.pos - offset,
            compression: compression.into(),
            entries,
        });
    }
    if segs.is_empty() {
        bail!("{} is empty: not an initramfs", path.display());
    }
    Ok((segs, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initramfs::{write_initramfs, Node, Segment, SegmentCompression, Source, Tree};

    fn tree(name: &str, content: &[u8]) -> Tree {
        let mut t = Tree::new();
        t.insert(
            name,
            Node::File {
                perm: 0o600,
                source: Source::Bytes(content.to_vec()),
            },
        )
        .unwrap();
        t
    }

    #[test]
    fn walks_every_segment_kind_and_finds_files() {
        let segs = [
            Segment {
                compression: SegmentCompression::Zstd,
                tree: tree("plan.json", b"{}"),
            },
            Segment {
                compression: SegmentCompression::None,
                tree: tree("payload/a", &[1; 10]),
            },
            Segment {
                compression: SegmentCompression::Gzip,
                tree: tree("payload/b", &[2; 3]),
            },
        ];
        let (bytes, placed) = write_initramfs(Vec::new(), &segs).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("initrd");
        // Zero padding between segments is skipped like the kernel does.
        let mut with_pad = bytes.clone();
        with_pad.extend_from_slice(&[0; 8]);
        std::fs::write(&p, &with_pad).unwrap();
        let (info, found) = read_segments(&p, &mut |n| n == "plan.json").unwrap();
        let kinds: Vec<&str> = info.iter().map(|s| s.compression.as_str()).collect();
        assert_eq!(kinds, ["zstd", "none", "gzip"]);
        for (i, s) in info.iter().enumerate() {
            assert_eq!((s.offset, s.length), (placed[i].offset, placed[i].length));
        }
        assert_eq!(info[0].entries[0].name, "plan.json");
        assert_eq!(
            info[1]
                .entries
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["payload", "payload/a"]
        );
        assert_eq!(info[1].entries[1].size, 10);
        assert_eq!(info[1].entries[1].mode_string(), "-rw-------");
        assert_eq!(found, [("plan.json".to_string(), b"{}".to_vec())]);
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let segs = [Segment {
            compression: SegmentCompression::None,
            tree: tree("x", &[1; 100]),
        }];
        let (bytes, _) = write_initramfs(Vec::new(), &segs).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("initrd");
        std::fs::write(&p, &bytes[..bytes.len() - 150]).unwrap();
        assert!(read_segments(&p, &mut |_| false).is_err());
        std::fs::write(&p, b"PK\x03\x04 not an initramfs").unwrap();
        let e = read_segments(&p, &mut |_| false).unwrap_err().to_string();
        assert!(e.contains("offset 0"), "{e}");
        std::fs::write(&p, b"").unwrap();
        assert!(read_segments(&p, &mut |_| false).is_err());
    }
}
