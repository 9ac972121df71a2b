//! EFI_LOAD_OPTION, the content of a `Boot####` variable (UEFI spec 2.10
//! §3.1.3), and the device path nodes migrd reads and writes.
//!
//! Hand-written: the Rust crates for this are UEFI-side (`uefi`, for code
//! running inside firmware) or bind libefivar (C); stage 2 must stay pure
//! Rust and static. Layout:
//!
//! ```text
//! u32  Attributes            (LOAD_OPTION_ACTIVE = 1, ...)
//! u16  FilePathListLength    (bytes of the device path list)
//! u16[] Description          UTF-16LE, NUL-terminated
//! u8[] FilePathList          device path nodes, ending with End (7f ff 04 00)
//! u8[] OptionalData          the rest (the kernel's command line for an EFI stub)
//! ```
//!
//! Every node migrd does not understand is kept as raw bytes, and a typed
//! node is only used when encoding it gives back exactly the bytes it came
//! from, so decode → encode is byte-identical for whatever the firmware or
//! another tool wrote.

use super::guid::Guid;
use std::fmt;

/// `LOAD_OPTION_ACTIVE`: the firmware may boot this entry.
pub const LOAD_OPTION_ACTIVE: u32 = 0x0000_0001;

/// Why bytes are not a load option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its own fields say.
    #[error("EFI load option is truncated: {0}")]
    Truncated(&'static str),
    /// The description is not UTF-16.
    #[error("EFI load option description is not valid UTF-16")]
    BadDescription,
    /// A device path node has an impossible length.
    #[error(
        "EFI device path node at byte {offset} has length {len}, which does not fit the path list"
    )]
    BadNode {
        /// Offset of the node in the path list.
        offset: usize,
        /// Its length field.
        len: usize,
    },
}

/// How a partition is identified in a Hard Drive node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartSignature {
    /// MBR disk signature (signature type 1, partition format 1).
    Mbr(u32),
    /// GPT unique partition GUID (signature type 2, partition format 2).
    Gpt(Guid),
}

/// A Hard Drive media device path node (type 4, subtype 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardDrive {
    /// Partition number (1-based; MBR logical partitions count from 5).
    pub partition: u32,
    /// First LBA of the partition.
    pub start: u64,
    /// Size in LBAs.
    pub size: u64,
    /// Which partition table and which partition.
    pub signature: PartSignature,
}

impl HardDrive {
    /// The partition as the Linux kernel names it in `PARTUUID=`: the GPT
    /// GUID, or the MBR signature and partition number (`1234abcd-01`).
    pub fn partuuid(&self) -> String {
        match self.signature {
            PartSignature::Gpt(g) => g.to_string(),
            PartSignature::Mbr(sig) => format!("{sig:08x}-{:02x}", self.partition),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[4, 1, 42, 0]);
        out.extend_from_slice(&self.partition.to_le_bytes());
        out.extend_from_slice(&self.start.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        let (sig, format, kind) = match self.signature {
            PartSignature::Mbr(s) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&s.to_le_bytes());
                (b, 1u8, 1u8)
            }
            PartSignature::Gpt(g) => (g.0, 2, 2),
        };
        out.extend_from_slice(&sig);
        out.push(format);
        out.push(kind);
    }

    fn decode(body: &[u8]) -> Option<HardDrive> {
        if body.len() != 38 {
            return None;
        }
        let u32_at = |i: usize| Some(u32::from_le_bytes(body.get(i..i + 4)?.try_into().ok()?));
        let u64_at = |i: usize| Some(u64::from_le_bytes(body.get(i..i + 8)?.try_into().ok()?));
        let sig: [u8; 16] = body.get(20..36)?.try_into().ok()?;
        let signature = match (body.get(36)?, body.get(37)?) {
            (1, 1) => PartSignature::Mbr(u32::from_le_bytes(sig[..4].try_into().ok()?)),
            (2, 2) => PartSignature::Gpt(Guid(sig)),
            _ => return None,
        };
        Some(HardDrive {
            partition: u32_at(0)?,
            start: u64_at(4)?,
            size: u64_at(12)?,
            signature,
        })
    }
}

