//! Where an image goes: a block device or a disk-image file, behind a small
//! trait so the engine can be tested against targets that fail on purpose.
//!
//! Writes and the read-back go through `O_DIRECT` when the target supports
//! it: the data does not pass through (and evict) the page cache, the
//! kernel does not copy it, writing overlaps decoding for real instead of
//! piling up dirty pages until the final `fsync`, and the read-back reads the
//! medium rather than the cache. Where `O_DIRECT` is refused (tmpfs, an odd
//! final length), the target falls back to buffered I/O, and the read-back
//! first drops the cached pages.

use super::error::FlashError;
use super::ioctl;
use super::reread::{self, Reread};
use nix::fcntl::{fcntl, posix_fadvise, FcntlArg, OFlag, PosixFadviseAdvice};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// A target the engine writes to.
pub trait Device {
    /// Name for messages (the path).
    fn name(&self) -> String;
    /// Bytes it holds; `None` if unknown (a growing file on a filesystem
    /// that cannot say its free space).
    fn capacity(&self) -> Option<u64>;
    /// Logical sector size.
    fn sector_size(&self) -> u32;
    /// One write at `offset`; may be short.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// One read at `offset`; may be short at the end.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Make everything written durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Make the next reads come from the medium, not from a cache.
    fn drop_cache(&mut self) -> io::Result<()>;
    /// Have the kernel re-read the partition table, if that applies.
    fn reread_partitions(&mut self) -> Result<Reread, FlashError>;
    /// True if bytes never written read back as zeros (a new or empty
    /// file: holes), so zero blocks of the image need not be written.
    fn unwritten_reads_zero(&self) -> bool {
        false
    }
    /// Make the target at least `len` bytes long (a sparse file whose
    /// image ends in zeros). Nothing to do for a disk.
    fn grow_to(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// A block device or regular file opened for writing.
pub struct FileDevice {
    file: File,
    name: String,
    block: bool,
    direct: bool,
    capacity: Option<u64>,
    sector: u32,
    fresh: bool,
}

/// How to open a target.
#[derive(Clone, Copy, Debug)]
pub struct OpenMode {
    /// Create a regular file if the path does not exist.
    pub create: bool,
    /// Try `O_DIRECT`.
    pub direct: bool,
}

impl Default for OpenMode {
    fn default() -> Self {
        OpenMode {
            create: true,
            direct: true,
        }
    }
}

fn target_err<'a>(action: &'static str, name: &'a str) -> impl Fn(io::Error) -> FlashError + 'a {
    move |source| FlashError::Target {
        action,
        target: name.to_string(),
        source,
    }
}

/// Free space for unprivileged writers. The field types differ between
/// targets (u64 here, u32 on 32-bit ARM), hence the casts.
#[allow(clippy::unnecessary_cast)]
fn free_bytes(s: nix::sys::statvfs::Statvfs) -> u64 {
    (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64)
}

impl FileDevice {
    /// Open `path`: a block device, or a regular file (created if `mode`
    /// allows, but never under `/dev`, where a typo would fill RAM).
    /// An existing non-empty file is a disk image whose size is the
    /// capacity; a new or empty one may grow up to the filesystem's free
    /// space.
    pub fn open(path: &Path, mode: OpenMode) -> Result<Self, FlashError> {
        let name = path.display().to_string();
        let exists = path.exists();
        if !exists && (!mode.create || path.starts_with("/dev")) {
            return Err(FlashError::Target {
                action: "opening target",
                target: name,
                source: io::Error::new(io::ErrorKind::NotFound, "no such device or file"),
            });
        }
        let meta = if exists {
            Some(std::fs::metadata(path).map_err(target_err("opening target", &name))?)
        } else {
            None
        };
        let block = meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        if let Some(m) = &meta {
            if !block && !m.is_file() {
                return Err(FlashError::Target {
                    action: "opening target",
                    target: name,
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a block device or regular file",
                    ),
                });
            }
        }
        let open = |direct: bool| {
            let mut o = OpenOptions::new();
            o.read(true).write(true).create(!block && mode.create);
            if direct {
                o.custom_flags(nix::libc::O_DIRECT);
            }
            o.open(path)
        };
        let (file, direct) = match mode.direct {
            true => match open(true) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => (
                    open(false).map_err(target_err("opening target", &name))?,
                    false,
                ),
                Err(e) => return Err(target_err("opening target", &name)(e)),
            },
            false => (
                open(false).map_err(target_err("opening target", &name))?,
                false,
            ),
        };
        let (capacity, sector) = if block {
            let fd = file.as_fd();
            let size = ioctl::device_size(fd)
                .map_err(|e| target_err("reading the size of", &name)(e.into()))?;
            let ss = ioctl::logical_sector_size(fd).unwrap_or(512);
            (Some(size), ss)
        } else {
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let cap = if len > 0 {
                Some(len)
            } else {
                nix::sys::statvfs::fstatvfs(file.as_fd())
                    .ok()
                    .map(free_bytes)
            };
            (cap, 512)
        };
        Ok(FileDevice {
            file,
            name,
            block,
            direct,
            capacity,
            sector,
            fresh: !block && meta.as_ref().map_or(true, |m| m.len() == 0),
        })
    }

