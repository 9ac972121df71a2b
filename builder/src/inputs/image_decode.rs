//! Reading a whole image once, through the flash engine's own decoders
//! (`migrd_init::flash::source`), so stage 1 refuses exactly what stage 2
//! would fail on. In the same single read of the file:
//! - the decoded bytes are hashed with the engine's [`StreamDigest`] (the
//!   SHA-256 stage 2 computes of what it writes, so it can compare for
//!   free);
//! - the file's own bytes are hashed for the plan's payload entry, when the
//!   decoder read the file once from start to end (not a zip, whose
//!   directory is read first: see [`InputHash`]);
//! - a progress bar runs on a terminal.
//!
//! A decoding error is kept with the input and output offsets it happened
//! at, and named with the engine's [`decode_error`].

use indicatif::{ProgressBar, ProgressStyle};
use migrd_init::flash::digest::StreamDigest;
use migrd_init::flash::source::decode_error;
use migrd_init::flash::FlashError;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::io::{self, IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// SHA-256 of a file's bytes, as long as they are read in order from the
/// start without seeking back or ahead.
pub struct InputHash {
    sha: Sha256,
    pos: u64,
    in_order: bool,
}

impl InputHash {
    /// Nothing read yet.
    pub fn new() -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(InputHash {
            sha: Sha256::new(),
            pos: 0,
            in_order: true,
        }))
    }

    /// The hash, if exactly `len` bytes were read in order.
    pub fn finish(self, len: u64) -> Option<String> {
        (self.in_order && self.pos == len).then(|| hex::encode(self.sha.finalize()))
    }

    /// [`InputHash::finish`] once the reader holding `shared` is gone.
    pub fn finish_shared(shared: Rc<RefCell<Self>>, len: u64) -> Option<String> {
        Rc::try_unwrap(shared).ok()?.into_inner().finish(len)
    }
}

/// A file reader feeding an [`InputHash`].
pub struct Hashing<R> {
    inner: R,
    state: Rc<RefCell<InputHash>>,
}

impl<R> Hashing<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, state: Rc<RefCell<InputHash>>) -> Self {
        Hashing { inner, state }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        if s.in_order {
            s.sha.update(&buf[..n]);
        }
        s.pos += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Hashing<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(to)?;
        let mut s = self.state.borrow_mut();
        if at != s.pos {
            s.in_order = false;
        }
        s.pos = at;
        Ok(at)
    }
}

/// A progress bar over the input file on a terminal (hidden otherwise).
pub fn bar(path: &Path, len: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(s) = ProgressStyle::with_template(
        "{prefix} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        pb.set_style(s.progress_chars("=> "));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    pb.set_prefix(format!("checking {}", name.unwrap_or_default()));
    pb
}

/// The first decoding error, where it happened.
pub struct Failure {
    error: io::Error,
    input_offset: u64,
    output: u64,
}

impl Failure {
    /// As the flash engine names it (truncated, corrupt, trailing garbage).
    pub fn named(self, path: &Path, format: migrd_init::flash::Format) -> FlashError {
        decode_error(path, format, self.error, self.input_offset, self.output)
    }
}

/// The decoded stream, hashed and counted; the first error is kept (the
/// reader above sees a plain error) so it can be named precisely.
pub struct Tee<'a> {
    inner: &'a mut dyn Read,
    digest: StreamDigest,
    pos: u64,
    consumed: Arc<AtomicU64>,
    bar: ProgressBar,
    failure: Option<Failure>,
}

impl<'a> Tee<'a> {
    /// Over `inner`, with `consumed` counting the input bytes read.
    pub fn new(inner: &'a mut dyn Read, consumed: Arc<AtomicU64>, bar: ProgressBar) -> Self {
        Tee {
            inner,
            digest: StreamDigest::sha_only(),
            pos: 0,
            consumed,
            bar,
            failure: None,
        }
    }

    /// Read what is left (up to an error).
    pub fn drain(&mut self) {
        let _ = io::copy(self, &mut io::sink());
    }

    /// Decoded size and SHA-256, or the decoding error.
    pub fn finish(self) -> Result<(u64, String), Failure> {
        self.bar.finish_and_clear();
        if let Some(f) = self.failure {
            return Err(f);
        }
        Ok((self.pos, self.digest.finish().0))
    }
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("the image failed to decode"));
        }
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.digest.update(&buf[..n]);
                    self.pos += n as u64;
                    self.bar.set_position(self.consumed.load(Ordering::Relaxed));
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let msg = error.to_string();
                    self.failure = Some(Failure {
                        error,
                        input_offset: self.consumed.load(Ordering::Relaxed),
                        output: self.pos,
                    });
                    return Err(io::Error::other(msg));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_input_hash_holds_only_for_one_ordered_read() {
        let data = b"hello world".to_vec();
        let st = InputHash::new();
        let mut r = Hashing::new(Cursor::new(data.clone()), st.clone());
        io::copy(&mut r, &mut io::sink()).unwrap();
        drop(r);
        assert_eq!(
            InputHash::finish_shared(st, 11).as_deref(),
            Some(migrd_init::payload::sha256_hex(&data[..]).unwrap().as_str())
        );
        let st = InputHash::new();
        let mut r = Hashing::new(Cursor::new(data), st.clone());
        r.seek(SeekFrom::End(-2)).unwrap();
        io::copy(&mut r, &mut io::sink()).unwrap();
        drop(r);
        assert_eq!(InputHash::finish_shared(st, 11), None);
    }

    #[test]
    fn the_tee_counts_hashes_and_keeps_the_first_error() {
        let mut src: &[u8] = b"abc";
        let n = Arc::new(AtomicU64::new(0));
        let mut t = Tee::new(&mut src, n.clone(), ProgressBar::hidden());
        t.drain();
        let (len, sha) = t.finish().ok().unwrap();
        assert_eq!(len, 3);
        assert_eq!(sha, migrd_init::payload::sha256_hex(&b"abc"[..]).unwrap());
        struct Bad;
        impl Read for Bad {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"))
            }
        }
        let mut bad = Bad;
        n.store(77, Ordering::Relaxed);
        let mut t = Tee::new(&mut bad, n, ProgressBar::hidden());
        t.drain();
        let e = t
            .finish()
            .err()
            .unwrap()
            .named(Path::new("x.gz"), migrd_init::flash::Format::Gzip);
        assert!(
            matches!(
                e,
                FlashError::Truncated {
                    input_offset: 77,
                    ..
                }
            ),
            "{e}"
        );
    }
}
