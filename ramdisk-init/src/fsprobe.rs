//! What filesystem a partition holds, with its label and UUID, read from
//! its first sectors — stage 2 has no blkid. Knows the two families migrd
//! needs: ext2/3/4 (superblock at 1024) and FAT12/16/32 (boot sector).

use serde::Serialize;
use std::io::{self, Read, Seek, SeekFrom};

/// A recognised filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FsInfo {
    /// `ext4` (also for ext2/ext3: the ext4 driver mounts them) or `vfat`.
    pub fstype: String,
    /// Volume label, trimmed; empty when none.
    pub label: String,
    /// UUID as the kernel and blkid print it (`xxxxxxxx-...` for ext,
    /// `XXXX-XXXX` for FAT).
    pub uuid: String,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

fn ext(sb: &[u8]) -> Option<FsInfo> {
    // Superblock: magic 0xEF53 at 0x38, UUID at 0x68, label at 0x78.
    if sb.len() < 0x88 || sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let u = &sb[0x68..0x78];
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&u[0..4]),
        hex::encode(&u[4..6]),
        hex::encode(&u[6..8]),
        hex::encode(&u[8..10]),
        hex::encode(&u[10..16])
    );
    Some(FsInfo {
        fstype: "ext4".into(),
        label: cstr(&sb[0x78..0x88]),
        uuid,
    })
}

fn fat(bs: &[u8]) -> Option<FsInfo> {
    if bs.len() < 512 || bs[510..512] != [0x55, 0xaa] {
        return None;
    }
    // FAT32 keeps its extended BPB at 0x40, FAT12/16 at 0x24.
    let (id, label, kind) = if &bs[0x52..0x57] == b"FAT32" {
        (0x43, 0x47, 0x52)
    } else if &bs[0x36..0x39] == b"FAT" {
        (0x27, 0x2b, 0x36)
    } else {
        return None;
    };
    let _ = kind;
    let v = u32::from_le_bytes([bs[id], bs[id + 1], bs[id + 2], bs[id + 3]]);
    let mut l = cstr(&bs[label..label + 11]);
    if l == "NO NAME" {
        l.clear();
    }
    Some(FsInfo {
        fstype: "vfat".into(),
        label: l,
        uuid: format!("{:04X}-{:04X}", v >> 16, v & 0xffff),
    })
}

/// Recognise the filesystem on `dev`; `Ok(None)` when it is neither.
pub fn probe<D: Read + Seek>(dev: &mut D) -> io::Result<Option<FsInfo>> {
    let mut head = vec![0u8; 2048];
    dev.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < head.len() {
        match dev.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    if head.len() >= 2048 {
        if let Some(i) = ext(&head[1024..]) {
            return Ok(Some(i));
        }
    }
    Ok(fat(&head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn mkfs(cmd: &[&str], size_mb: u64) -> Option<FsInfo> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fs.img");
        std::fs::File::create(&p)
            .unwrap()
            .set_len(size_mb << 20)
            .unwrap();
        let st = Command::new(cmd[0])
            .args(&cmd[1..])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let blkid = Command::new("blkid")
            .arg("-o")
            .arg("value")
            .arg("-s")
            .arg("UUID")
            .arg(&p)
            .output()
            .unwrap();
        let info = probe(&mut std::fs::File::open(&p).unwrap()).unwrap();
        assert_eq!(
            info.as_ref().map(|i| i.uuid.as_str()),
            Some(String::from_utf8_lossy(&blkid.stdout).trim()),
            "UUID must match blkid's"
        );
        info
    }

    #[test]
    fn reads_ext4_label_and_uuid_as_blkid_does() {
        let i = mkfs(&["mkfs.ext4", "-q", "-F", "-L", "resin-data"], 16).unwrap();
        assert_eq!(
            (i.fstype.as_str(), i.label.as_str()),
            ("ext4", "resin-data")
        );
    }

    #[test]
    fn reads_fat16_and_fat32_labels_and_ids_as_blkid_does() {
        let i = mkfs(&["mkfs.vfat", "-n", "resin-boot"], 40).unwrap();
        assert_eq!(
            (i.fstype.as_str(), i.label.as_str()),
            ("vfat", "resin-boot")
        );
        let i = mkfs(&["mkfs.vfat", "-F", "32", "-n", "ESP"], 64).unwrap();
        assert_eq!(i.label, "ESP");
    }

    #[test]
    fn anything_else_is_none() {
        let mut c = io::Cursor::new(vec![0u8; 4096]);
        assert_eq!(probe(&mut c).unwrap(), None);
        let mut c = io::Cursor::new(vec![1u8; 10]);
        assert_eq!(probe(&mut c).unwrap(), None);
    }
}
