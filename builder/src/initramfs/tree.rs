//! A set of ramdisk entries, kept sorted so that parents precede children
//! and the archive order never depends on how entries were added.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// In memory.
    Bytes(Vec<u8>),
    /// A file on the build machine, streamed when the archive is written.
    File {
        /// The file.
        path: PathBuf,
        /// Its size when the plan was made; a different size at write time
        /// is an error.
        size: u64,
    },
}

impl Source {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File { size, .. } => *size,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One entry of the ramdisk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory (mode bits only, e.g. 0o755).
    Dir {
        /// Permission bits.
        perm: u32,
    },
    /// A regular file.
    File {
        /// Permission bits.
        perm: u32,
        /// Content.
        source: Source,
    },
    /// A character device node.
    CharDev {
        /// Permission bits.
        perm: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Link target.
        target: String,
    },
}

/// Entries by path (relative, no leading `/`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
}

fn normalize(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() {
        bail!("empty path in ramdisk tree");
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!("ramdisk path '{path}' has empty, '.' or '..' components");
    }
    Ok(p.to_string())
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an entry, creating missing parent directories (0755). Adding a
    /// path twice is an error, except for identical directories.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<()> {
        let p = normalize(path)?;
        let mut parent = String::new();
        for comp in p
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            match self.entries.get(&parent) {
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    bail!("ramdisk path '{parent}' is a file but '{p}' needs it as a directory")
                }
                None => {
                    self.entries
                        .insert(parent.clone(), Node::Dir { perm: 0o755 });
                }
            }
        }
        match (self.entries.get(&p), &node) {
            (None, _) => {}
            (Some(Node::Dir { .. }), Node::Dir { .. }) => {}
            (Some(_), _) => bail!("ramdisk path '/{p}' added twice"),
        }
        self.entries.insert(p, node);
        Ok(())
    }

    /// Entries in archive order (parents before children, bytewise sorted).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_whatever_the_insert_order() {
        let mut t = Tree::new();
        t.insert(
            "/lib/modules/b.ko",
            Node::File {
                perm: 0o644,
                source: Source::Bytes(vec![1]),
            },
        )
        .unwrap();
        t.insert(
            "init",
            Node::File {
                perm: 0o755,
                source: Source::Bytes(vec![]),
            },
        )
        .unwrap();
        t.insert("lib-x", Node::Dir { perm: 0o700 }).unwrap();
        t.insert(
            "lib/modules/a.ko",
            Node::File {
                perm: 0o644,
                source: Source::Bytes(vec![]),
            },
        )
        .unwrap();
        let order: Vec<&str> = t.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            order,
            [
                "init",
                "lib",
                "lib-x",
                "lib/modules",
                "lib/modules/a.ko",
                "lib/modules/b.ko"
            ]
        );
        for (i, p) in order.iter().enumerate() {
            if let Some((parent, _)) = p.rsplit_once('/') {
                assert!(order[..i].contains(&parent), "{parent} after {p}");
            }
        }
    }

    #[test]
    fn refuses_duplicates_escapes_and_file_parents() {
        let mut t = Tree::new();
        let f = || Node::File {
            perm: 0o644,
            source: Source::Bytes(vec![]),
        };
        t.insert("a", f()).unwrap();
        assert!(t.insert("/a", f()).is_err());
        assert!(t.insert("a/b", f()).is_err());
        assert!(t.insert("x/../etc", f()).is_err());
        assert!(t.insert("/", f()).is_err());
        t.insert("d", Node::Dir { perm: 0o755 }).unwrap();
        t.insert("d/", Node::Dir { perm: 0o755 }).unwrap();
    }
}
