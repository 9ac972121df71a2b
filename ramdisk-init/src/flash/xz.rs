//! xz decoding: every stream of a multi-stream file, stream padding
//! allowed, block checks verified, and an error for anything else after the
//! last stream.
//!
//! Two backends, one behaviour, as for zstd:
//! - lzma-rust2 (pure Rust, a port of XZ for Java): always built, the only
//!   one in the static PID-1 binary (no C cross compiler needed);
//! - liblzma through xz2, with the `xz-c` feature (the host `migrd`).
//!
//! Measured on this project's 2-core build machine: on 1 GB of mixed,
//! mostly incompressible data lzma-rust2 ran at 90–97 MB/s, liblzma at
//! 93–95 MB/s, `xz -dc` at 95–105 MB/s; on the benchmark disk image (half
//! empty space) lzma-rust2 took 10.9 s, liblzma 8.5 s, `xz -dc` 8.7 s. The
//! gap is in long runs of zeros. lzma-rust2's multi-threaded reader is twice
//! as fast on multi-block files but holds whole blocks in memory (290 MiB
//! peak measured), far past the 32 MiB budget of a ramdisk: not used.

use super::format::XZ_MAGIC;
use super::garbage::{trailing_garbage, truncated_if};
use super::peek::PeekReader;
use lzma_rust2::XzReader;
use std::io::{self, Read};

/// Which library decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// lzma-rust2, pure Rust.
    Rust,
    /// liblzma (only with the `xz-c` feature).
    #[cfg(feature = "xz-c")]
    C,
}

impl Backend {
    /// The fastest backend this build has.
    pub fn best() -> Self {
        #[cfg(feature = "xz-c")]
        return Backend::C;
        #[cfg(not(feature = "xz-c"))]
        return Backend::Rust;
    }
}

enum Stream<R: Read> {
    Rust(Box<XzReader<PeekReader<R>>>),
    #[cfg(feature = "xz-c")]
    C(Box<Liblzma<R>>),
}

/// One xz stream through liblzma, stopping exactly at its end (xz2's own
/// reader reports "corrupt" when anything follows a stream).
#[cfg(feature = "xz-c")]
struct Liblzma<R: Read> {
    input: PeekReader<R>,
    stream: xz2::stream::Stream,
    ended: bool,
}

#[cfg(feature = "xz-c")]
impl<R: Read> Liblzma<R> {
    fn new(input: PeekReader<R>) -> io::Result<Self> {
        let stream = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Liblzma {
            input,
            stream,
            ended: false,
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::BufRead;
        use xz2::stream::{Action, Status};
        loop {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            let input = self.input.fill_buf()?;
            let eof = input.is_empty();
            let (in0, out0) = (self.stream.total_in(), self.stream.total_out());
            let action = if eof { Action::Finish } else { Action::Run };
            let status = self
                .stream
                .process(input, buf, action)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let consumed = (self.stream.total_in() - in0) as usize;
            let produced = (self.stream.total_out() - out0) as usize;
            self.input.consume(consumed);
            if status == Status::StreamEnd {
                self.ended = true;
            }
            if produced > 0 || self.ended {
                return Ok(produced);
            }
            if eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if consumed == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "xz decoder stalled",
                ));
            }
        }
    }
}

