//! Zstandard decoding: every frame of a multi-frame file, skippable frames
//! skipped, content checksums checked, and an error for anything after the
//! last frame.
//!
//! Two backends, one behaviour:
//! - `ruzstd` (pure Rust): always built; the only one in the static PID-1
//!   binary, because libzstd is C and the musl targets have no C cross
//!   compiler on a clean machine (not even x86_64: cc-rs wants
//!   `x86_64-linux-musl-gcc`).
//! - libzstd through the `zstd` crate, with the `zstd-c` feature (the
//!   `migrd` binary, built for the host, turns it on).
//!
//! Measured on this project's 2-core x86_64 build machine, 1 GB of mixed
//! data at level 3: libzstd 1.2–1.3 GB/s, ruzstd 0.36–0.47 GB/s, `zstd -dc`
//! 1.15 GB/s. ruzstd's rate is still far above what the SD cards and eMMC of
//! the boards stage 2 runs on can write, so stage 2 loses nothing; on a
//! fast NVMe disk it would be the bottleneck, which is why the host tool
//! uses libzstd.

use super::format::{is_zstd_skippable, ZSTD_MAGIC};
use super::garbage::{trailing_garbage, truncated_if};
use super::peek::PeekReader;
use std::io::{self, Read};

/// Which library decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ruzstd, pure Rust.
    Rust,
    /// libzstd (only with the `zstd-c` feature).
    #[cfg(feature = "zstd-c")]
    C,
}

impl Backend {
    /// The fastest backend this build has.
    pub fn best() -> Self {
        #[cfg(feature = "zstd-c")]
        return Backend::C;
        #[cfg(not(feature = "zstd-c"))]
        return Backend::Rust;
    }
}

enum Frame<R: Read> {
    Rust(Box<ruzstd::decoding::StreamingDecoder<PeekReader<R>, ruzstd::decoding::FrameDecoder>>),
    #[cfg(feature = "zstd-c")]
    C(::zstd::stream::read::Decoder<'static, PeekReader<R>>),
}

/// Length of a frame header (magic included) from its descriptor byte.
fn header_len(fhd: u8) -> usize {
    let single_segment = fhd & 0x20 != 0;
    let fcs = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    5 + usize::from(!single_segment) + [0, 1, 2, 4][usize::from(fhd & 3)] + fcs
}

/// Decodes all Zstandard frames from a [`PeekReader`].
pub struct Zstd<R: Read> {
    frame: Option<Frame<R>>,
    backend: Backend,
}

impl<R: Read> Zstd<R> {
    /// Start decoding at the first frame with `backend`.
    pub fn new(input: PeekReader<R>, backend: Backend) -> io::Result<Self> {
        let mut z = Zstd {
            frame: None,
            backend,
        };
        z.frame = z.next_frame(input)?;
        Ok(z)
    }

    /// Skip skippable frames; start the next real frame, or `None` at the
    /// end of input.
    fn next_frame(&self, mut input: PeekReader<R>) -> io::Result<Option<Frame<R>>> {
        loop {
            let head = input.peek(8)?;
            if head.is_empty() {
                return Ok(None);
            }
            if is_zstd_skippable(head) {
                if head.len() < 8 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                input.skip(8 + u64::from(len))?;
                continue;
            }
            if !head.starts_with(&ZSTD_MAGIC) {
                return Err(trailing_garbage(input.offset()));
            }
            // A header cut short is a truncated file, not a corrupt one.
            let need = head.get(4).map_or(5, |&fhd| header_len(fhd));
            if input.peek(need)?.len() < need {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            return match self.backend {
                Backend::Rust => match ruzstd::decoding::StreamingDecoder::new(input) {
                    Ok(d) => Ok(Some(Frame::Rust(Box::new(d)))),
                    Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
                },
                #[cfg(feature = "zstd-c")]
                Backend::C => Ok(Some(Frame::C(
                    ::zstd::stream::read::Decoder::with_buffer(input)?.single_frame(),
                ))),
            };
        }
    }

    /// The current frame ended: check it and move on to the next.
    fn finish_frame(&mut self) -> io::Result<()> {
        let input = match self.frame.take() {
            None => return Ok(()),
            Some(Frame::Rust(d)) => {
                let fd = &d.decoder;
                if let (Some(stored), Some(computed)) =
                    (fd.get_checksum_from_data(), fd.get_calculated_checksum())
                {
                    if stored != computed {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "zstd frame checksum mismatch",
                        ));
                    }
                }
                d.into_inner()
            }
            #[cfg(feature = "zstd-c")]
            Some(Frame::C(d)) => d.finish(),
        };
        self.frame = self.next_frame(input)?;
        Ok(())
    }
}

impl<R: Read> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while !buf.is_empty() {
            let got = match &mut self.frame {
                None => return Ok(0),
                Some(Frame::Rust(d)) => d.read(buf).map_err(|e| {
                    let eof = d.get_mut().at_eof().unwrap_or(false);
                    truncated_if(eof, e)
                }),
                #[cfg(feature = "zstd-c")]
                Some(Frame::C(d)) => d.read(buf).map_err(|e| {
                    let eof = d.get_mut().at_eof().unwrap_or(false);
                    truncated_if(eof, e)
                }),
            }?;
            if got > 0 {
                return Ok(got);
            }
            self.finish_frame()?;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::zst;
    use super::super::garbage::garbage_offset;
    use super::*;

    fn backends() -> Vec<Backend> {
        #[cfg(feature = "zstd-c")]
        return vec![Backend::Rust, Backend::C];
        #[cfg(not(feature = "zstd-c"))]
        return vec![Backend::Rust];
    }

    fn decode(input: &[u8], b: Backend) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Zstd::new(PeekReader::new(input), b)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        super::super::fixtures::sample(300_000)
    }

    #[test]
    fn decodes_frames_and_skips_skippable_ones() {
        let data = sample();
        for b in backends() {
            assert_eq!(decode(&zst(&data), b).unwrap(), data, "{b:?}");
            let mut many = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
            many.extend(zst(b"hello "));
            many.extend([0x5f, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
            many.extend(zst(b"world"));
            assert_eq!(decode(&many, b).unwrap(), b"hello world", "{b:?}");
        }
    }

    #[test]
    fn truncation_is_an_unexpected_eof() {
        let z = zst(&sample());
        for b in backends() {
            for cut in [z.len() - 1, z.len() / 2, 6] {
                let e = decode(&z[..cut], b).unwrap_err();
                assert_eq!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof,
                    "{b:?} cut {cut}: {e}"
                );
            }
        }
    }

    #[test]
    fn corruption_is_an_error() {
        let z = zst(&sample());
        for b in backends() {
            for at in [z.len() / 3, z.len() / 2, z.len() - 2] {
                let mut bad = z.clone();
                bad[at] ^= 0x5a;
                assert!(decode(&bad, b).is_err(), "{b:?} at {at}");
            }
        }
    }

    #[test]
    fn trailing_garbage_is_reported_with_its_offset() {
        for b in backends() {
            let mut z = zst(b"payload");
            let len = z.len() as u64;
            z.extend_from_slice(b"\0\0\0\0garbage");
            assert_eq!(
                garbage_offset(&decode(&z, b).unwrap_err()),
                Some(len),
                "{b:?}"
            );
        }
    }
}
