//! What an image's container says about its decoded size, read from the
//! file's metadata without decoding it: exact for raw files, zip entries and
//! a lower bound for zstd (the first frame's content size) and xz (the
//! last stream's index), and only an estimate for gzip (ISIZE is the size
//! modulo 4 GiB, read from the last four bytes, which a damaged file fills
//! with anything). Exact and lower-bound hints refuse images that cannot
//! fit before a byte is written; estimates only feed progress.

use super::format::Format;
use std::io::{self, Read, Seek, SeekFrom};

/// How far a [`SizeHint`] can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The decoded size.
    Exact,
    /// The decoded size is at least this.
    AtLeast,
    /// Only a guess for progress: gzip's ISIZE is read from the last four
    /// bytes, which in a truncated or padded file are anything.
    Estimate,
}

/// A decoded size learnt from metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeHint {
    /// Bytes.
    pub bytes: u64,
    /// How far to trust it.
    pub trust: Trust,
    /// Where it came from, for messages.
    pub source: &'static str,
}

impl SizeHint {
    /// True if an image that cannot hold `bytes` may be refused on it.
    pub fn is_lower_bound(&self) -> bool {
        self.trust != Trust::Estimate
    }

    /// The size, if exactly known.
    pub fn exact(&self) -> Option<u64> {
        (self.trust == Trust::Exact).then_some(self.bytes)
    }
}

/// The size hint of a gzip, zstd, xz or raw file (zip is handled where the
/// archive is opened). `None` when the metadata says nothing.
pub fn hint<F: Read + Seek>(f: &mut F, format: Format) -> io::Result<Option<SizeHint>> {
    let len = f.seek(SeekFrom::End(0))?;
    let h = match format {
        Format::Raw => Some(SizeHint {
            bytes: len,
            trust: Trust::Exact,
            source: "file size",
        }),
        Format::Gzip if len >= 18 => {
            let t = read_at(f, len - 4, 4)?;
            Some(SizeHint {
                bytes: u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]])),
                trust: Trust::Estimate,
                source: "gzip ISIZE",
            })
        }
        Format::Zstd => zstd_content_size(&read_at(f, 0, 18)?).map(|bytes| SizeHint {
            bytes,
            trust: Trust::AtLeast,
            source: "zstd frame header",
        }),
        Format::Xz => xz_index_size(f, len)?.map(|bytes| SizeHint {
            bytes,
            trust: Trust::AtLeast,
            source: "xz index",
        }),
        _ => None,
    };
    Ok(h)
}

fn read_at<F: Read + Seek>(f: &mut F, at: u64, n: usize) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(at))?;
    let mut b = Vec::with_capacity(n);
    f.take(n as u64).read_to_end(&mut b)?;
    Ok(b)
}

/// Frame_Content_Size of a Zstandard frame header, if it is there.
pub fn zstd_content_size(h: &[u8]) -> Option<u64> {
    let fhd = *h.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    let fcs_len = match fhd >> 6 {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let at = 5 + usize::from(!single_segment) + dict_len;
    let b = h.get(at..at + fcs_len)?;
    let mut v = [0u8; 8];
    v[..fcs_len].copy_from_slice(b);
    let n = u64::from_le_bytes(v);
    Some(if fcs_len == 2 { n + 256 } else { n })
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Uncompressed size of the last xz stream, from its index.
fn xz_index_size<F: Read + Seek>(f: &mut F, len: u64) -> io::Result<Option<u64>> {
    // Skip stream padding.
    let mut end = len;
    while end >= 4 && read_at(f, end - 4, 4)? == [0; 4] {
        end -= 4;
    }
    if end < 32 {
        return Ok(None);
    }
    let footer = read_at(f, end - 12, 12)?;
    if footer[10..12] != *b"YZ" {
        return Ok(None);
    }
    let backward = (u64::from(u32::from_le_bytes([
        footer[4], footer[5], footer[6], footer[7],
    ])) + 1)
        * 4;
    if backward > end - 12 || backward > 16 << 20 {
        return Ok(None);
    }
    let index = read_at(f, end - 12 - backward, backward as usize)?;
    if index.first() != Some(&0) {
        return Ok(None);
    }
    let mut pos = 1;
    let Some(records) = varint(&index, &mut pos) else {
        return Ok(None);
    };
    let mut total = 0u64;
    for _ in 0..records {
        let (Some(_unpadded), Some(size)) = (varint(&index, &mut pos), varint(&index, &mut pos))
        else {
            return Ok(None);
        };
        total = total.saturating_add(size);
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    #[test]
    fn raw_size_is_exact() {
        let h = hint(&mut Cursor::new(vec![0u8; 1234]), Format::Raw)
            .unwrap()
            .unwrap();
        assert_eq!((h.bytes, h.exact()), (1234, Some(1234)));
    }

    #[test]
    fn gzip_isize_is_only_an_estimate() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&vec![1u8; 100_000]).unwrap();
        let z = e.finish().unwrap();
        let h = hint(&mut Cursor::new(z), Format::Gzip).unwrap().unwrap();
        assert_eq!((h.bytes, h.is_lower_bound()), (100_000, false));
    }

    #[test]
    fn zstd_frame_content_size_in_every_width() {
        for n in [0usize, 10, 300, 70_000, 5_000_000] {
            // (encode_all streams without a pledged size: no content size.)
            let z = super::super::fixtures::zst(&vec![3u8; n]);
            let h = hint(&mut Cursor::new(z), Format::Zstd).unwrap().unwrap();
            assert_eq!(h.bytes, n as u64);
        }
        assert_eq!(
            zstd_content_size(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]),
            None
        );
    }

    #[test]
    fn xz_index_gives_the_size_even_with_padding() {
        let mut w =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(0)).unwrap();
        w.write_all(&vec![9u8; 123_457]).unwrap();
        let mut z = w.finish().unwrap();
        z.extend([0; 8]);
        let h = hint(&mut Cursor::new(z), Format::Xz).unwrap().unwrap();
        assert_eq!((h.bytes, h.is_lower_bound()), (123_457, true));
        let junk = hint(&mut Cursor::new(vec![7u8; 100]), Format::Xz).unwrap();
        assert_eq!(junk, None);
    }
}
