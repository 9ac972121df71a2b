//! U-Boot script images (`boot.scr`): the legacy 64-byte image header
//! followed by the script, what `mkimage -T script -C none` writes and
//! U-Boot's `source` command runs.
//!
//! Written here rather than calling mkimage so stage 1 needs no
//! u-boot-tools on the device; the tests compare it byte for byte with
//! mkimage's output.

/// `IH_MAGIC`.
const MAGIC: u32 = 0x2705_1956;
/// `IH_OS_LINUX`.
const OS_LINUX: u8 = 5;
/// `IH_TYPE_SCRIPT`.
const TYPE_SCRIPT: u8 = 6;
/// `IH_COMP_NONE`.
const COMP_NONE: u8 = 0;
const HEADER_LEN: usize = 64;
const NAME_LEN: usize = 32;

/// The CPU architecture recorded in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageArch {
    /// 32-bit ARM (`IH_ARCH_ARM`).
    Arm,
    /// 64-bit ARM (`IH_ARCH_ARM64`).
    Arm64,
}

impl ImageArch {
    fn code(self) -> u8 {
        match self {
            ImageArch::Arm => 2,
            ImageArch::Arm64 => 22,
        }
    }
}

/// A script image of `script`, named `name` (at most 31 bytes kept),
/// with the header time `time` (seconds since 1970; mkimage honours
/// `SOURCE_DATE_EPOCH` the same way).
pub fn script_image(script: &str, arch: ImageArch, name: &str, time: u32) -> Vec<u8> {
    // A script image is a multi-file image of one file: a table of
    // big-endian sizes ended by a zero, then the file.
    let mut data = Vec::with_capacity(script.len() + 8);
    data.extend_from_slice(
        &u32::try_from(script.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(script.as_bytes());

    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    h[8..12].copy_from_slice(&time.to_be_bytes());
    h[12..16].copy_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    // load and entry addresses (16..24) stay 0 for a script.
    h[24..28].copy_from_slice(&crc32fast::hash(&data).to_be_bytes());
    h[28] = OS_LINUX;
    h[29] = arch.code();
    h[30] = TYPE_SCRIPT;
    h[31] = COMP_NONE;
    let n = name.as_bytes();
    let n = &n[..n.len().min(NAME_LEN - 1)];
    h[32..32 + n.len()].copy_from_slice(n);
    let hcrc = crc32fast::hash(&h);
    h[4..8].copy_from_slice(&hcrc.to_be_bytes());

    let mut out = h.to_vec();
    out.extend_from_slice(&data);
    out
}

/// The script inside a script image, if `bytes` is one with valid CRCs.
pub fn script_of(bytes: &[u8]) -> Option<String> {
    if bytes.len() < HEADER_LEN + 8 {
        return None;
    }
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if be(0) != MAGIC || bytes[30] != TYPE_SCRIPT {
        return None;
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&bytes[..HEADER_LEN]);
    h[4..8].fill(0);
    let size = usize::try_from(be(12)).ok()?;
    let data = bytes.get(HEADER_LEN..HEADER_LEN + size)?;
    if crc32fast::hash(&h) != be(4) || crc32fast::hash(data) != be(24) {
        return None;
    }
    let first = usize::try_from(be(HEADER_LEN)).ok()?;
    let body = data.get(8..8 + first)?;
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_round_trip() {
        let img = script_image("echo hi\n", ImageArch::Arm64, "migrd", 0);
        assert_eq!(&img[0..4], &[0x27, 0x05, 0x19, 0x56]);
        assert_eq!(img[29], 22);
        assert_eq!(img[30], 6);
        assert_eq!(&img[32..37], b"migrd");
        assert_eq!(img.len(), 64 + 8 + 8);
        assert_eq!(script_of(&img).as_deref(), Some("echo hi\n"));
        let arm = script_image("x", ImageArch::Arm, "", 0);
        assert_eq!(arm[29], 2);
    }

    #[test]
    fn damaged_image_is_not_a_script() {
        let mut img = script_image("echo hi\n", ImageArch::Arm64, "migrd", 0);
        let last = img.len() - 1;
        img[last] ^= 1;
        assert_eq!(script_of(&img), None);
        assert_eq!(script_of(b"echo hi"), None);
    }
}
