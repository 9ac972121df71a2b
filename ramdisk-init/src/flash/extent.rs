//! How far into the disk an image reaches, read from the partition table in
//! its first MiB: the end of the last partition (MBR) or the backup GPT
//! header. A lower bound of the image size that every format has, learnt
//! before anything is written, because the first MiB is held back anyway.

fn u32_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .map(|s| u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
        .unwrap_or(0)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Bytes the partition table in `head` says the image covers, and which
/// table said so; `None` when there is no table.
pub fn image_extent(head: &[u8]) -> Option<(u64, &'static str)> {
    if head.get(510..512) != Some(&[0x55, 0xaa]) {
        return None;
    }
    let mut end = 0u64;
    let mut protective = false;
    for i in 0..4 {
        let e = 446 + 16 * i;
        let kind = head[e + 4];
        if kind == 0 {
            continue;
        }
        protective |= kind == 0xee;
        if kind != 0xee {
            end = end.max(u32_at(head, e + 8) + u32_at(head, e + 12));
        }
    }
    if protective {
        for ss in [512usize, 4096] {
            if head.get(ss..ss + 8) == Some(b"EFI PART") {
                let h = &head[ss..];
                let mut last = u64_at(h, 32).max(u64_at(h, 48));
                let (table, count, size) = (u64_at(h, 72), u32_at(h, 80), u32_at(h, 84));
                for i in 0..count.min(1024) {
                    let at = (table as usize)
                        .saturating_mul(ss)
                        .saturating_add((i * size) as usize);
                    let start = u64_at(head, at + 32);
                    if start != 0 {
                        last = last.max(u64_at(head, at + 40));
                    }
                }
                return Some(((last + 1).saturating_mul(ss as u64), "GPT"));
            }
        }
    }
    (end > 0).then_some((end * 512, "MBR partition table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_extent_is_the_end_of_the_last_partition() {
        let mut h = vec![0u8; 1 << 20];
        h[510] = 0x55;
        h[511] = 0xaa;
        // p1: start 2048, 8192 sectors; p2: start 10240, 20480 sectors.
        for (i, (start, len)) in [(2048u32, 8192u32), (10240, 20480)].iter().enumerate() {
            let e = 446 + 16 * i;
            h[e + 4] = 0x83;
            h[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            h[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        assert_eq!(image_extent(&h), Some((30720 * 512, "MBR partition table")));
    }

    #[test]
    fn gpt_extent_is_the_backup_header() {
        let mut h = vec![0u8; 1 << 20];
        h[510] = 0x55;
        h[511] = 0xaa;
        h[446 + 4] = 0xee;
        h[446 + 8] = 1;
        h[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        h[512..520].copy_from_slice(b"EFI PART");
        h[512 + 32..512 + 40].copy_from_slice(&99_999u64.to_le_bytes());
        h[512 + 48..512 + 56].copy_from_slice(&99_966u64.to_le_bytes());
        h[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        h[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        h[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        assert_eq!(image_extent(&h), Some((100_000 * 512, "GPT")));
    }

    #[test]
    fn no_table_no_extent() {
        assert_eq!(image_extent(&[0u8; 512]), None);
        assert_eq!(image_extent(b"short"), None);
    }
}
