//! A [`Device`] adapter that leaves the partition-table re-read to its
//! caller: stage 2 makes it a step of its own, because a kernel that keeps
//! the old table after a verified write is not a failed flash (the image is
//! whole; the new partitions can still be added one by one), while the
//! engine, for `migrd write-image`, reports it as an error.

use super::device::Device;
use super::error::FlashError;
use super::reread::Reread;
use std::io;

/// `inner`, whose `reread_partitions` does nothing.
pub struct RereadLater<'a, D: Device + ?Sized> {
    inner: &'a mut D,
}

impl<'a, D: Device + ?Sized> RereadLater<'a, D> {
    /// Wrap `inner`.
    pub fn new(inner: &'a mut D) -> Self {
        RereadLater { inner }
    }
}

impl<D: Device + ?Sized> Device for RereadLater<'_, D> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn capacity(&self) -> Option<u64> {
        self.inner.capacity()
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        self.inner.drop_cache()
    }
    fn reread_partitions(&mut self) -> Result<Reread, FlashError> {
        Ok(Reread::NotApplicable)
    }
    fn unwritten_reads_zero(&self) -> bool {
        self.inner.unwritten_reads_zero()
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        self.inner.grow_to(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::{write_image, Options};

    /// A device whose re-read always fails, as a disk with a partition
    /// still open does.
    struct Busy(crate::flash::memdev::MemDevice);

    impl Device for Busy {
        fn name(&self) -> String {
            "busy".into()
        }
        fn capacity(&self) -> Option<u64> {
            self.0.capacity()
        }
        fn sector_size(&self) -> u32 {
            self.0.sector_size()
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
            self.0.write_at(buf, offset)
        }
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.0.read_at(buf, offset)
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.sync()
        }
        fn drop_cache(&mut self) -> io::Result<()> {
            self.0.drop_cache()
        }
        fn reread_partitions(&mut self) -> Result<Reread, FlashError> {
            Err(FlashError::Reread {
                target: "busy".into(),
                attempts: 1,
                detail: "Device or resource busy".into(),
            })
        }
        fn unwritten_reads_zero(&self) -> bool {
            self.0.unwritten_reads_zero()
        }
        fn grow_to(&mut self, len: u64) -> io::Result<()> {
            self.0.grow_to(len)
        }
    }

    #[test]
    fn a_busy_table_fails_the_engine_but_not_a_deferred_flash() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.img");
        std::fs::write(&img, vec![7u8; 4096]).unwrap();
        let mut busy = Busy(crate::flash::memdev::MemDevice::new(1 << 20, 0));
        let direct = write_image(&img, &mut busy, &Options::default(), &mut |_| {});
        assert!(
            matches!(direct, Err(FlashError::Reread { .. })),
            "{direct:?}"
        );
        let mut later = RereadLater::new(&mut busy);
        let r = write_image(&img, &mut later, &Options::default(), &mut |_| {}).unwrap();
        assert_eq!(r.bytes, 4096);
        assert!(!r.partitions_reread);
    }
}
