//! A [`Device`] adapter that records whether any write was issued to the
//! target. Stage 2 uses it to tell a flash that failed before touching the
//! disk (the old OS is whole: go back to it) from one that failed part way
//! (the documented stranded path). A write that returned an error counts:
//! the device may have taken some of it.

use super::device::Device;
use super::error::FlashError;
use super::reread::Reread;
use std::io;

/// `inner`, watched.
pub struct Touched<'a, D: Device + ?Sized> {
    inner: &'a mut D,
    wrote: bool,
}

impl<'a, D: Device + ?Sized> Touched<'a, D> {
    /// Watch `inner`.
    pub fn new(inner: &'a mut D) -> Self {
        Touched {
            inner,
            wrote: false,
        }
    }

    /// Whether any write (or size change) was issued.
    pub fn wrote(&self) -> bool {
        self.wrote
    }
}

impl<D: Device + ?Sized> Device for Touched<'_, D> {
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
        self.wrote = true;
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
        self.inner.reread_partitions()
    }
    fn unwritten_reads_zero(&self) -> bool {
        self.inner.unwritten_reads_zero()
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        self.wrote = true;
        self.inner.grow_to(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::memdev::MemDevice;
    use crate::flash::{write_image, Options};

    #[test]
    fn an_image_refused_before_writing_leaves_the_disk_untouched() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("big.img");
        std::fs::write(&img, vec![1u8; 2 << 20]).unwrap();
        let mut dev = MemDevice::new(1 << 20, 0);
        let mut t = Touched::new(&mut dev);
        assert!(write_image(&img, &mut t, &Options::default(), &mut |_| {}).is_err());
        assert!(!t.wrote());
    }

    #[test]
    fn a_written_image_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.img");
        std::fs::write(&img, vec![7u8; 4096]).unwrap();
        let mut dev = MemDevice::new(1 << 20, 0);
        let mut t = Touched::new(&mut dev);
        write_image(&img, &mut t, &Options::default(), &mut |_| {}).unwrap();
        assert!(t.wrote());
    }
}
