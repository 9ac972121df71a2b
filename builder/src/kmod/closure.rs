//! Resolving a wanted set of modules to files in load order.

use super::index::{module_name, ModuleIndex};
use super::wanted::Wanted;
use crate::kconfig::KernelConfig;
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// One module file to carry in the ramdisk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModuleFile {
    /// Canonical name.
    pub name: String,
    /// Absolute path on the build machine.
    pub source: PathBuf,
    /// Compression of the source file (`xz`, `zst`, `gz`), if any.
    pub compression: Option<String>,
    /// Decompress while packing (the kernel cannot load it compressed).
    pub decompress: bool,
    /// Path inside the ramdisk.
    pub dest: String,
}

/// The result of resolving a wanted set.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Closure {
    /// Files, every dependency before its user.
    pub files: Vec<ModuleFile>,
    /// Wanted names the kernel has built in.
    pub builtin: Vec<String>,
    /// Optional wanted names the kernel has neither built in nor as modules.
    pub absent: Vec<String>,
}

struct Walker<'a> {
    idx: &'a ModuleIndex,
    kconfig: Option<&'a KernelConfig>,
    seen: BTreeSet<String>,
    out: Closure,
}

impl Walker<'_> {
    /// Resolve a name or alias; false when the kernel knows neither.
    fn want(&mut self, name_or_alias: &str) -> bool {
        let n = name_or_alias.replace('-', "_");
        if self.idx.deps.contains_key(&n) {
            self.add(&n);
            return true;
        }
        if self.idx.builtin.contains(&n) {
            if !self.out.builtin.contains(&n) {
                self.out.builtin.push(n);
            }
            return true;
        }
        let targets = self.idx.aliases.get(&n).cloned().unwrap_or_default();
        let mut found = false;
        for m in targets {
            found |= self.want(&m);
        }
        found
    }

    /// Add a module after its soft (pre) and hard dependencies.
    fn add(&mut self, name: &str) {
        if !self.seen.insert(name.to_string()) {
            return;
        }
        let (pre, post) = self.idx.softdeps.get(name).cloned().unwrap_or_default();
        for s in &pre {
            self.want(s);
        }
        let Some((rel, deps)) = self.idx.deps.get(name).cloned() else {
            return;
        };
        for d in &deps {
            self.add(&module_name(d));
        }
        let ext = [".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .find(|s| rel.ends_with(*s))
            .map(|s| s.trim_start_matches(".ko.").to_string());
        let decompress = match (&ext, self.kconfig) {
            (Some(e), Some(k)) => !k.can_load_compressed(e),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let dest = match (&ext, decompress) {
            (Some(e), false) => format!("/lib/modules/{name}.ko.{e}"),
            _ => format!("/lib/modules/{name}.ko"),
        };
        self.out.files.push(ModuleFile {
            name: name.to_string(),
            source: self.idx.dir.join(&rel),
            compression: ext,
            decompress,
            dest,
        });
        for s in &post {
            self.want(s);
        }
    }
}

/// Resolve `wanted` (plus `extra` modules, all required) against `idx`.
/// Fails naming every required module the kernel lacks.
pub fn resolve(
    idx: &ModuleIndex,
    wanted: &[Wanted],
    extra: &[super::Needed],
    kconfig: Option<&KernelConfig>,
) -> Result<Closure> {
    let mut w = Walker {
        idx,
        kconfig,
        seen: BTreeSet::new(),
        out: Closure::default(),
    };
    let mut missing = Vec::new();
    for item in wanted {
        if !w.want(item.name) {
            if item.required {
                missing.push(format!("{} ({})", item.name, item.reason));
            } else {
                w.out.absent.push(item.name.to_string());
            }
        }
    }
    for n in extra {
        if !w.want(&n.name) {
            missing.push(format!("{} ({})", n.name, n.reason));
        }
    }
    if !missing.is_empty() {
        bail!(
            "kernel modules not found in {} (neither built in nor as modules): {}; \
             is --modules-dir the right kernel release?",
            idx.dir.display(),
            missing.join(", ")
        );
    }
    Ok(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::wanted::Wanted;

    fn idx() -> ModuleIndex {
        ModuleIndex::parse(
            "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
             kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio.ko:\n\
             kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz\n\
             kernel/fs/jbd2/jbd2.ko.xz:\n\
             kernel/fs/mbcache.ko.xz:\n\
             kernel/lib/crc16.ko.xz:\n\
             kernel/crypto/crc32c_generic.ko.xz:\n",
            "kernel/fs/fat/vfat.ko\nkernel/fs/fat/fat.ko\n",
            "alias crypto-crc32c crc32c_generic\nalias fs-ext4 ext4\n",
            "softdep ext4 pre: crypto-crc32c\n",
        )
    }

    fn names(c: &Closure) -> Vec<&str> {
        c.files.iter().map(|f| f.name.as_str()).collect()
    }

    const fn req(name: &'static str) -> Wanted {
        Wanted {
            name,
            reason: "test",
            required: true,
        }
    }

    #[test]
    fn dependencies_come_before_users_and_once() {
        let c = resolve(&idx(), &[req("virtio_blk"), req("virtio_pci")], &[], None).unwrap();
        assert_eq!(
            names(&c),
            [
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
        assert_eq!(c.files[2].dest, "/lib/modules/virtio_blk.ko");
        assert!(c.files[2]
            .source
            .ends_with("kernel/drivers/block/virtio_blk.ko"));
    }

    #[test]
    fn softdeps_through_aliases_load_first_and_builtins_are_skipped() {
        let c = resolve(&idx(), &[req("ext4"), req("vfat")], &[], None).unwrap();
        assert_eq!(
            names(&c),
            ["crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"]
        );
        assert_eq!(c.builtin, ["vfat"]);
    }

    #[test]
    fn compressed_modules_are_unpacked_unless_the_kernel_can_load_them() {
        let c = resolve(&idx(), &[req("fs-ext4")], &[], None).unwrap();
        let ext4 = c.files.iter().find(|f| f.name == "ext4").unwrap();
        assert_eq!(
            (ext4.compression.as_deref(), ext4.decompress),
            (Some("xz"), true)
        );
        assert_eq!(ext4.dest, "/lib/modules/ext4.ko");
        let k = KernelConfig::parse("CONFIG_MODULE_DECOMPRESS=y\nCONFIG_MODULE_COMPRESS_XZ=y\n");
        let c = resolve(&idx(), &[req("ext4")], &[], Some(&k)).unwrap();
        let ext4 = c.files.iter().find(|f| f.name == "ext4").unwrap();
        assert!(!ext4.decompress);
        assert_eq!(ext4.dest, "/lib/modules/ext4.ko.xz");
    }

    #[test]
    fn missing_required_modules_are_named_and_optional_ones_noted() {
        let opt = Wanted {
            name: "nvme",
            reason: "test",
            required: false,
        };
        let c = resolve(&idx(), &[opt], &[], None).unwrap();
        assert_eq!(c.absent, ["nvme"]);
        let e = resolve(
            &idx(),
            &[req("btrfs")],
            &[super::super::Needed::asked("zfs")],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("btrfs (test)") && e.contains("zfs (asked for with --module)"),
            "{e}"
        );
    }
}
