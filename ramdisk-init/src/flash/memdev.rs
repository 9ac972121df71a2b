//! A target in memory that can misbehave on purpose: refuse bytes, corrupt
//! what is read back, and log every operation so tests can check the order
//! of writes. Tests only.

use super::device::Device;
use super::error::FlashError;
use super::reread::Reread;
use std::io;

/// One operation seen by the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A write of `len` bytes at `at`.
    Write {
        /// Offset.
        at: u64,
        /// Bytes.
        len: usize,
    },
    /// A read at `at`.
    Read {
        /// Offset.
        at: u64,
    },
    /// `sync`.
    Sync,
}

/// In-memory target.
pub struct MemDevice {
    /// Contents.
    pub data: Vec<u8>,
    /// Bytes per write call at most (short writes).
    pub max_write: usize,
    /// Offset at or past which writes take nothing.
    pub full_at: u64,
    /// Byte flipped in everything read back.
    pub corrupt_at: Option<u64>,
    /// Operations, in order.
    pub log: Vec<Op>,
    /// Claim that unwritten bytes read as zeros (only true if filled with 0).
    pub sparse: bool,
}

impl MemDevice {
    /// A device of `len` bytes, filled with `fill`.
    pub fn new(len: usize, fill: u8) -> Self {
        MemDevice {
            data: vec![fill; len],
            max_write: usize::MAX,
            full_at: u64::MAX,
            corrupt_at: None,
            log: Vec::new(),
            sparse: false,
        }
    }

    /// Offsets of the writes, in order.
    pub fn write_offsets(&self) -> Vec<u64> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Op::Write { at, .. } => Some(*at),
                _ => None,
            })
            .collect()
    }
}

impl Device for MemDevice {
    fn name(&self) -> String {
        "mem".into()
    }
    fn capacity(&self) -> Option<u64> {
        Some(self.data.len() as u64)
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.log.push(Op::Write {
            at: offset,
            len: buf.len(),
        });
        if offset >= self.full_at {
            return Ok(0);
        }
        let room = (self.full_at - offset) as usize;
        let n = buf.len().min(self.max_write).min(room);
        let at = offset as usize;
        if at + n > self.data.len() {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        self.data[at..at + n].copy_from_slice(&buf[..n]);
        Ok(n)
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.log.push(Op::Read { at: offset });
        let at = (offset as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - at);
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        if let Some(c) = self.corrupt_at {
            if c >= offset && c < offset + n as u64 {
                buf[(c - offset) as usize] ^= 0x01;
            }
        }
        Ok(n)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.log.push(Op::Sync);
        Ok(())
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn unwritten_reads_zero(&self) -> bool {
        self.sparse
    }
    fn reread_partitions(&mut self) -> Result<Reread, FlashError> {
        Ok(Reread::NotApplicable)
    }
}
