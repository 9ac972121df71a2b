//! Everything that can go wrong while writing an image, each with a message
//! that names the input or the target and says what to do.

use std::io;
use std::path::PathBuf;

/// Why writing an image failed. Every variant that happens before the first
/// MiB is written leaves the target's partition table as it was.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// The image file could not be opened or read at all.
    #[error("cannot read image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The image starts like a format this engine does not decode.
    #[error("image {path} is {what} (by its magic at byte 0), which migrd cannot write; decompress it first (to raw .img, or recompress as .gz, .zst or .xz)")]
    Unsupported {
        /// The image.
        path: PathBuf,
        /// What it looks like.
        what: String,
    },
    /// A zip archive without exactly one image in it.
    #[error("zip archive {path} {problem}; extract the image and pass it instead")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The input is not a disk image that can be written as it is (empty,
    /// no partition table, shorter than its own table); nothing was
    /// written.
    #[error("image {path}: {reason}")]
    Refused {
        /// The image.
        path: PathBuf,
        /// What is wrong with it, with the byte offset, and what to do.
        reason: String,
    },
    /// The compressed stream ended before it was complete.
    #[error("image {path} is truncated: the {format} stream ends early after {input_offset} input bytes ({output} bytes decoded); download it again")]
    Truncated {
        /// The image.
        path: PathBuf,
        /// Its format.
        format: &'static str,
        /// Compressed bytes consumed.
        input_offset: u64,
        /// Decoded bytes produced.
        output: u64,
    },
    /// The compressed stream is damaged (bad data, bad checksum).
    #[error("image {path} is corrupt near input byte {input_offset} ({output} bytes decoded): {format}: {detail}; download it again")]
    Corrupt {
        /// The image.
        path: PathBuf,
        /// Its format.
        format: &'static str,
        /// Compressed bytes consumed when it was noticed.
        input_offset: u64,
        /// Decoded bytes produced.
        output: u64,
        /// What the decoder said.
        detail: String,
    },
    /// Bytes after the end of the compressed stream that are not another
    /// member/frame/stream.
    #[error("image {path} has trailing garbage after its {format} stream at input byte {input_offset}; the file is damaged or two files were glued together: download it again")]
    TrailingGarbage {
        /// The image.
        path: PathBuf,
        /// Its format.
        format: &'static str,
        /// Where the garbage starts in the input.
        input_offset: u64,
    },
    /// The image does not fit on the target; nothing was written.
    #[error("image {path} needs {needed} bytes ({reason}) but target {target} holds only {capacity} bytes; use a larger target")]
    TooLarge {
        /// The image.
        path: PathBuf,
        /// The target.
        target: String,
        /// Bytes the image needs (at least).
        needed: u64,
        /// Bytes the target holds.
        capacity: u64,
        /// How `needed` was learnt.
        reason: String,
    },
    /// The image decoded to another size than the caller said it must have.
    #[error("image {path} decodes to {found} bytes, expected {expected}; wrong or damaged file: download it again")]
    WrongSize {
        /// The image.
        path: PathBuf,
        /// Size expected.
        expected: u64,
        /// Size found.
        found: u64,
    },
    /// What was written (and read back) hashes to another SHA-256 than the
    /// decoded image stage 1 validated: the payload changed after the check.
    #[error("image {path} was written as {found_bytes} decoded bytes with sha256 {found}, but stage 1 validated {expected_bytes} bytes with sha256 {expected}: the image changed after it was checked (damaged payload); build the ramdisk again")]
    DigestMismatch {
        /// The image.
        path: PathBuf,
        /// Decoded SHA-256 stage 1 recorded.
        expected: String,
        /// Decoded size stage 1 recorded.
        expected_bytes: u64,
        /// SHA-256 of what was written.
        found: String,
        /// Bytes written.
        found_bytes: u64,
    },
    /// The target took fewer bytes than it was given.
    #[error("short write to {target} at byte {offset}: {written} of {wanted} bytes written ({detail}); the target is full, failing or was removed")]
    ShortWrite {
        /// The target.
        target: String,
        /// Where the write started.
        offset: u64,
        /// Bytes written.
        written: usize,
        /// Bytes asked.
        wanted: usize,
        /// What the system said.
        detail: String,
    },
    /// Reading back the target found other bytes than were written.
    #[error("read-back of {target} differs from image {path} at byte {offset}: the target is failing (or something else wrote to it); try another card/disk")]
    Mismatch {
        /// The image.
        path: PathBuf,
        /// The target.
        target: String,
        /// First differing byte.
        offset: u64,
    },
    /// The kernel kept the old partition table.
    #[error("the kernel keeps the old partition table of {target} after {attempts} attempts ({detail}): a partition of it is still mounted or open; unmount them and run `blockdev --rereadpt {target}`, or reboot")]
    Reread {
        /// The target.
        target: String,
        /// Attempts made.
        attempts: u32,
        /// Last error.
        detail: String,
    },
    /// Any other I/O error on the target.
    #[error("{action} {target} failed: {source}")]
    Target {
        /// What was being done.
        action: &'static str,
        /// The target.
        target: String,
        /// The error.
        source: io::Error,
    },
}

