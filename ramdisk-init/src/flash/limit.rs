//! A `Read` adapter that refuses to produce more than a set number of bytes:
//! the target's capacity. The byte that would not fit is never handed on,
//! so the chunk holding it is never written.

use std::fmt;
use std::io::{self, Read};

#[derive(Debug)]
struct OverLimit {
    limit: u64,
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream longer than {} bytes", self.limit)
    }
}

impl std::error::Error for OverLimit {}

/// The limit, if `e` is the error [`Limit`] returns past it.
pub fn over_limit(e: &io::Error) -> Option<u64> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<OverLimit>())
        .map(|o| o.limit)
}

/// Passes at most `limit` bytes of `inner`; an error if there are more.
pub struct Limit<R> {
    inner: R,
    limit: u64,
    pos: u64,
}

impl<R: Read> Limit<R> {
    /// Wrap `inner`; `None` means no limit.
    pub fn new(inner: R, limit: Option<u64>) -> Self {
        Limit {
            inner,
            limit: limit.unwrap_or(u64::MAX),
            pos: 0,
        }
    }
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the limit, to learn whether there is one.
        let room = self.limit - self.pos;
        let want = buf
            .len()
            .min(usize::try_from(room.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                OverLimit { limit: self.limit },
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_up_to_the_limit() {
        let mut out = Vec::new();
        Limit::new(&[1u8; 100][..], Some(100))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 100);
        let mut out = Vec::new();
        Limit::new(&[1u8; 100][..], None)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 100);
    }

    #[test]
    fn one_byte_more_is_an_error_and_is_not_handed_on() {
        let mut l = Limit::new(&[1u8; 101][..], Some(100));
        let mut buf = [0u8; 64];
        assert_eq!(l.read(&mut buf).unwrap(), 64);
        let mut buf = [0u8; 64];
        let e = l.read(&mut buf).unwrap_err();
        assert_eq!(over_limit(&e), Some(100));
        assert_eq!(over_limit(&io::Error::other("x")), None);
    }
}