impl<R: Read> Stream<R> {
    fn start(input: PeekReader<R>, backend: Backend) -> io::Result<Self> {
        Ok(match backend {
            Backend::Rust => Stream::Rust(Box::new(XzReader::new(input, false))),
            #[cfg(feature = "xz-c")]
            Backend::C => Stream::C(Box::new(Liblzma::new(input)?)),
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (r, input) = match self {
            Stream::Rust(s) => {
                let r = s.read(buf);
                (r, s.inner_mut())
            }
            #[cfg(feature = "xz-c")]
            Stream::C(s) => {
                let r = s.read(buf);
                (r, &mut s.input)
            }
        };
        r.map_err(|e| truncated_if(input.at_eof().unwrap_or(false), e))
    }

    fn into_inner(self) -> PeekReader<R> {
        match self {
            Stream::Rust(s) => s.into_inner(),
            #[cfg(feature = "xz-c")]
            Stream::C(s) => s.input,
        }
    }
}

/// Decodes all xz streams from a [`PeekReader`].
pub struct Xz<R: Read> {
    stream: Option<Stream<R>>,
    backend: Backend,
}

impl<R: Read> Xz<R> {
    /// Start decoding at the first stream with `backend`.
    pub fn new(input: PeekReader<R>, backend: Backend) -> io::Result<Self> {
        Ok(Xz {
            stream: Some(Stream::start(input, backend)?),
            backend,
        })
    }
}

/// After a stream: skip stream padding (NUL bytes, a multiple of four), then
/// say whether another stream starts.
fn another_stream<R: Read>(input: &mut PeekReader<R>) -> io::Result<bool> {
    let start = input.offset();
    loop {
        let head = input.peek(4)?;
        if head.is_empty() {
            return Ok(false);
        }
        if head.len() == 4 && head == [0; 4] {
            input.skip(4)?;
            continue;
        }
        if input.peek(XZ_MAGIC.len())? == XZ_MAGIC {
            return Ok(true);
        }
        // Padding counts as garbage too when something else follows it.
        return Err(trailing_garbage(start));
    }
}

impl<R: Read> Read for Xz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while !buf.is_empty() {
            let Some(s) = &mut self.stream else {
                return Ok(0);
            };
            let n = s.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let Some(done) = self.stream.take() else {
                return Ok(0);
            };
            let mut input = done.into_inner();
            if another_stream(&mut input)? {
                self.stream = Some(Stream::start(input, self.backend)?);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::xz;
    use super::super::garbage::garbage_offset;
    use super::*;

    fn backends() -> Vec<Backend> {
        #[cfg(feature = "xz-c")]
        return vec![Backend::Rust, Backend::C];
        #[cfg(not(feature = "xz-c"))]
        return vec![Backend::Rust];
    }

    /// Decode with every backend; they must agree, errors included.
    fn decode(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut results = backends().into_iter().map(|b| {
            let mut out = Vec::new();
            Xz::new(PeekReader::new(input), b)?
                .read_to_end(&mut out)
                .map(|_| out)
        });
        let first = results.next().unwrap();
        for other in results {
            match (&first, &other) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => {
                    let eof = |e: &io::Error| e.kind() == io::ErrorKind::UnexpectedEof;
                    assert_eq!(eof(a), eof(b), "{a} / {b}");
                    assert_eq!(garbage_offset(a), garbage_offset(b));
                }
                (a, b) => panic!("backends disagree: {a:?} / {b:?}"),
            }
        }
        first
    }

    fn sample() -> Vec<u8> {
        super::super::fixtures::sample(300_000)
    }

    #[test]
    fn decodes_streams_with_padding_between_and_after() {
        assert_eq!(decode(&xz(&sample())).unwrap(), sample());
        let mut many = xz(b"hello ");
        many.extend([0; 8]);
        many.extend(xz(b"world"));
        many.extend([0; 4]);
        assert_eq!(decode(&many).unwrap(), b"hello world");
    }

    #[test]
    fn truncation_is_an_unexpected_eof() {
        let z = xz(&sample());
        for cut in [z.len() - 1, z.len() - 20, z.len() / 2, 8] {
            let e = decode(&z[..cut]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}: {e}");
        }
    }

    #[test]
    fn corruption_is_an_error() {
        let z = xz(&sample());
        for at in [z.len() / 3, z.len() / 2, z.len() - 30] {
            let mut bad = z.clone();
            bad[at] ^= 0x5a;
            assert!(decode(&bad).is_err(), "at {at}");
        }
    }

    #[test]
    fn trailing_garbage_and_bad_padding_are_reported() {
        let mut z = xz(b"payload");
        let len = z.len() as u64;
        z.extend_from_slice(b"junk");
        assert_eq!(garbage_offset(&decode(&z).unwrap_err()), Some(len));
        let mut z = xz(b"payload");
        z.extend_from_slice(&[0, 0]);
        assert_eq!(garbage_offset(&decode(&z).unwrap_err()), Some(len));
    }
}