    /// True if I/O currently bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// True for a block device.
    pub fn is_block_device(&self) -> bool {
        self.block
    }

    fn aligned(&self, ptr: *const u8, len: usize, offset: u64) -> bool {
        let a = self.sector.max(512) as usize;
        (ptr as usize) % a == 0 && len % a == 0 && offset % a as u64 == 0
    }

    /// Leave `O_DIRECT` for good (an unaligned tail is coming).
    fn go_buffered(&mut self) -> io::Result<()> {
        let flags = fcntl(self.file.as_raw_fd(), FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_DIRECT;
        fcntl(self.file.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
        self.direct = false;
        Ok(())
    }
}

impl Device for FileDevice {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    fn sector_size(&self) -> u32 {
        self.sector
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.direct && !self.aligned(buf.as_ptr(), buf.len(), offset) {
            self.go_buffered()?;
        }
        self.file.write_at(buf, offset)
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.direct && !self.aligned(buf.as_ptr(), buf.len(), offset) {
            self.go_buffered()?;
        }
        self.file.read_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn drop_cache(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        posix_fadvise(
            self.file.as_raw_fd(),
            0,
            0,
            PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )?;
        Ok(())
    }

    fn unwritten_reads_zero(&self) -> bool {
        self.fresh
    }

    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        if self.fresh && self.file.metadata()?.len() < len {
            self.file.set_len(len)?;
        }
        Ok(())
    }

    fn reread_partitions(&mut self) -> Result<Reread, FlashError> {
        if !self.block {
            return Ok(Reread::NotApplicable);
        }
        let fd = self.file.as_fd();
        reread::with_retries(&self.name, 10, Duration::from_millis(500), || {
            ioctl::reread_partition_table(fd)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::aligned::AlignedBuf;
    use super::*;

    #[test]
    fn a_new_file_grows_into_free_space_and_an_old_one_is_a_fixed_disk() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.img");
        let dev = FileDevice::open(&p, OpenMode::default()).unwrap();
        assert!(dev.capacity().unwrap() > 0);
        assert_eq!(dev.sector_size(), 512);
        assert!(!dev.is_block_device());
        assert!(dev.unwritten_reads_zero());
        drop(dev);
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let dev = FileDevice::open(&p, OpenMode::default()).unwrap();
        assert_eq!(dev.capacity(), Some(8192));
        assert!(!dev.unwritten_reads_zero(), "old contents may be anything");
    }

    #[test]
    fn refuses_missing_paths_under_dev_and_non_files() {
        let e = FileDevice::open(Path::new("/dev/migrd-no-such-disk"), OpenMode::default());
        assert!(e
            .err()
            .unwrap()
            .to_string()
            .contains("/dev/migrd-no-such-disk"));
        let d = tempfile::tempdir().unwrap();
        assert!(FileDevice::open(d.path(), OpenMode::default()).is_err());
        let mode = OpenMode {
            create: false,
            direct: true,
        };
        assert!(FileDevice::open(&d.path().join("x"), mode).is_err());
    }

    #[test]
    fn direct_io_falls_back_to_buffered_for_an_unaligned_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.img");
        let mut dev = FileDevice::open(&p, OpenMode::default()).unwrap();
        let mut buf = AlignedBuf::new(8192);
        buf.as_mut_slice().fill(7);
        assert_eq!(dev.write_at(buf.as_slice(), 0).unwrap(), 8192);
        assert_eq!(dev.write_at(b"tail", 8192).unwrap(), 4);
        assert!(!dev.is_direct());
        dev.sync().unwrap();
        dev.drop_cache().unwrap();
        let mut back = vec![0u8; 8196];
        assert_eq!(dev.read_at(&mut back, 0).unwrap(), 8196);
        assert_eq!(&back[8192..], b"tail");
        assert_eq!(dev.reread_partitions().unwrap(), Reread::NotApplicable);
    }
}
