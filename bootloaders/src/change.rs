//! File and firmware-variable changes a strategy asks for. Strategies compute them from facts and
//! never touch the disk themselves; stage 1 applies them through its undo
//! journal, so `migrd cancel` can put every byte back.

use std::path::PathBuf;
use std::sync::LazyLock;

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
    /// Set or delete a UEFI variable through efivarfs.
    EfiVar {
        /// Name with GUID, as efivarfs names it
        /// (`BootNext-8be4df61-93ca-11d2-aa0d-00e098032b8c`).
        name: String,
        /// `EFI_VARIABLE_*` attributes for a new value.
        attributes: u32,
        /// The new value; `None` deletes the variable.
        data: Option<Vec<u8>>,
    },
}

/// Where efivarfs is mounted: the "path" of every [`Change::EfiVar`].
static EFIVARFS: LazyLock<PathBuf> =
    LazyLock::new(|| PathBuf::from(migrd_init::efi::vars::DEFAULT_DIR));

impl Change {
    /// The path this change touches (the efivarfs folder for an EFI
    /// variable).
    pub fn path(&self) -> &PathBuf {
        match self {
            Change::MkDir { path } | Change::Write { path, .. } => path,
            Change::Copy { to, .. } => to,
            Change::EfiVar { .. } => &EFIVARFS,
        }
    }
}
