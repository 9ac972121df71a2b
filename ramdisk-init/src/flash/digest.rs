//! What is remembered of the written stream: its SHA-256 (reported, and
//! comparable with `sha256sum` of the raw image) and a CRC-32 of every
//! 64 KiB block, so the read-back can be checked without keeping or
//! decoding the image again and the first bad block can be found. CRC-32 is
//! computed with carry-less multiply instructions at several GB/s; 64 KiB
//! blocks cost 64 KiB of memory per GiB of image.

use sha2::{Digest, Sha256};

/// Bytes covered by one CRC.
pub const BLOCK: usize = 64 << 10;

/// Running digests of a stream fed in order.
pub struct StreamDigest {
    sha: Sha256,
    crcs: Vec<u32>,
    partial: crc32fast::Hasher,
    partial_len: usize,
    total: u64,
    with_crcs: bool,
}

impl Default for StreamDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDigest {
    /// Nothing seen yet.
    pub fn new() -> Self {
        StreamDigest {
            sha: Sha256::new(),
            crcs: Vec::new(),
            partial: crc32fast::Hasher::new(),
            partial_len: 0,
            total: 0,
            with_crcs: true,
        }
    }

    /// Only the SHA-256 (no read-back will need the CRCs).
    pub fn sha_only() -> Self {
        StreamDigest {
            with_crcs: false,
            ..Self::new()
        }
    }

    /// Feed the next bytes of the stream.
    pub fn update(&mut self, mut data: &[u8]) {
        self.sha.update(data);
        self.total += data.len() as u64;
        while self.with_crcs && !data.is_empty() {
            let take = (BLOCK - self.partial_len).min(data.len());
            self.partial.update(&data[..take]);
            self.partial_len += take;
            data = &data[take..];
            if self.partial_len == BLOCK {
                let h = std::mem::replace(&mut self.partial, crc32fast::Hasher::new());
                self.crcs.push(h.finalize());
                self.partial_len = 0;
            }
        }
    }

    /// Bytes seen.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The SHA-256 (lowercase hex) and the block CRCs (the last block may be
    /// short).
    pub fn finish(mut self) -> (String, BlockCrcs) {
        if self.partial_len > 0 {
            self.crcs.push(self.partial.finalize());
        }
        (
            hex::encode(self.sha.finalize()),
            BlockCrcs {
                crcs: self.crcs,
                total: self.total,
            },
        )
    }
}

/// CRC-32 of each [`BLOCK`] of a stream.
pub struct BlockCrcs {
    crcs: Vec<u32>,
    total: u64,
}

impl BlockCrcs {
    /// Stream length.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Check `data`, which must start at a block boundary `offset` of the
    /// stream and end at a block boundary or the stream's end. Returns the
    /// offset of the first block that differs.
    pub fn first_bad_block(&self, offset: u64, data: &[u8]) -> Option<u64> {
        let first = (offset / BLOCK as u64) as usize;
        for (i, chunk) in data.chunks(BLOCK).enumerate() {
            let ok = self.crcs.get(first + i) == Some(&crc32fast::hash(chunk));
            if !ok {
                return Some(offset + (i * BLOCK) as u64);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_crcs_do_not_depend_on_how_the_stream_is_cut() {
        let data = super::super::fixtures::sample(3 * BLOCK + 100);
        let mut a = StreamDigest::new();
        a.update(&data);
        let mut b = StreamDigest::new();
        for piece in data.chunks(7777) {
            b.update(piece);
        }
        let (sa, ca) = a.finish();
        let (sb, cb) = b.finish();
        assert_eq!(sa, sb);
        assert_eq!(sa, crate::payload::sha256_hex(&data[..]).unwrap());
        assert_eq!(ca.crcs, cb.crcs);
        assert_eq!(ca.crcs.len(), 4);
        assert_eq!(ca.total(), data.len() as u64);
        let mut c = StreamDigest::sha_only();
        c.update(&data);
        let (sc, cc) = c.finish();
        assert_eq!(sc, sa);
        assert!(cc.crcs.is_empty());
    }

    #[test]
    fn finds_the_first_bad_block() {
        let data = super::super::fixtures::sample(4 * BLOCK + 10);
        let mut d = StreamDigest::new();
        d.update(&data);
        let (_, crcs) = d.finish();
        assert_eq!(crcs.first_bad_block(0, &data), None);
        assert_eq!(
            crcs.first_bad_block(2 * BLOCK as u64, &data[2 * BLOCK..]),
            None
        );
        let mut bad = data.clone();
        bad[3 * BLOCK + 5] ^= 1;
        assert_eq!(crcs.first_bad_block(0, &bad), Some(3 * BLOCK as u64));
        let mut short = data.clone();
        short.push(0);
        assert_eq!(crcs.first_bad_block(0, &short), Some(4 * BLOCK as u64));
    }
}