/// One device path node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// Hard Drive media node: a partition.
    HardDrive(HardDrive),
    /// File Path media node (type 4, subtype 4): `\EFI\BOOT\BOOTX64.EFI`.
    File(String),
    /// End of the whole device path (type 0x7f, subtype 0xff).
    End,
    /// Any other node, kept byte for byte.
    Raw {
        /// Node type.
        kind: u8,
        /// Node subtype.
        subtype: u8,
        /// The bytes after the 4-byte header.
        data: Vec<u8>,
    },
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Decode UTF-16LE up to the first NUL (or the end). None when the bytes
/// are not UTF-16.
fn from_utf16(b: &[u8]) -> Option<String> {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

impl Node {
    /// Append the node's bytes.
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Node::HardDrive(h) => h.encode_into(out),
            Node::File(p) => {
                let body = utf16z(p);
                let len = (body.len() + 4) as u16;
                out.extend_from_slice(&[4, 4]);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&body);
            }
            Node::End => out.extend_from_slice(&[0x7f, 0xff, 4, 0]),
            Node::Raw {
                kind,
                subtype,
                data,
            } => {
                out.extend_from_slice(&[*kind, *subtype]);
                out.extend_from_slice(&((data.len() + 4) as u16).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
    }

    /// The typed reading of one node's bytes (header included), if it
    /// encodes back to exactly those bytes; the raw node otherwise.
    fn decode(bytes: &[u8]) -> Node {
        let (kind, subtype, body) = (bytes[0], bytes[1], &bytes[4..]);
        let typed = match (kind, subtype) {
            (4, 1) => HardDrive::decode(body).map(Node::HardDrive),
            (4, 4) if body.len() % 2 == 0 => from_utf16(body).map(Node::File),
            (0x7f, 0xff) => Some(Node::End),
            _ => None,
        };
        if let Some(t) = typed {
            let mut again = Vec::new();
            t.encode_into(&mut again);
            if again == bytes {
                return t;
            }
        }
        Node::Raw {
            kind,
            subtype,
            data: body.to_vec(),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl fmt::Display for Node {
    /// efibootmgr's notation for the nodes it shares with migrd; other nodes
    /// as `Path(type,subtype,hex)`, a few common ones by name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::HardDrive(h) => {
                let (kind, sig) = match h.signature {
                    PartSignature::Gpt(g) => ("GPT", g.to_string()),
                    PartSignature::Mbr(s) => ("MBR", format!("0x{s:x}")),
                };
                write!(
                    f,
                    "HD({},{kind},{sig},0x{:x},0x{:x})",
                    h.partition, h.start, h.size
                )
            }
            Node::File(p) => write!(f, "File({p})"),
            Node::End => Ok(()),
            Node::Raw {
                kind,
                subtype,
                data,
            } => match (kind, subtype, data.as_slice()) {
                (2, 1, [a, b, c, d, u0, u1, u2, u3])
                    if [*a, *b, *c, *d] == [0xd0, 0x41, 3, 0x0a] =>
                {
                    write!(
                        f,
                        "PciRoot(0x{:x})",
                        u32::from_le_bytes([*u0, *u1, *u2, *u3])
                    )
                }
                (1, 1, [func, dev]) => write!(f, "Pci(0x{dev:x},0x{func:x})"),
                (3, 18, [p0, p1, m0, m1, l0, l1]) => write!(
                    f,
                    "Sata({},{},{})",
                    u16::from_le_bytes([*p0, *p1]),
                    u16::from_le_bytes([*m0, *m1]),
                    u16::from_le_bytes([*l0, *l1])
                ),
                (4, 6, g) | (4, 7, g) if g.len() == 16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(g);
                    let name = if *subtype == 6 { "FvFile" } else { "FvVol" };
                    write!(f, "{name}({})", Guid(b))
                }
                _ => write!(f, "Path({kind},{subtype},{})", hex(data)),
            },
        }
    }
}

/// A decoded `Boot####` variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOption {
    /// `LOAD_OPTION_*` attribute bits.
    pub attributes: u32,
    /// The name the firmware's boot menu shows.
    pub description: String,
    /// The device path list, End node included.
    pub path: Vec<Node>,
    /// Bytes after the path list; for an EFI-stub kernel its command line in
    /// UTF-16LE.
    pub optional_data: Vec<u8>,
}

impl LoadOption {
    /// An active entry booting `file` on partition `hd`, with `cmdline` (if
    /// any) as UTF-16LE optional data, NUL-terminated, as the kernel's EFI
    /// stub reads it.
    pub fn new(description: &str, hd: HardDrive, file: &str, cmdline: Option<&str>) -> Self {
        LoadOption {
            attributes: LOAD_OPTION_ACTIVE,
            description: description.to_string(),
            path: vec![Node::HardDrive(hd), Node::File(file.to_string()), Node::End],
            optional_data: cmdline.map(utf16z).unwrap_or_default(),
        }
    }

