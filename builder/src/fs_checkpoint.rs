//! Writing a filesystem's journal home after arming. GRUB (and other boot
//! loaders) read ext4 without replaying its journal: a menu entry the
//! kernel has committed to the journal but not yet written to its home
//! blocks is invisible to them after a power cut. Freezing a filesystem
//! (`FIFREEZE`) makes the kernel flush it and checkpoint its journal;
//! thawing it (`FITHAW`) lets writers go on. This module holds the two raw
//! ioctls.
#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

// FIFREEZE = _IOWR('X', 119, int), FITHAW = _IOWR('X', 120, int)
// (include/uapi/linux/fs.h); the kernel ignores the argument.
nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// What [`checkpoint`] did to one filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Synced, frozen and thawed: its journal is written home.
    Frozen,
    /// Synced only: the filesystem cannot be frozen (vfat, tmpfs; the
    /// kernel answers `EOPNOTSUPP` or `EINVAL`). Without a journal there
    /// is nothing to write home.
    SyncedOnly,
}

/// The three calls on one open filesystem, so that tests can fail them.
trait FsOps {
    fn syncfs(&self) -> nix::Result<()>;
    fn freeze(&self) -> nix::Result<()>;
    fn thaw(&self) -> nix::Result<()>;
}

/// A file or folder on the filesystem to checkpoint: the ioctls act on the
/// filesystem of any open file, not only of its mount point.
struct OpenFs(std::fs::File);

impl FsOps for OpenFs {
    fn syncfs(&self) -> nix::Result<()> {
        nix::unistd::syncfs(self.0.as_raw_fd())
    }

    fn freeze(&self) -> nix::Result<()> {
        let mut arg: libc::c_int = 0;
        // SAFETY: FIFREEZE on an open descriptor; the kernel does not read
        // or write the argument, which outlives the call anyway.
        unsafe { fifreeze(self.0.as_raw_fd(), &mut arg) }.map(drop)
    }

    fn thaw(&self) -> nix::Result<()> {
        let mut arg: libc::c_int = 0;
        // SAFETY: as for FIFREEZE.
        unsafe { fithaw(self.0.as_raw_fd(), &mut arg) }.map(drop)
    }
}

/// Thaws a frozen filesystem when dropped, so that no early return or
/// panic between freeze and thaw leaves it frozen (every writer on it,
/// the whole OS if it is `/`, would block).
struct Frozen<'a, O: FsOps> {
    fs: &'a O,
    thawed: bool,
}

impl<O: FsOps> Frozen<'_, O> {
    /// Thaw now and say whether it worked.
    fn thaw(mut self) -> nix::Result<()> {
        self.thawed = true;
        self.fs.thaw()
    }
}

impl<O: FsOps> Drop for Frozen<'_, O> {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = self.fs.thaw();
        }
    }
}

/// Make the filesystem holding `path` write everything home, its journal
/// included: `syncfs`, then `FIFREEZE` and at once `FITHAW`. A filesystem
/// that cannot be frozen is only synced. Needs root (CAP_SYS_ADMIN).
pub fn checkpoint(path: &Path) -> Result<Checkpoint> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    checkpoint_with(&OpenFs(f)).with_context(|| format!("filesystem of {}", path.display()))
}

/// [`checkpoint`] over any [`FsOps`].
fn checkpoint_with<O: FsOps>(fs: &O) -> Result<Checkpoint> {
    fs.syncfs().context("syncfs")?;
    match fs.freeze() {
        Ok(()) => {}
        Err(Errno::EOPNOTSUPP | Errno::EINVAL) => return Ok(Checkpoint::SyncedOnly),
        Err(Errno::EBUSY) => bail!("FIFREEZE: the filesystem is already frozen by someone else"),
        Err(e) => bail!("FIFREEZE: {e}"),
    }
    let frozen = Frozen { fs, thawed: false };
    frozen.thaw().context(
        "FITHAW (the filesystem may still be frozen: run `fsfreeze -u` on its mount point)",
    )?;
    Ok(Checkpoint::Frozen)
}

