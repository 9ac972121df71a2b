//! PARTUUIDs of the partitions on a disk, read from its partition table the
//! way the kernel names them: the GPT unique partition GUID, or for MBR the
//! disk signature and partition number (`1234abcd-05`, logical partitions
//! included). Parsing is done by the `gptman` and `mbrman` crates.

use std::io::{Read, Seek};

/// Format a GPT GUID as stored on disk (first three fields little-endian).
pub fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

/// The PARTUUIDs of every used partition on the disk `dev`, lowercase.
/// Returns an empty list for a disk with no recognisable table.
pub fn read_partuuids<D: Read + Seek>(dev: &mut D) -> std::io::Result<Vec<String>> {
    Ok(read_numbered(dev)?.into_iter().map(|(_, u)| u).collect())
}

/// Like [`read_partuuids`], with each partition's number (the `N` of
/// `/dev/sdaN`, `/dev/mmcblk0pN`).
pub fn read_numbered<D: Read + Seek>(dev: &mut D) -> std::io::Result<Vec<(u32, String)>> {
    if let Ok(gpt) = gptman::GPT::find_from(dev) {
        return Ok(gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(i, p)| (i, guid_string(&p.unique_partition_guid)))
            .collect());
    }
    dev.rewind()?;
    match mbrman::MBR::read_from(dev, 512) {
        Ok(mbr) => {
            let sig = mbr.header.disk_signature;
            let sig = u32::from_le_bytes(sig);
            Ok(mbr
                .iter()
                .filter(|(_, p)| p.is_used())
                .map(|(i, _)| (i as u32, format!("{sig:08x}-{i:02x}")))
                .collect())
        }
        Err(_) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn guid_bytes_are_mixed_endian() {
        let b = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(guid_string(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }

    fn sfdisk(script: &str) -> Option<std::fs::File> {
        let f = tempfile::NamedTempFile::new().ok()?;
        f.as_file().set_len(64 << 20).ok()?;
        let mut c = Command::new("sfdisk")
            .arg("-q")
            .arg(f.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        std::io::Write::write_all(c.stdin.as_mut()?, script.as_bytes()).ok()?;
        c.wait().ok()?.success().then_some(())?;
        f.reopen().ok()
    }

    #[test]
    fn reads_mbr_with_logical_partitions_as_the_kernel_names_them() {
        // balenaOS layout: 3 primaries, an extended, two logicals (p5, p6).
        let Some(mut f) = sfdisk(
            "label: dos\nlabel-id: 0x1234abcd\nsize=8M, type=c\nsize=8M\nsize=8M\ntype=5\nsize=8M\nsize=8M\n",
        ) else {
            panic!("sfdisk (util-linux fdisk package) is needed for this test");
        };
        let ids = read_partuuids(&mut f).unwrap();
        assert!(ids.contains(&"1234abcd-01".to_string()), "{ids:?}");
        assert!(ids.contains(&"1234abcd-05".to_string()), "{ids:?}");
        assert!(ids.contains(&"1234abcd-06".to_string()), "{ids:?}");
        let numbered = read_numbered(&mut f).unwrap();
        assert!(
            numbered.contains(&(6, "1234abcd-06".to_string())),
            "{numbered:?}"
        );
        assert!(
            numbered.contains(&(1, "1234abcd-01".to_string())),
            "{numbered:?}"
        );
    }

    #[test]
    fn reads_gpt_partition_guids() {
        let Some(mut f) = sfdisk(
            "label: gpt\nsize=8M, uuid=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=resin-boot\n",
        ) else {
            panic!("sfdisk (util-linux fdisk package) is needed for this test");
        };
        let ids = read_partuuids(&mut f).unwrap();
        assert_eq!(ids, ["0fc63daf-8483-4772-8e79-3d69d8477de4"]);
    }

    #[test]
    fn blank_disk_has_none() {
        let mut c = std::io::Cursor::new(vec![0u8; 1 << 20]);
        assert!(read_partuuids(&mut c).unwrap().is_empty());
    }
}
