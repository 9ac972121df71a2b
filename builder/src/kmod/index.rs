//! Parsing the module index files `depmod` writes into
//! `/lib/modules/<release>/`. Text formats, one record a line; parsed by hand
//! because no crate reads them (the kmod C library reads the `.bin` tries).

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module index of one kernel release.
#[derive(Clone, Debug, Default)]
pub struct ModuleIndex {
    /// Directory the relative paths hang off (`/lib/modules/<release>`).
    pub dir: PathBuf,
    /// Module name → (relative path, direct dependencies by name).
    pub deps: BTreeMap<String, (String, Vec<String>)>,
    /// Names of built-in modules.
    pub builtin: BTreeSet<String>,
    /// Exact alias → module names (glob aliases are kept too but only
    /// matched literally: migrd asks for names, not device ids).
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Module → (pre, post) soft dependencies, as names or aliases.
    pub softdeps: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

/// Canonical module name: file stem without `.ko[.xz|.zst|.gz]`, `-` → `_`.
pub fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Read the index from `dir` (which holds `modules.dep`).
    pub fn read(dir: &Path) -> Result<Self> {
        let read = |name: &str, required: bool| -> Result<String> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(e).with_context(|| {
                    format!(
                        "reading {} (run `depmod -b ROOT RELEASE` if the modules came from a package)",
                        p.display()
                    )
                }),
            }
        };
        let mut idx = Self::parse(
            &read("modules.dep", true)?,
            &read("modules.builtin", false)?,
            &read("modules.alias", false)?,
            &read("modules.softdep", false)?,
        );
        idx.dir = dir.to_path_buf();
        Ok(idx)
    }

    /// Parse the four files' text.
    pub fn parse(dep: &str, builtin: &str, alias: &str, softdep: &str) -> Self {
        let mut idx = ModuleIndex::default();
        for line in dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let deps = rest.split_whitespace().map(module_name).collect();
            idx.deps
                .insert(module_name(path), (path.trim().to_string(), deps));
        }
        idx.builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        for line in alias.lines() {
            let mut it = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (it.next(), it.next(), it.next()) {
                idx.aliases
                    .entry(a.replace('-', "_"))
                    .or_default()
                    .push(module_name(m));
            }
        }
        for line in softdep.lines() {
            let mut it = line.split_whitespace();
            if it.next() != Some("softdep") {
                continue;
            }
            let Some(m) = it.next() else { continue };
            let entry = idx.softdeps.entry(module_name(m)).or_default();
            let mut post = false;
            for tok in it {
                match tok {
                    "pre:" => post = false,
                    "post:" => post = true,
                    t if post => entry.1.push(t.to_string()),
                    t => entry.0.push(t.to_string()),
                }
            }
        }
        idx
    }
}

/// How a kernel provides a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provided {
    /// Built into the kernel image.
    BuiltIn,
    /// A module file under the release's folder.
    Module,
}

impl ModuleIndex {
    /// Whether the kernel has `name_or_alias` built in or as a module file
    /// (through its aliases too); `None` when it has neither.
    pub fn provides(&self, name_or_alias: &str) -> Option<Provided> {
        self.provides_depth(&name_or_alias.replace('-', "_"), 0)
    }

    fn provides_depth(&self, n: &str, depth: u32) -> Option<Provided> {
        if self.deps.contains_key(n) {
            return Some(Provided::Module);
        }
        if self.builtin.contains(n) {
            return Some(Provided::BuiltIn);
        }
        if depth > 4 {
            return None;
        }
        let targets = self.aliases.get(n)?;
        targets
            .iter()
            .find_map(|t| self.provides_depth(t, depth + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical() {
        assert_eq!(
            module_name("kernel/drivers/block/virtio_blk.ko"),
            "virtio_blk"
        );
        assert_eq!(
            module_name("kernel/fs/nls/nls_iso8859-1.ko.xz"),
            "nls_iso8859_1"
        );
        assert_eq!(module_name("usb-storage"), "usb_storage");
    }

    #[test]
    fn parses_the_depmod_text_formats() {
        let idx = ModuleIndex::parse(
            "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio.ko:\n",
            "kernel/fs/vfat/vfat.ko\n",
            "alias fs-vfat vfat\nalias crypto-crc32c crc32c_generic\nalias crypto-crc32c crc32c_intel\n",
            "# comment\nsoftdep ext4 pre: crypto-crc32c post: foo\n",
        );
        assert_eq!(idx.deps["virtio_blk"].1, ["virtio_ring", "virtio"]);
        assert!(idx.deps["virtio"].1.is_empty());
        assert!(idx.builtin.contains("vfat"));
        assert_eq!(idx.provides("virtio-blk"), Some(Provided::Module));
        assert_eq!(idx.provides("fs-vfat"), Some(Provided::BuiltIn));
        assert_eq!(idx.provides("omap_hsmmc"), None);
        assert_eq!(
            idx.aliases["crypto_crc32c"],
            ["crc32c_generic", "crc32c_intel"]
        );
        assert_eq!(
            idx.softdeps["ext4"],
            (vec!["crypto-crc32c".to_string()], vec!["foo".to_string()])
        );
    }
}