    /// Parse the bytes of a `Boot####` variable (without efivarfs's
    /// attribute prefix).
    pub fn decode(b: &[u8]) -> Result<LoadOption, DecodeError> {
        let attributes = u32::from_le_bytes(
            b.get(0..4)
                .ok_or(DecodeError::Truncated("no attributes"))?
                .try_into()
                .map_err(|_| DecodeError::Truncated("no attributes"))?,
        );
        let list_len = u16::from_le_bytes(
            b.get(4..6)
                .ok_or(DecodeError::Truncated("no path list length"))?
                .try_into()
                .map_err(|_| DecodeError::Truncated("no path list length"))?,
        ) as usize;
        let mut i = 6;
        let mut units = Vec::new();
        loop {
            let c = b
                .get(i..i + 2)
                .ok_or(DecodeError::Truncated("description has no NUL"))?;
            i += 2;
            let u = u16::from_le_bytes([c[0], c[1]]);
            if u == 0 {
                break;
            }
            units.push(u);
        }
        let description = String::from_utf16(&units).map_err(|_| DecodeError::BadDescription)?;
        let list = b
            .get(i..i + list_len)
            .ok_or(DecodeError::Truncated("path list longer than the variable"))?;
        let mut path = Vec::new();
        let mut off = 0;
        while off < list.len() {
            let len = list
                .get(off + 2..off + 4)
                .map(|l| u16::from_le_bytes([l[0], l[1]]) as usize)
                .unwrap_or(0);
            if len < 4 || off + len > list.len() {
                return Err(DecodeError::BadNode { offset: off, len });
            }
            path.push(Node::decode(&list[off..off + len]));
            off += len;
        }
        Ok(LoadOption {
            attributes,
            description,
            path,
            optional_data: b[i + list_len..].to_vec(),
        })
    }

