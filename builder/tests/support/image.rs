//! Synthetic balenaOS images with the real partition layout (MBR: boot,
//! rootA, rootB, extended with state and data), a FAT boot partition made
//! by the fatfs crate holding device-type.json, os-release and the flag
//! file, and ext4 superblock labels. Small: partitions are a few MiB.

use std::io::{Cursor, Seek, SeekFrom, Write};

const MIB: u64 = 1 << 20;

fn mbr_entry(b: &mut [u8], i: usize, t: u8, start: u64, sectors: u64) {
    let o = 446 + 16 * i;
    b[o + 4] = t;
    b[o + 8..o + 12].copy_from_slice(&(start as u32).to_le_bytes());
    b[o + 12..o + 16].copy_from_slice(&(sectors as u32).to_le_bytes());
}

fn fat(label: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut img = Cursor::new(vec![0u8; (8 * MIB) as usize]);
    let mut lab = [b' '; 11];
    lab[..label.len()].copy_from_slice(label.as_bytes());
    fatfs::format_volume(
        &mut img,
        fatfs::FormatVolumeOptions::new().volume_label(lab),
    )
    .unwrap();
    {
        let fs = fatfs::FileSystem::new(&mut img, fatfs::FsOptions::new()).unwrap();
        for (name, data) in files {
            let mut f = fs.root_dir().create_file(name).unwrap();
            f.write_all(data).unwrap();
        }
    }
    img.into_inner()
}

fn ext4(label: &str, size: u64) -> Vec<u8> {
    let mut b = vec![0u8; size as usize];
    b[1024 + 56] = 0x53;
    b[1024 + 57] = 0xef;
    b[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label.as_bytes());
    b
}

/// Options for a synthetic image.
pub struct Spec<'a> {
    pub slug: &'a str,
    pub arch: &'a str,
    pub version: &'a str,
    pub flasher: bool,
    pub labels_prefix: &'a str,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            slug: "raspberrypi4-64",
            arch: "aarch64",
            version: "6.0.13",
            flasher: false,
            labels_prefix: "resin",
        }
    }
}

/// Raw image bytes.
pub fn raw(s: &Spec) -> Vec<u8> {
    let dt = format!(
        r#"{{"slug":"{}","name":"Test","arch":"{}","state":"released"}}"#,
        s.slug, s.arch
    );
    let osr = format!(
        "ID=\"balena-os\"\nNAME=\"balenaOS\"\nVERSION_ID=\"{}\"\n",
        s.version
    );
    let flag = if s.flasher {
        "balena-image-flasher"
    } else {
        "balena-image"
    };
    let p = s.labels_prefix;
    let boot = fat(
        &format!("{p}-boot"),
        &[
            ("device-type.json", dt.as_bytes()),
            ("os-release", osr.as_bytes()),
            (flag, b""),
            ("config.json", b"{}"),
        ],
    );
    // Layout in MiB: boot 4..12, rootA 12..16, rootB 16..20, extended 20..32 (state 21..24, data 25..32).
    let mut img = vec![0u8; (32 * MIB) as usize];
    let sec = |m: u64| m * MIB / 512;
    let mut mbr = [0u8; 512];
    mbr_entry(&mut mbr, 0, 0x0c, sec(4), sec(8));
    mbr_entry(&mut mbr, 1, 0x83, sec(12), sec(4));
    mbr_entry(&mut mbr, 2, 0x83, sec(16), sec(4));
    mbr_entry(&mut mbr, 3, 0x05, sec(20), sec(12));
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    img[..512].copy_from_slice(&mbr);
    let mut c = Cursor::new(&mut img);
    let put = |c: &mut Cursor<&mut Vec<u8>>, off: u64, data: &[u8]| {
        c.seek(SeekFrom::Start(off)).unwrap();
        c.write_all(data).unwrap();
    };
    put(&mut c, 4 * MIB, &boot);
    put(&mut c, 12 * MIB, &ext4(&format!("{p}-rootA"), 4096));
    put(&mut c, 16 * MIB, &ext4(&format!("{p}-rootB"), 4096));
    // EBR 1 at 20 MiB: state at +1 MiB (3 MiB), next EBR at extended+4 MiB.
    let mut ebr = [0u8; 512];
    mbr_entry(&mut ebr, 0, 0x83, sec(1), sec(3));
    mbr_entry(&mut ebr, 1, 0x05, sec(4), sec(8));
    ebr[510] = 0x55;
    ebr[511] = 0xaa;
    put(&mut c, 20 * MIB, &ebr);
    put(&mut c, 21 * MIB, &ext4(&format!("{p}-state"), 4096));
    let mut ebr2 = [0u8; 512];
    mbr_entry(&mut ebr2, 0, 0x83, sec(1), sec(7));
    ebr2[510] = 0x55;
    ebr2[511] = 0xaa;
    put(&mut c, 24 * MIB, &ebr2);
    put(&mut c, 25 * MIB, &ext4(&format!("{p}-data"), 4096));
    img
}

/// gzip of the raw image.
pub fn gz(s: &Spec) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&raw(s)).unwrap();
    e.finish().unwrap()
}
