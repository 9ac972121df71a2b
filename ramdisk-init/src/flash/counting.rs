//! A `Read` adapter that counts the bytes passing through it into a shared
//! counter, so another thread can report input progress and errors can say
//! where in the input they happened.

use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts bytes read (or consumed, for `BufRead`) from `inner`.
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    /// Wrap `inner`, adding the bytes read to `count`.
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        Counting { inner, count }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.count.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.consume(amt);
    }
}

/// Seeking moves without counting (zip reads its directory first).
impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reads_and_consumes() {
        let n = Arc::new(AtomicU64::new(0));
        let mut r = Counting::new(&b"hello world"[..], n.clone());
        let mut b = [0u8; 5];
        r.read_exact(&mut b).unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 5);
        r.fill_buf().unwrap();
        r.consume(3);
        assert_eq!(n.load(Ordering::Relaxed), 8);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 11);
    }
}
