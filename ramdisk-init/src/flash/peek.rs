//! A buffered reader that can look ahead a few bytes across its buffer's
//! edge, and knows how many bytes it has handed out. Format sniffing and the
//! "what follows this compressed member?" checks need both.

use std::io::{self, BufRead, Read};

/// Input buffer size: large reads keep syscalls rare.
pub const CAPACITY: usize = 1 << 20;

/// `BufRead` with [`PeekReader::peek`] and [`PeekReader::offset`].
pub struct PeekReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    offset: u64,
}

impl<R: Read> PeekReader<R> {
    /// Buffer `inner` with the default capacity.
    pub fn new(inner: R) -> Self {
        Self::with_capacity(CAPACITY, inner)
    }

    /// Buffer `inner` with `cap` bytes (at least 16).
    pub fn with_capacity(cap: usize, inner: R) -> Self {
        PeekReader {
            inner,
            buf: vec![0; cap.max(16)],
            pos: 0,
            end: 0,
            offset: 0,
        }
    }

    /// Bytes consumed so far: the input offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Up to `n` next bytes without consuming them; fewer only at end of
    /// input. `n` must not exceed the capacity.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.end - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            while self.end < n {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let avail = (self.end - self.pos).min(n);
        Ok(&self.buf[self.pos..self.pos + avail])
    }

    /// True when no byte is left.
    pub fn at_eof(&mut self) -> io::Result<bool> {
        Ok(self.peek(1)?.is_empty())
    }

    /// Skip exactly `n` bytes; `UnexpectedEof` if the input is shorter.
    pub fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let avail = self.fill_buf()?.len();
            if avail == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = avail.min(usize::try_from(n).unwrap_or(usize::MAX));
            self.consume(k);
            n -= k as u64;
        }
        Ok(())
    }
}

impl<R: Read> Read for PeekReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Large reads with nothing buffered go straight through.
        if self.pos == self.end && out.len() >= self.buf.len() {
            let n = self.inner.read(out)?;
            self.offset += n as u64;
            return Ok(n);
        }
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for PeekReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            loop {
                match self.inner.read(&mut self.buf) {
                    Ok(k) => {
                        self.end = k;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.end - self.pos);
        self.pos += amt;
        self.offset += amt as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out one byte per read, the worst case for look-ahead.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || b.is_empty() {
                return Ok(0);
            }
            b[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn peeks_across_the_buffer_edge_without_consuming() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = PeekReader::with_capacity(16, Trickle(&data));
        r.skip(14).unwrap();
        assert_eq!(r.peek(6).unwrap(), &[14, 15, 16, 17, 18, 19]);
        assert_eq!(r.offset(), 14);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[14..]);
        assert_eq!(r.offset(), 100);
        assert!(r.at_eof().unwrap());
    }

    #[test]
    fn peek_is_short_only_at_the_end_and_skip_past_it_fails() {
        let mut r = PeekReader::with_capacity(16, &b"abc"[..]);
        assert_eq!(r.peek(8).unwrap(), b"abc");
        assert_eq!(r.skip(4).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn large_reads_bypass_the_buffer_and_are_counted() {
        let data = [7u8; 100];
        let mut r = PeekReader::with_capacity(16, &data[..]);
        let mut out = vec![0u8; 64];
        assert_eq!(r.read(&mut out).unwrap(), 64);
        assert_eq!(r.offset(), 64);
    }
}
