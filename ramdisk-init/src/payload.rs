//! Checking payload files before they are trusted.
//!
//! The kernel unpacks the initramfs into RAM and does not fail the boot when
//! it runs out of memory half-way: it goes on with a partial root. So every
//! payload file is checked for presence, exact size and SHA-256 before use.

use crate::plan::PayloadFile;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Why a payload file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not there at all.
    #[error(
        "payload file {path} is missing (the initramfs was not fully unpacked: too little RAM?)"
    )]
    Missing {
        /// Path checked.
        path: String,
    },
    /// Present but of another size.
    #[error(
        "payload file {path} is {found} bytes, the plan says {expected} (incomplete unpack or corrupt ramdisk)"
    )]
    WrongSize {
        /// Path checked.
        path: String,
        /// Size in the plan.
        expected: u64,
        /// Size found.
        found: u64,
    },
    /// Right size, wrong content.
    #[error("payload file {path} has sha256 {found}, the plan says {expected} (corrupt payload)")]
    WrongHash {
        /// Path checked.
        path: String,
        /// Hash in the plan.
        expected: String,
        /// Hash computed.
        found: String,
    },
    /// Could not be read.
    #[error("payload file {path} cannot be read: {source}")]
    Io {
        /// Path checked.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Check that a payload file exists with the planned size. Cheap; run on all
/// files before hashing any.
pub fn check_present(root: &Path, file: &PayloadFile) -> Result<(), PayloadError> {
    let path = file.path().to_string();
    let full = root.join(path.trim_start_matches('/'));
    let meta = match std::fs::metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PayloadError::Missing { path })
        }
        Err(source) => return Err(PayloadError::Io { path, source }),
    };
    if meta.len() != file.size {
        return Err(PayloadError::WrongSize {
            path,
            expected: file.size,
            found: meta.len(),
        });
    }
    Ok(())
}

/// SHA-256 of everything `r` yields, lowercase hex.
pub fn sha256_hex<R: Read>(mut r: R) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Check a payload file's size and hash.
pub fn verify(root: &Path, file: &PayloadFile) -> Result<(), PayloadError> {
    check_present(root, file)?;
    let path = file.path().to_string();
    let full = root.join(path.trim_start_matches('/'));
    let found = File::open(&full)
        .and_then(sha256_hex)
        .map_err(|source| PayloadError::Io {
            path: path.clone(),
            source,
        })?;
    if !found.eq_ignore_ascii_case(&file.sha256) {
        return Err(PayloadError::WrongHash {
            path,
            expected: file.sha256.clone(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Compression, PayloadRole, Placement};

    fn entry(size: u64, sha: &str) -> PayloadFile {
        PayloadFile {
            role: PayloadRole::Image,
            placement: Placement::Embedded {
                path: "/payload/img".into(),
            },
            size,
            sha256: sha.into(),
            compression: Compression::None,
        }
    }

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn accepts_the_right_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("payload")).unwrap();
        std::fs::write(d.path().join("payload/img"), b"abc").unwrap();
        verify(d.path(), &entry(3, ABC)).unwrap();
    }

    #[test]
    fn reports_missing_short_and_corrupt_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            verify(d.path(), &entry(3, ABC)),
            Err(PayloadError::Missing { .. })
        ));
        std::fs::create_dir(d.path().join("payload")).unwrap();
        std::fs::write(d.path().join("payload/img"), b"ab").unwrap();
        assert!(matches!(
            verify(d.path(), &entry(3, ABC)),
            Err(PayloadError::WrongSize {
                expected: 3,
                found: 2,
                ..
            })
        ));
        std::fs::write(d.path().join("payload/img"), b"abd").unwrap();
        let e = verify(d.path(), &entry(3, ABC)).unwrap_err();
        assert!(matches!(e, PayloadError::WrongHash { .. }));
        assert!(e.to_string().contains("/payload/img"));
    }

    #[test]
    fn hash_of_empty_input_is_the_known_constant() {
        assert_eq!(
            sha256_hex(&b""[..]).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
