//! EFI GUIDs as UEFI stores them: the first three fields little-endian, the
//! last two as bytes ("mixed-endian"), the same order GPT uses on disk.

use std::fmt;
use std::str::FromStr;

/// A GUID in its on-disk byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::partuuid::guid_string(&self.0))
    }
}

/// A string that is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a GUID (expected 8-4-4-4-12 hex digits, e.g. 8be4df61-93ca-11d2-aa0d-00e098032b8c)")]
pub struct BadGuid(pub String);

impl FromStr for Guid {
    type Err = BadGuid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadGuid(s.to_string());
        let parts: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if parts.len() != 5 || parts.iter().zip(lens).any(|(p, l)| p.len() != l) {
            return Err(bad());
        }
        let hex: String = parts.concat();
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        // Text order → storage order: reverse the first three fields.
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        Ok(Guid(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_to_mixed_endian_bytes_and_prints_back() {
        let g: Guid = "8be4df61-93ca-11d2-aa0d-00e098032b8c".parse().unwrap();
        assert_eq!(
            g.0,
            [
                0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
                0x2b, 0x8c
            ]
        );
        assert_eq!(g.to_string(), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
        let upper: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse().unwrap();
        assert_eq!(upper.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn refuses_malformed_text() {
        for s in [
            "",
            "8be4df61-93ca-11d2-aa0d",
            "8be4df61-93ca-11d2-aa0d-00e098032b8",
            "8be4df6g-93ca-11d2-aa0d-00e098032b8c",
            "8be4df6193ca11d2aa0d00e098032b8c",
        ] {
            let e = s.parse::<Guid>().unwrap_err();
            assert!(e.to_string().contains("not a GUID"), "{s}");
        }
    }
}