impl FlashError {
    /// Whether trying the same write again can end otherwise. Errors of the
    /// image itself (format, damage, size, hash) are deterministic: the
    /// same bytes fail the same way, so a retry only wears the disk and
    /// hides the cause. Errors of the target or of reading may pass.
    pub fn retryable(&self) -> bool {
        match self {
            FlashError::Unsupported { .. }
            | FlashError::Refused { .. }
            | FlashError::Zip { .. }
            | FlashError::Truncated { .. }
            | FlashError::Corrupt { .. }
            | FlashError::TrailingGarbage { .. }
            | FlashError::TooLarge { .. }
            | FlashError::WrongSize { .. }
            | FlashError::DigestMismatch { .. } => false,
            FlashError::Open { .. }
            | FlashError::ShortWrite { .. }
            | FlashError::Mismatch { .. }
            | FlashError::Reread { .. }
            | FlashError::Target { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_errors_are_not_retryable_target_errors_are() {
        let corrupt = FlashError::Corrupt {
            path: "i.gz".into(),
            format: "gzip",
            input_offset: 5,
            output: 0,
            detail: "bad".into(),
        };
        assert!(!corrupt.retryable());
        let wrong = FlashError::WrongSize {
            path: "i".into(),
            expected: 1,
            found: 2,
        };
        assert!(!wrong.retryable());
        let target = FlashError::Target {
            action: "writing to",
            target: "/dev/sdz".into(),
            source: io::Error::other("EIO"),
        };
        assert!(target.retryable());
    }

    #[test]
    fn messages_name_the_input_and_what_to_do() {
        let e = FlashError::TrailingGarbage {
            path: "/x/img.gz".into(),
            format: "gzip",
            input_offset: 42,
        };
        let m = e.to_string();
        assert!(m.contains("/x/img.gz") && m.contains("42") && m.contains("download it again"));
        let e = FlashError::Mismatch {
            path: "img".into(),
            target: "/dev/sdz".into(),
            offset: 1_048_577,
        };
        assert!(e.to_string().contains("at byte 1048577"));
    }

    #[test]
    fn decode_faults_are_the_inputs_and_io_faults_the_targets() {
        let corrupt = FlashError::Corrupt {
            path: "img.gz".into(),
            format: "gzip",
            input_offset: 9,
            output: 0,
            detail: "invalid distance".into(),
        };
        assert!(!corrupt.retryable());
        let truncated = FlashError::Truncated {
            path: "img.gz".into(),
            format: "gzip",
            input_offset: 9,
            output: 0,
        };
        assert!(!truncated.retryable());
        let io = FlashError::Target {
            action: "writing",
            target: "/dev/sdz".into(),
            source: io::Error::other("EIO"),
        };
        assert!(io.retryable());
        let mismatch = FlashError::Mismatch {
            path: "img".into(),
            target: "/dev/sdz".into(),
            offset: 0,
        };
        assert!(mismatch.retryable());
    }
}
