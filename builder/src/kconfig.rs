//! Reading a kernel's build configuration (`/boot/config-<release>`,
//! `/proc/config.gz`) for the facts the ramdisk depends on: which initramfs
//! compressions it can unpack and whether it can load compressed modules.

use anyhow::{Context, Result};
use flate2::read::GzDecoder;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// A parsed kernel config: `CONFIG_X` → value (`y`, `m`, a string or number).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: BTreeMap<String, String>,
}

/// How the compressed segment of the initramfs is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RamdiskCompression {
    /// Zstandard (needs CONFIG_RD_ZSTD).
    Zstd,
    /// gzip (needs CONFIG_RD_GZIP).
    Gzip,
    /// None: the kernel supports neither.
    None,
}

impl KernelConfig {
    /// Parse config text. Lines like `# CONFIG_X is not set` mean unset.
    pub fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix("CONFIG_")?;
                let (k, v) = rest.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect();
        KernelConfig { values }
    }

    /// Read a config file, gzip-compressed (`config.gz`) or plain.
    pub fn read(path: &Path) -> Result<Self> {
        let raw = std::fs::read(path)
            .with_context(|| format!("reading kernel config {}", path.display()))?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            GzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .with_context(|| format!("decompressing kernel config {}", path.display()))?;
            s
        } else {
            String::from_utf8_lossy(&raw).into_owned()
        };
        let cfg = Self::parse(&text);
        if cfg.values.is_empty() {
            anyhow::bail!(
                "{} holds no CONFIG_ lines: is it a kernel config? (pass --kernel-config /boot/config-<release>)",
                path.display()
            );
        }
        Ok(cfg)
    }

    /// The value of `CONFIG_<name>`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// True when `CONFIG_<name>=y`.
    pub fn builtin(&self, name: &str) -> bool {
        self.get(name) == Some("y")
    }

    /// The best compression the kernel can unpack: zstd (smaller, faster to
    /// unpack) over gzip over none.
    pub fn ramdisk_compression(&self) -> RamdiskCompression {
        if self.builtin("RD_ZSTD") {
            RamdiskCompression::Zstd
        } else if self.builtin("RD_GZIP") {
            RamdiskCompression::Gzip
        } else {
            RamdiskCompression::None
        }
    }

    /// Whether `finit_module` accepts compressed modules
    /// (CONFIG_MODULE_DECOMPRESS) and for which formats.
    pub fn can_load_compressed(&self, ext: &str) -> bool {
        self.builtin("MODULE_DECOMPRESS")
            && match ext {
                "xz" => self.builtin("MODULE_COMPRESS_XZ"),
                "zst" => self.builtin("MODULE_COMPRESS_ZSTD"),
                "gz" => self.builtin("MODULE_COMPRESS_GZIP"),
                _ => false,
            }
    }

    /// Whether `/dev` is mounted by the kernel (informational: migrd-init
    /// mounts it either way).
    pub fn devtmpfs(&self) -> bool {
        self.builtin("DEVTMPFS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const DEBIAN: &str =
        "CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n# CONFIG_MODULE_DECOMPRESS is not set\n\
CONFIG_DEVTMPFS=y\nCONFIG_LOCALVERSION=\"\"\nCONFIG_VIRTIO_BLK=m\n";

    #[test]
    fn prefers_zstd_then_gzip() {
        let c = KernelConfig::parse(DEBIAN);
        assert_eq!(c.ramdisk_compression(), RamdiskCompression::Zstd);
        let c = KernelConfig::parse("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n");
        assert_eq!(c.ramdisk_compression(), RamdiskCompression::Gzip);
        let c = KernelConfig::parse("CONFIG_RD_LZ4=y\n");
        assert_eq!(c.ramdisk_compression(), RamdiskCompression::None);
    }

    #[test]
    fn reads_values_and_unset_lines() {
        let c = KernelConfig::parse(DEBIAN);
        assert_eq!(c.get("VIRTIO_BLK"), Some("m"));
        assert!(!c.builtin("VIRTIO_BLK"));
        assert_eq!(c.get("MODULE_DECOMPRESS"), None);
        assert_eq!(c.get("LOCALVERSION"), Some(""));
        assert!(!c.can_load_compressed("xz"));
        let c = KernelConfig::parse("CONFIG_MODULE_DECOMPRESS=y\nCONFIG_MODULE_COMPRESS_XZ=y\n");
        assert!(c.can_load_compressed("xz") && !c.can_load_compressed("zst"));
    }

    #[test]
    fn reads_proc_config_gz_and_refuses_other_files() {
        let d = tempfile::tempdir().unwrap();
        let gz = d.path().join("config.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(DEBIAN.as_bytes()).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        assert!(KernelConfig::read(&gz).unwrap().builtin("RD_ZSTD"));
        let junk = d.path().join("junk");
        std::fs::write(&junk, "hello\n").unwrap();
        let msg = KernelConfig::read(&junk).unwrap_err().to_string();
        assert!(
            msg.contains("junk") && msg.contains("--kernel-config"),
            "{msg}"
        );
    }
}
