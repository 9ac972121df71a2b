//! A disk's partitions as UEFI Hard Drive nodes name them: number, first
//! LBA, size in LBAs, GPT GUID or MBR signature, and whether the GPT type
//! is the EFI System Partition. Parsing is done by `gptman` and `mbrman`.

use super::guid::Guid;
use super::load_option::{HardDrive, PartSignature};
use std::io::{Read, Seek};

/// The GPT partition type of an EFI System Partition.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// One partition of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePart {
    /// The partition as a Hard Drive node.
    pub hd: HardDrive,
    /// GPT type is the ESP's (MBR type 0xEF counts too).
    pub esp_type: bool,
}

/// Every used partition of the disk `dev`; empty for a disk with no table.
pub fn read<D: Read + Seek>(dev: &mut D) -> std::io::Result<Vec<TablePart>> {
    if let Ok(gpt) = gptman::GPT::find_from(dev) {
        let esp: Guid = ESP_TYPE
            .parse()
            .map_err(|e| std::io::Error::other(format!("{e}")))?;
        return Ok(gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(i, p)| TablePart {
                hd: HardDrive {
                    partition: i,
                    start: p.starting_lba,
                    size: p.size().unwrap_or(0),
                    signature: PartSignature::Gpt(Guid(p.unique_partition_guid)),
                },
                esp_type: p.partition_type_guid == esp.0,
            })
            .collect());
    }
    dev.rewind()?;
    match mbrman::MBR::read_from(dev, 512) {
        Ok(mbr) => {
            let sig = u32::from_le_bytes(mbr.header.disk_signature);
            Ok(mbr
                .iter()
                .filter(|(_, p)| p.is_used())
                .map(|(i, p)| TablePart {
                    hd: HardDrive {
                        partition: i as u32,
                        start: u64::from(p.starting_lba),
                        size: u64::from(p.sectors),
                        signature: PartSignature::Mbr(sig),
                    },
                    esp_type: p.sys == 0xef,
                })
                .collect())
        }
        Err(_) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sfdisk(script: &str) -> std::fs::File {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(64 << 20).unwrap();
        let mut c = Command::new("sfdisk")
            .arg("-q")
            .arg(f.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (util-linux fdisk package) is needed for this test");
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
        f.reopen().unwrap()
    }

    #[test]
    fn gpt_partitions_with_the_esp_type() {
        let mut f = sfdisk(
            "label: gpt\nstart=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=5A1B2C3D-4E5F-4061-8273-8495A6B7C8D9\nsize=8M\n",
        );
        let t = read(&mut f).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t[0].esp_type && !t[1].esp_type);
        assert_eq!(t[0].hd.partition, 1);
        assert_eq!((t[0].hd.start, t[0].hd.size), (2048, 16384));
        assert_eq!(t[0].hd.partuuid(), "5a1b2c3d-4e5f-4061-8273-8495a6b7c8d9");
        assert_eq!(t[1].hd.partition, 2);
    }

    #[test]
    fn mbr_partitions_with_signature_and_logical_numbers() {
        let mut f = sfdisk(
            "label: dos\nlabel-id: 0x1234abcd\nstart=2048, size=8M, type=c\nsize=8M\ntype=5\nsize=8M\n",
        );
        let t = read(&mut f).unwrap();
        let p1 = t.iter().find(|p| p.hd.partition == 1).unwrap();
        assert_eq!(p1.hd.signature, PartSignature::Mbr(0x1234abcd));
        assert_eq!((p1.hd.start, p1.hd.size), (2048, 16384));
        assert!(t.iter().any(|p| p.hd.partuuid() == "1234abcd-05"), "{t:?}");
        assert!(!p1.esp_type);
    }

    #[test]
    fn blank_disk_has_none() {
        let mut c = std::io::Cursor::new(vec![0u8; 1 << 20]);
        assert!(read(&mut c).unwrap().is_empty());
    }
}
