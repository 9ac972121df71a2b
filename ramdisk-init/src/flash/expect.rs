//! What the caller knows of the decoded image before writing it (stage 1
//! decoded the whole image and recorded its size and SHA-256 in the plan):
//! the size bounds the write as [`Options::expected_size`], so an image
//! that decodes longer or shorter fails as [`FlashError::WrongSize`]; the
//! hash is compared after the write with the one the engine computes of
//! what it wrote anyway ([`Report::sha256`]), so the check costs nothing.

use super::engine::{Options, Report};
use super::error::FlashError;
use crate::plan::DecodedImage;
use std::path::Path;

/// The decoded size and SHA-256 the written stream must have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Decoded bytes.
    pub size: Option<u64>,
    /// SHA-256 of the decoded bytes, lowercase hex.
    pub sha256: Option<String>,
}

impl Expected {
    /// From the plan's record of the decoded image (nothing if absent).
    pub fn from_plan(d: Option<&DecodedImage>) -> Self {
        Expected {
            size: d.map(|d| d.size),
            sha256: d.map(|d| d.sha256.to_ascii_lowercase()),
        }
    }

    /// `opts` with the expected size set (kept if already set).
    pub fn options(&self, opts: Options) -> Options {
        Options {
            expected_size: opts.expected_size.or(self.size),
            ..opts
        }
    }

    /// Compare what was written with what was expected.
    pub fn check(&self, image: &Path, r: &Report) -> Result<(), FlashError> {
        match &self.sha256 {
            Some(want) if *want != r.sha256 => Err(FlashError::DigestMismatch {
                path: image.to_path_buf(),
                expected: want.clone(),
                expected_bytes: self.size.unwrap_or(r.bytes),
                found: r.sha256.clone(),
                found_bytes: r.bytes,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::write_image;
    use super::super::fixtures::{gz, sample};
    use super::super::memdev::MemDevice;
    use super::*;

    fn expected_of(data: &[u8]) -> Expected {
        Expected::from_plan(Some(&DecodedImage {
            size: data.len() as u64,
            sha256: crate::payload::sha256_hex(data).unwrap_or_default(),
        }))
    }

    /// The right size and hash pass; a hash that differs fails naming both.
    #[test]
    fn the_written_hash_is_compared() {
        let d = tempfile::tempdir().unwrap();
        let data = sample(3 << 20);
        let img = d.path().join("i.gz");
        std::fs::write(&img, gz(&data)).unwrap();
        let exp = expected_of(&data);
        let mut dev = MemDevice::new(8 << 20, 0);
        let opts = exp.options(Options::default());
        assert_eq!(opts.expected_size, Some(data.len() as u64));
        let r = write_image(&img, &mut dev, &opts, &mut |_| {}).unwrap();
        exp.check(&img, &r).unwrap();
        let mut other = data.clone();
        other[5] ^= 1;
        let e = expected_of(&other).check(&img, &r).unwrap_err();
        assert!(matches!(e, FlashError::DigestMismatch { .. }));
        assert!(!e.retryable());
        assert!(e.to_string().contains(&r.sha256), "{e}");
        assert_eq!(Expected::from_plan(None).check(&img, &r).ok(), Some(()));
    }

    /// An image that decodes to another size than the plan says fails as
    /// WrongSize (the engine's own check, fed by the plan).
    #[test]
    fn a_wrong_decoded_size_fails_the_flash() {
        let d = tempfile::tempdir().unwrap();
        let data = sample(3 << 20);
        let img = d.path().join("i.gz");
        std::fs::write(&img, gz(&data)).unwrap();
        let mut exp = expected_of(&data);
        exp.size = Some(data.len() as u64 + 4096);
        let mut dev = MemDevice::new(8 << 20, 0);
        let e = write_image(
            &img,
            &mut dev,
            &exp.options(Options::default()),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, FlashError::WrongSize { .. }), "{e}");
    }
}
