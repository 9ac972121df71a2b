//! Page-aligned buffers, as `O_DIRECT` I/O needs, without `unsafe`: allocate
//! a little more than asked and use the aligned window inside.

/// Alignment: a page, which covers 512- and 4096-byte logical sectors.
pub const ALIGN: usize = 4096;

/// A zero-filled buffer whose start is `ALIGN`-aligned.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` bytes.
    pub fn new(len: usize) -> Self {
        let raw = vec![0u8; len + ALIGN];
        let addr = raw.as_ptr() as usize;
        let start = (ALIGN - addr % ALIGN) % ALIGN;
        AlignedBuf { raw, start, len }
    }

    /// Its size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-sized buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The aligned bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_aligned_and_length_exact() {
        for len in [0, 1, 4096, 1 << 20, 3 << 20] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.len(), len);
            assert_eq!(b.is_empty(), len == 0);
            b.as_mut_slice().fill(1);
            assert!(b.as_slice().iter().all(|&x| x == 1));
        }
    }
}
