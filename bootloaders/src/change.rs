//! File changes a strategy asks for. Strategies compute them from facts and
//! never touch the disk themselves; stage 1 applies them through its undo
//! journal, so `migrd cancel` can put every byte back.

use std::path::PathBuf;

/// One change to the device's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create a directory (and its parents).
    MkDir {
        /// Absolute path.
        path: PathBuf,
    },
    /// Give a file new content.
    Write {
        /// Absolute path.
        path: PathBuf,
        /// New content.
        bytes: Vec<u8>,
        /// Permission bits for a new file.
        mode: u32,
        /// Rewrite the existing blocks without truncating or renaming (GRUB's
        /// grubenv must keep its blocks: GRUB rewrites them in place at boot).
        in_place: bool,
    },
    /// Copy a file (large: kernels, ramdisks).
    Copy {
        /// Source path.
        from: PathBuf,
        /// Destination path.
        to: PathBuf,
        /// Permission bits.
        mode: u32,
    },
}

impl Change {
    /// The path this change touches.
    pub fn path(&self) -> &PathBuf {
        match self {
            Change::MkDir { path } | Change::Write { path, .. } => path,
            Change::Copy { to, .. } => to,
        }
    }
}
