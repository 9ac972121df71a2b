//! The one decoding error the decoders cannot name themselves: bytes after
//! the last member, frame or stream that start no new one. Carried inside an
//! `io::Error` so it survives the `Read` chain, then recognised by
//! [`garbage_offset`].

use std::fmt;
use std::io;

#[derive(Debug)]
struct TrailingGarbage {
    offset: u64,
}

impl fmt::Display for TrailingGarbage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trailing garbage at input byte {}", self.offset)
    }
}

impl std::error::Error for TrailingGarbage {}

/// An `io::Error` saying the input has garbage from `offset` on.
pub fn trailing_garbage(offset: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TrailingGarbage { offset })
}

/// The offset, if `e` is a trailing-garbage error.
pub fn garbage_offset(e: &io::Error) -> Option<u64> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TrailingGarbage>())
        .map(|g| g.offset)
}

/// A decoder error seen with no input left is a truncated input, whatever
/// the decoder called it: turn it into `UnexpectedEof`.
pub fn truncated_if(at_eof: bool, e: io::Error) -> io::Error {
    if at_eof && e.kind() != io::ErrorKind::UnexpectedEof && garbage_offset(&e).is_none() {
        io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string())
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_io_error() {
        let e = trailing_garbage(77);
        assert_eq!(garbage_offset(&e), Some(77));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(garbage_offset(&io::Error::other("x")), None);
        let t = truncated_if(true, io::Error::other("bad block"));
        assert_eq!(t.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            truncated_if(false, io::Error::other("x")).kind(),
            io::ErrorKind::Other
        );
    }
}
