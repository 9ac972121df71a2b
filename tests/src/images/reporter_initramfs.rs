//! The synthetic balenaOS's initramfs: `balena-reporter` as `/init`, a
//! console node, and the kernel modules it needs, resolved and packed with
//! the migrd library (the same code that builds migration ramdisks).

use crate::paths::Kernel;
use anyhow::{bail, Context, Result};
use migrd::initramfs::{write_initramfs, Node, Segment, SegmentCompression, Source, Tree};
use migrd::kmod::{resolve, wanted::Wanted, ModuleIndex};
use std::io::Write;
use std::path::Path;

const fn w(name: &'static str, reason: &'static str, required: bool) -> Wanted {
    Wanted {
        name,
        reason,
        required,
    }
}

/// What the reporter loads: the disk (virtio in the lab; SATA and NVMe in
/// case a scenario attaches the disk another way), resin-boot, resin-data.
const WANTED: &[Wanted] = &[
    w("virtio_pci", "virtio disks on PCI", true),
    w("virtio_blk", "virtio disks", true),
    w("ahci", "SATA disks", false),
    w("sd_mod", "SATA disks", false),
    w("nvme", "NVMe disks", false),
    w("sdhci_iproc", "Raspberry Pi SD host (Arasan SDHCI)", false),
    w("bcm2835", "Raspberry Pi SD host (sdhost)", false),
    w("vfat", "resin-boot", true),
    w("nls_cp437", "vfat codepage", false),
    // Debian's CONFIG_FAT_DEFAULT_IOCHARSET is "ascii": without nls_ascii
    // a plain vfat mount fails with EINVAL.
    w("nls_ascii", "vfat default iocharset (Debian)", false),
    w("nls_utf8", "vfat iocharset", false),
    w("nls_iso8859_1", "vfat iocharset", false),
    w("ext4", "resin-data", true),
    w("crypto-crc32c", "ext4 metadata checksums", false),
];

/// Write the initramfs (one gzip segment) to `out`; returns the module
/// names in load order.
pub fn write(reporter: &Path, kernel: &Kernel, out: &Path) -> Result<Vec<String>> {
    let idx = ModuleIndex::read(&kernel.modules_dir.join(&kernel.release))?;
    let closure = resolve(&idx, WANTED, &[], None)?;
    let mut tree = Tree::new();
    let size = std::fs::metadata(reporter)
        .with_context(|| format!("balena-reporter {}", reporter.display()))?
        .len();
    tree.insert(
        "init",
        Node::File {
            perm: 0o755,
            source: Source::File {
                path: reporter.to_path_buf(),
                size,
            },
        },
    )?;
    tree.insert(
        "dev/console",
        Node::CharDev {
            perm: 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    for d in ["proc", "sys", "mnt"] {
        tree.insert(d, Node::Dir { perm: 0o755 })?;
    }
    let mut order = String::new();
    for m in &closure.files {
        if m.decompress {
            bail!(
                "module {} is compressed ({:?}); the lab kernel's modules are plain",
                m.source.display(),
                m.compression
            );
        }
        let size = std::fs::metadata(&m.source)
            .with_context(|| format!("module {}", m.source.display()))?
            .len();
        tree.insert(
            &m.dest,
            Node::File {
                perm: 0o644,
                source: Source::File {
                    path: m.source.clone(),
                    size,
                },
            },
        )?;
        order.push_str(&m.dest);
        order.push('\n');
    }
    tree.insert(
        "etc/modules.order",
        Node::File {
            perm: 0o644,
            source: Source::Bytes(order.into_bytes()),
        },
    )?;
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let (mut f, _) = write_initramfs(
        std::io::BufWriter::new(f),
        &[Segment {
            compression: SegmentCompression::Gzip,
            tree,
        }],
    )?;
    f.flush()?;
    Ok(closure.files.iter().map(|m| m.name.clone()).collect())
}
