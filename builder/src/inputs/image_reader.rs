//! Open a balenaOS image for reading whatever its compression: gzip, zstd,
//! xz, zip (as downloaded from the dashboard: one deflated or stored `.img`
//! member, read by its local header so no seeking is needed) or raw.
//!
//! Kept small and behind [`open`] so it can later be switched to the flash
//! engine's shared adapters.

use migrd_init::plan::Compression;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

pub use crate::payload::sniff;

fn le16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

/// Position a zip stream at the first member's data and wrap it.
fn zip_member<R: Read + 'static>(mut r: R) -> std::io::Result<Box<dyn Read>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("zip: {m}"));
    let mut h = [0u8; 30];
    r.read_exact(&mut h)?;
    if &h[0..4] != b"PK\x03\x04" {
        return Err(bad("no local file header"));
    }
    let method = le16(&h, 8);
    let mut size = le32(&h, 18);
    let (name_len, extra_len) = (le16(&h, 26) as usize, le16(&h, 28) as usize);
    let mut name_extra = vec![0u8; name_len + extra_len];
    r.read_exact(&mut name_extra)?;
    if size == 0xffff_ffff {
        // ZIP64: the sizes are in extra field 0x0001.
        let extra = &name_extra[name_len..];
        let mut i = 0;
        while i + 4 <= extra.len() {
            let (id, len) = (le16(extra, i), le16(extra, i + 2) as usize);
            if id == 1 && i + 4 + 16 <= extra.len() {
                size = le32(extra, i + 12) | (le32(extra, i + 16) << 32);
            }
            i += 4 + len;
        }
    }
    match method {
        8 => Ok(Box::new(flate2::read::DeflateDecoder::new(r))),
        0 => Ok(Box::new(r.take(size))),
        m => Err(bad(&format!(
            "compression method {m} is not supported (only deflate and stored)"
        ))),
    }
}

/// Open `path` decompressed. Returns the compression found and the reader.
pub fn open(path: &Path) -> std::io::Result<(Compression, Box<dyn Read>)> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 8];
    let n = f.read(&mut head)?;
    let c = sniff(&head[..n]);
    let f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let r: Box<dyn Read> = match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(f)?),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(f)),
        Compression::Zip => zip_member(f)?,
        Compression::None => Box::new(f),
    };
    Ok((c, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_format_round_trips() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let d = tempfile::tempdir().unwrap();
        let gz = d.path().join("i.gz");
        let mut e =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        let zst = d.path().join("i.zst");
        std::fs::write(&zst, zstd::encode_all(&data[..], 1).unwrap()).unwrap();
        let xz = d.path().join("i.xz");
        let mut e = xz2::write::XzEncoder::new(File::create(&xz).unwrap(), 1);
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        let raw = d.path().join("i.img");
        std::fs::write(&raw, &data).unwrap();
        let zip = d.path().join("i.zip");
        std::fs::write(&zip, zip_bytes("balena.img", &data)).unwrap();
        for (p, want) in [
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&xz, Compression::Xz),
            (&raw, Compression::None),
            (&zip, Compression::Zip),
        ] {
            let (c, mut r) = open(p).unwrap();
            assert_eq!(c, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert!(out == data, "{p:?}");
        }
    }

    /// A minimal zip with one deflated member and a data descriptor flag,
    /// the way streaming zip writers produce them.
    pub(crate) fn zip_bytes(name: &str, data: &[u8]) -> Vec<u8> {
        let mut comp = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        comp.write_all(data).unwrap();
        let comp = comp.finish().unwrap();
        let mut z = Vec::new();
        z.extend_from_slice(b"PK\x03\x04");
        z.extend_from_slice(&20u16.to_le_bytes());
        z.extend_from_slice(&8u16.to_le_bytes()); // flags: data descriptor
        z.extend_from_slice(&8u16.to_le_bytes()); // deflate
        z.extend_from_slice(&[0; 8]); // time, date, crc
        z.extend_from_slice(&[0; 8]); // sizes unknown
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(&comp);
        z
    }

    #[test]
    fn unknown_zip_method_is_refused() {
        let mut z = zip_bytes("a", b"x");
        z[8] = 14; // LZMA
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.zip");
        std::fs::write(&p, z).unwrap();
        assert!(open(&p).err().unwrap().to_string().contains("method 14"));
    }
}
