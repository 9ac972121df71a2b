//! Payload files: what they are (compression by magic bytes) and their
//! size and SHA-256, which the plan records and stage 2 checks.

use anyhow::{Context, Result};
use migrd_init::flash::format::{self, Format, Sniffed};
use migrd_init::payload::sha256_hex;
use migrd_init::plan::Compression;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Recognise a file's compression from its first bytes, with the flash
/// engine's sniffer (one definition of the magics for both stages).
/// Formats the engine does not decode count as uncompressed here; the image
/// checks reject them by content.
pub fn sniff(head: &[u8]) -> Compression {
    match format::sniff(head) {
        Sniffed::Known(Format::Gzip) => Compression::Gzip,
        Sniffed::Known(Format::Zstd) => Compression::Zstd,
        Sniffed::Known(Format::Xz) => Compression::Xz,
        Sniffed::Known(Format::Zip) => Compression::Zip,
        Sniffed::Known(Format::Raw) | Sniffed::Unsupported(_) => Compression::None,
    }
}

/// Facts about one payload source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Compression by magic.
    pub compression: Compression,
}

/// Size, hash and compression of a file, read once.
pub fn facts(path: &Path) -> Result<FileFacts> {
    let open = || File::open(path).with_context(|| format!("opening {}", path.display()));
    let mut head = [0u8; 8];
    let mut f = open()?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    let size = f.metadata()?.len();
    let sha256 = sha256_hex(open()?).with_context(|| format!("hashing {}", path.display()))?;
    Ok(FileFacts {
        size,
        sha256,
        compression: sniff(&head[..n]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_every_format() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(sniff(b"\xfd7zXZ\0\0"), Compression::Xz);
        assert_eq!(sniff(b"PK\x03\x04"), Compression::Zip);
        assert_eq!(sniff(&[0u8; 8]), Compression::None);
        assert_eq!(sniff(&[]), Compression::None);
    }

    #[test]
    fn facts_match_the_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let f = facts(&p).unwrap();
        assert_eq!(f.size, 3);
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(facts(&d.path().join("nope"))
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }
}
