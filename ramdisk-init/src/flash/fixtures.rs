//! Test inputs shared by the flash tests: compressed streams as the usual
//! tools write them, and small disk images.

use std::io::Write;

/// Deterministic, somewhat compressible bytes.
pub fn sample(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(31)) % 253) as u8 ^ (i >> 9) as u8)
        .collect()
}

/// gzip, one member.
pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A Zstandard frame as the `zstd` tool writes it: content size, checksum.
pub fn zst(data: &[u8]) -> Vec<u8> {
    let mut e = ::zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    e.set_pledged_src_size(Some(data.len() as u64)).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An xz stream with a CRC64 check, as `xz` writes it.
pub fn xz(data: &[u8]) -> Vec<u8> {
    let opts = lzma_rust2::XzOptions::with_preset(1);
    let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// A disk image of `len` bytes with an MBR whose one partition ends at the
/// image's end, and sample data everywhere else.
pub fn disk_image(len: usize) -> Vec<u8> {
    let mut img = sample(len);
    img[446..512].fill(0);
    img[446 + 4] = 0x83;
    img[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    let sectors = (len / 512) as u32 - 2048;
    img[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xaa;
    img
}