/// The files and folders among `paths` (or, for those that do not exist,
/// their nearest existing ancestor), one per filesystem (by device number),
/// in path order.
pub fn one_per_filesystem<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in paths {
        let Some((existing, dev)) = p
            .ancestors()
            .find_map(|a| Some((a, a.metadata().ok()?.dev())))
        else {
            continue;
        };
        if seen.insert(dev) {
            out.push(existing.to_path_buf());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records the calls; fails the ones it is told to.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<&'static str>>,
        freeze_err: Option<Errno>,
        thaw_err: Option<Errno>,
    }

    impl FsOps for Fake {
        fn syncfs(&self) -> nix::Result<()> {
            self.calls.borrow_mut().push("syncfs");
            Ok(())
        }
        fn freeze(&self) -> nix::Result<()> {
            self.calls.borrow_mut().push("freeze");
            self.freeze_err.map_or(Ok(()), Err)
        }
        fn thaw(&self) -> nix::Result<()> {
            self.calls.borrow_mut().push("thaw");
            self.thaw_err.map_or(Ok(()), Err)
        }
    }

    #[test]
    fn a_journaled_filesystem_is_synced_frozen_and_thawed() {
        let f = Fake::default();
        assert_eq!(checkpoint_with(&f).ok(), Some(Checkpoint::Frozen));
        assert_eq!(*f.calls.borrow(), ["syncfs", "freeze", "thaw"]);
    }

    #[test]
    fn a_filesystem_that_cannot_freeze_is_synced_only_and_not_thawed() {
        for e in [Errno::EOPNOTSUPP, Errno::EINVAL] {
            let f = Fake {
                freeze_err: Some(e),
                ..Fake::default()
            };
            assert_eq!(checkpoint_with(&f).ok(), Some(Checkpoint::SyncedOnly));
            assert_eq!(*f.calls.borrow(), ["syncfs", "freeze"]);
        }
    }

    #[test]
    fn a_filesystem_frozen_by_someone_else_is_an_error_and_left_to_them() {
        let f = Fake {
            freeze_err: Some(Errno::EBUSY),
            ..Fake::default()
        };
        let e = checkpoint_with(&f).unwrap_err();
        assert!(format!("{e:#}").contains("already frozen"), "{e:#}");
        assert_eq!(*f.calls.borrow(), ["syncfs", "freeze"]);
    }

    #[test]
    fn a_failed_thaw_is_reported_with_the_way_out() {
        let f = Fake {
            thaw_err: Some(Errno::EIO),
            ..Fake::default()
        };
        let e = checkpoint_with(&f).unwrap_err();
        assert!(format!("{e:#}").contains("fsfreeze -u"), "{e:#}");
        assert_eq!(*f.calls.borrow(), ["syncfs", "freeze", "thaw"]);
    }

    #[test]
    fn a_panic_while_frozen_still_thaws() {
        let f = Fake::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _frozen = Frozen {
                fs: &f,
                thawed: false,
            };
            panic!("between freeze and thaw");
        }));
        assert!(r.is_err());
        assert_eq!(*f.calls.borrow(), ["thaw"]);
    }

    /// On tmpfs (`/dev/shm`, which cannot be frozen) a checkpoint is a
    /// sync and no error. (Not run on the test host's disk: freezing it
    /// would stall every other process on the machine for the moment.)
    #[test]
    fn tmpfs_is_synced_only() -> Result<()> {
        let shm = Path::new("/dev/shm");
        let on_tmpfs = nix::sys::statfs::statfs(shm)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        if !on_tmpfs {
            eprintln!("/dev/shm is not a tmpfs here; skipped");
            return Ok(());
        }
        let d = tempfile::tempdir_in(shm)?;
        std::fs::write(d.path().join("custom.cfg"), "menuentry")?;
        match checkpoint(&d.path().join("custom.cfg")) {
            Ok(c) => assert_eq!(c, Checkpoint::SyncedOnly),
            // Not root: FIFREEZE needs CAP_SYS_ADMIN; syncfs still ran.
            Err(e) => assert!(format!("{e:#}").contains("EPERM"), "{e:#}"),
        }
        Ok(())
    }

    #[test]
    fn one_path_per_filesystem_and_missing_paths_fall_back_to_their_parent() -> Result<()> {
        let d = tempfile::tempdir()?;
        let a = d.path().join("a");
        std::fs::write(&a, "x")?;
        let missing = d.path().join("no/such/file");
        let got = one_per_filesystem([a.as_path(), missing.as_path(), d.path()]);
        assert_eq!(got, vec![a]);
        let got = one_per_filesystem([missing.as_path()]);
        assert_eq!(got, vec![d.path().to_path_buf()]);
        Ok(())
    }
}