    /// The variable's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut list = Vec::new();
        for n in &self.path {
            n.encode_into(&mut list);
        }
        let mut out = Vec::with_capacity(6 + list.len() + self.optional_data.len() + 64);
        out.extend_from_slice(&self.attributes.to_le_bytes());
        out.extend_from_slice(&(list.len() as u16).to_le_bytes());
        out.extend_from_slice(&utf16z(&self.description));
        out.extend_from_slice(&list);
        out.extend_from_slice(&self.optional_data);
        out
    }

    /// Whether the firmware may boot it.
    pub fn active(&self) -> bool {
        self.attributes & LOAD_OPTION_ACTIVE != 0
    }

    /// The partition of the first Hard Drive node.
    pub fn hard_drive(&self) -> Option<&HardDrive> {
        self.path.iter().find_map(|n| match n {
            Node::HardDrive(h) => Some(h),
            _ => None,
        })
    }

    /// The file of the first File Path node.
    pub fn file(&self) -> Option<&str> {
        self.path.iter().find_map(|n| match n {
            Node::File(p) => Some(p.as_str()),
            _ => None,
        })
    }

    /// The optional data as text, when it is UTF-16LE of printable ASCII
    /// (a kernel command line), trailing NULs dropped; None for binary data.
    pub fn optional_text(&self) -> Option<String> {
        let d = &self.optional_data;
        if d.is_empty() || d.len() % 2 != 0 {
            return None;
        }
        let mut units: Vec<u16> = d
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        while units.last() == Some(&0) {
            units.pop();
        }
        // Printable ASCII only: a kernel command line is, and binary data
        // (OVMF stores a GUID here) almost never is.
        let text = !units.is_empty() && units.iter().all(|u| (0x20..0x7f).contains(u));
        text.then(|| String::from_utf16_lossy(&units))
    }

    /// The device path in efibootmgr's notation:
    /// `HD(1,GPT,<guid>,0x800,0x10000)/File(\EFI\migrd\vmlinuz.efi)`.
    pub fn path_string(&self) -> String {
        self.path
            .iter()
            .filter(|n| **n != Node::End)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl fmt::Display for LoadOption {
    /// `description<TAB>path[ optional data]`, as `efibootmgr -v` prints an
    /// entry after its `Boot####*` name (the data as text when it is a
    /// command line, else as hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\t{}", self.description, self.path_string())?;
        match self.optional_text() {
            Some(t) => write!(f, " {t}"),
            None if self.optional_data.is_empty() => Ok(()),
            None => write!(f, " {}", hex(&self.optional_data)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

    fn sample() -> LoadOption {
        LoadOption::new(
            "migrd one-shot",
            HardDrive {
                partition: 1,
                start: 0x800,
                size: 0x10000,
                signature: PartSignature::Gpt(GUID.parse().unwrap()),
            },
            r"\EFI\migrd\vmlinuz.efi",
            Some(r"initrd=\EFI\migrd\initrd.img console=ttyS0"),
        )
    }

    #[test]
    fn encodes_the_spec_layout() {
        let b = sample().encode();
        assert_eq!(&b[0..4], &[1, 0, 0, 0]);
        let list_len = u16::from_le_bytes([b[4], b[5]]) as usize;
        let file_bytes = (r"\EFI\migrd\vmlinuz.efi".len() + 1) * 2;
        assert_eq!(list_len, 42 + 4 + file_bytes + 4);
        // "m" of the description in UTF-16LE, then its NUL after 14 chars.
        assert_eq!(&b[6..8], &[b'm', 0]);
        assert_eq!(&b[6 + 28..6 + 30], &[0, 0]);
        let list = &b[6 + 30..6 + 30 + list_len];
        assert_eq!(&list[0..4], &[4, 1, 42, 0]);
        // Partition GUID in mixed-endian order inside the HD node.
        assert_eq!(&list[24..28], &[0xaf, 0x3d, 0xc6, 0x0f]);
        assert_eq!(&list[40..42], &[2, 2]);
        assert_eq!(&list[list_len - 4..], &[0x7f, 0xff, 4, 0]);
        assert_eq!(LoadOption::decode(&b).unwrap(), sample());
    }

    #[test]
    fn prints_like_efibootmgr() {
        let o = sample();
        assert_eq!(
            o.path_string(),
            format!(r"HD(1,GPT,{GUID},0x800,0x10000)/File(\EFI\migrd\vmlinuz.efi)")
        );
        assert_eq!(
            o.optional_text().as_deref(),
            Some(r"initrd=\EFI\migrd\initrd.img console=ttyS0")
        );
        assert_eq!(
            o.to_string(),
            format!(
                r"migrd one-shot	HD(1,GPT,{GUID},0x800,0x10000)/File(\EFI\migrd\vmlinuz.efi) initrd=\EFI\migrd\initrd.img console=ttyS0"
            )
        );
        let mbr = HardDrive {
            partition: 5,
            start: 2048,
            size: 4096,
            signature: PartSignature::Mbr(0x1234abcd),
        };
        assert_eq!(
            Node::HardDrive(mbr).to_string(),
            "HD(5,MBR,0x1234abcd,0x800,0x1000)"
        );
        assert_eq!(mbr.partuuid(), "1234abcd-05");
    }

    #[test]
    fn mbr_node_round_trips() {
        let o = LoadOption::new(
            "old",
            HardDrive {
                partition: 1,
                start: 63,
                size: 1000,
                signature: PartSignature::Mbr(0xdeadbeef),
            },
            r"\EFI\BOOT\BOOTX64.EFI",
            None,
        );
        let b = o.encode();
        assert_eq!(LoadOption::decode(&b).unwrap(), o);
        assert!(o.optional_text().is_none());
    }

    #[test]
    fn unknown_and_odd_nodes_stay_byte_identical() {
        // OVMF's UiApp: Fv(guid)/FvFile(guid); a PCI path; a File node with
        // padding after its NUL; an HD node with signature type 0.
        let mut list = Vec::new();
        list.extend_from_slice(&[4, 7, 20, 0]);
        list.extend_from_slice(&[0x11; 16]);
        list.extend_from_slice(&[4, 6, 20, 0]);
        list.extend_from_slice(&[0x22; 16]);
        list.extend_from_slice(&[2, 1, 12, 0, 0xd0, 0x41, 3, 0x0a, 0, 0, 0, 0]);
        list.extend_from_slice(&[1, 1, 6, 0, 1, 2]);
        list.extend_from_slice(&[4, 4, 10, 0, b'a', 0, 0, 0, 0, 0]);
        list.extend_from_slice(&[4, 1, 42, 0]);
        list.extend_from_slice(&[0u8; 38]);
        list.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        let mut b = vec![9, 0, 0, 0];
        b.extend_from_slice(&(list.len() as u16).to_le_bytes());
        b.extend_from_slice(&[b'U', 0, b'i', 0, 0, 0]);
        b.extend_from_slice(&list);
        b.extend_from_slice(b"\x01\x00\x00\xd8binary");
        let o = LoadOption::decode(&b).unwrap();
        assert_eq!(o.encode(), b);
        assert_eq!(o.path.len(), 7);
        assert!(matches!(
            o.path[4],
            Node::Raw {
                kind: 4,
                subtype: 4,
                ..
            }
        ));
        assert!(matches!(
            o.path[5],
            Node::Raw {
                kind: 4,
                subtype: 1,
                ..
            }
        ));
        assert_eq!(o.path[6], Node::End);
        assert!(o.optional_text().is_none());
        assert!(o
            .path_string()
            .starts_with("FvVol(11111111-1111-1111-1111-111111111111)/FvFile("));
        assert!(o
            .path_string()
            .contains("/PciRoot(0x0)/Pci(0x2,0x1)/Path(4,4,"));
        assert_eq!(o.attributes, 9);
        assert!(o.active());
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Boot#### values OVMF (edk2-stable202302, Debian's ovmf package) wrote
    /// on its first boot of a q35 machine with a virtio disk, read back with
    /// `virt-fw-vars --output-json` (tests/tests/efi_vars.rs does the same
    /// live).
    const OVMF_WRITTEN: [(&str, &str, &str); 3] = [
        (
            "090100002c0055006900410070007000000004071400c9bdb87cebf8344faaea3ee4af6516a10406140021aa2c4614760345836e8ab6f46623317fff0400",
            "UiApp",
            "FvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)",
        ),
        (
            "01000000200055004500460049002000510045004d00550020004400560044002d0052004f004d00200051004d00300030003000300035002000000002010c00d041030a0000000001010600021f03120a000200ffff00007fff04004eac0881119f594d850ee21a522c59b2",
            "UEFI QEMU DVD-ROM QM00005 ",
            "PciRoot(0x0)/Pci(0x1f,0x2)/Sata(2,65535,0)",
        ),
        (
            "010000001600550045004600490020004d006900730063002000440065007600690063006500000002010c00d041030a000000000101060000027fff04004eac0881119f594d850ee21a522c59b2",
            "UEFI Misc Device",
            "PciRoot(0x0)/Pci(0x2,0x0)",
        ),
    ];

    #[test]
    fn ovmf_written_entries_round_trip_and_print_like_efibootmgr() {
        for (hexdata, desc, path) in OVMF_WRITTEN {
            let b = unhex(hexdata);
            let o = LoadOption::decode(&b).unwrap();
            assert_eq!(o.encode(), b, "{desc}");
            assert_eq!(o.description, desc);
            assert_eq!(o.path_string(), path);
            assert_eq!(o.path.last(), Some(&Node::End));
            assert!(o.hard_drive().is_none() && o.file().is_none());
        }
        // UiApp is hidden (0x8) and a category-app (0x100) entry, still active.
        let ui = LoadOption::decode(&unhex(OVMF_WRITTEN[0].0)).unwrap();
        assert_eq!(ui.attributes, 0x109);
        // The DVD entry's optional data is a binary GUID, not a command line.
        let dvd = LoadOption::decode(&unhex(OVMF_WRITTEN[1].0)).unwrap();
        assert_eq!(dvd.optional_data.len(), 16);
        assert!(dvd.optional_text().is_none());
        assert!(dvd
            .to_string()
            .ends_with("Sata(2,65535,0) 4eac0881119f594d850ee21a522c59b2"));
    }

    #[test]
    fn refuses_truncated_and_broken_options() {
        let b = sample().encode();
        for cut in [0, 3, 5, 10, 40, 80] {
            assert!(LoadOption::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = b.clone();
        let d = 6 + 30; // first node
        bad[d + 2] = 2; // HD node length 2: impossible
        bad[d + 3] = 0;
        assert_eq!(
            LoadOption::decode(&bad).unwrap_err(),
            DecodeError::BadNode { offset: 0, len: 2 }
        );
        let mut surrogate = b;
        surrogate[6] = 0x00;
        surrogate[7] = 0xd8; // lone high surrogate
        assert_eq!(
            LoadOption::decode(&surrogate).unwrap_err(),
            DecodeError::BadDescription
        );
    }
}
