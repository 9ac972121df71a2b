//! Recognising an image's container by its first bytes, never by its name.

use serde::Serialize;

/// How an image is packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Uncompressed disk image.
    Raw,
    /// gzip (RFC 1952), one or more members.
    Gzip,
    /// Zstandard, one or more frames.
    Zstd,
    /// xz, one or more streams.
    Xz,
    /// A zip archive holding one image (as the balena dashboard offers).
    Zip,
}

impl Format {
    /// Lowercase name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
            Format::Xz => "xz",
            Format::Zip => "zip",
        }
    }
}

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// A format the engine writes.
    Known(Format),
    /// A recognised format it does not decode (named).
    Unsupported(&'static str),
}

/// Bytes [`sniff`] wants to see (fewer is fine at the end of a short file).
pub const SNIFF_LEN: usize = 8;

/// gzip member magic.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Zstandard frame magic (little-endian 0xFD2FB528).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// xz stream header magic.
pub const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// True for a Zstandard skippable frame (magic 0x184D2A50..=0x184D2A5F).
pub fn is_zstd_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

/// Classify an image by its first bytes. Anything unrecognised is raw.
pub fn sniff(head: &[u8]) -> Sniffed {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(&GZIP_MAGIC) {
        Sniffed::Known(Format::Gzip)
    } else if starts(&ZSTD_MAGIC) || is_zstd_skippable(head) {
        Sniffed::Known(Format::Zstd)
    } else if starts(&XZ_MAGIC) {
        Sniffed::Known(Format::Xz)
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        Sniffed::Known(Format::Zip)
    } else if starts(b"BZh") {
        Sniffed::Unsupported("bzip2-compressed")
    } else if starts(&[0x04, 0x22, 0x4d, 0x18]) {
        Sniffed::Unsupported("lz4-compressed")
    } else if starts(b"LZIP") {
        Sniffed::Unsupported("lzip-compressed")
    } else if starts(&[0x5d, 0x00, 0x00]) {
        Sniffed::Unsupported("lzma-alone-compressed")
    } else if starts(b"7z\xbc\xaf\x27\x1c") {
        Sniffed::Unsupported("a 7-Zip archive")
    } else if starts(b"Rar!") {
        Sniffed::Unsupported("a RAR archive")
    } else {
        Sniffed::Known(Format::Raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_magic() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Sniffed::Known(Format::Gzip));
        assert_eq!(sniff(&ZSTD_MAGIC), Sniffed::Known(Format::Zstd));
        assert_eq!(
            sniff(&[0x5e, 0x2a, 0x4d, 0x18, 0]),
            Sniffed::Known(Format::Zstd)
        );
        assert_eq!(sniff(&XZ_MAGIC), Sniffed::Known(Format::Xz));
        assert_eq!(sniff(b"PK\x03\x04rest"), Sniffed::Known(Format::Zip));
        assert_eq!(sniff(b"BZh91AY"), Sniffed::Unsupported("bzip2-compressed"));
        assert_eq!(sniff(b"LZIP\x01"), Sniffed::Unsupported("lzip-compressed"));
    }

    #[test]
    fn anything_else_is_raw_even_when_short() {
        assert_eq!(sniff(&[]), Sniffed::Known(Format::Raw));
        assert_eq!(sniff(&[0x1f]), Sniffed::Known(Format::Raw));
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(sniff(&mbr), Sniffed::Known(Format::Raw));
    }
}
