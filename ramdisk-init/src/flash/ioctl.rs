//! The block-device ioctls the flash engine needs. The only `unsafe` of the
//! engine lives here: each call passes a file descriptor the caller keeps
//! open for the call's duration and, where the kernel writes a result, a
//! pointer to a local of exactly the type the ioctl is defined with.
#![allow(unsafe_code)]

use nix::libc::c_int;
use std::os::fd::{AsRawFd, BorrowedFd};

nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), c_int);
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
nix::ioctl_none!(blkrrpart, 0x12, 95);

/// Logical sector size of a block device (BLKSSZGET).
pub fn logical_sector_size(fd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut v: c_int = 0;
    // SAFETY: `fd` is open (borrowed), `v` is a c_int as BLKSSZGET expects.
    unsafe { blksszget(fd.as_raw_fd(), &mut v) }?;
    Ok(u32::try_from(v).unwrap_or(512))
}

/// Size in bytes of a block device (BLKGETSIZE64).
pub fn device_size(fd: BorrowedFd<'_>) -> nix::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: `fd` is open (borrowed), `v` is a u64 as BLKGETSIZE64 expects.
    unsafe { blkgetsize64(fd.as_raw_fd(), &mut v) }?;
    Ok(v)
}

/// Ask the kernel to re-read the partition table (BLKRRPART).
pub fn reread_partition_table(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: `fd` is open (borrowed); BLKRRPART takes no argument.
    unsafe { blkrrpart(fd.as_raw_fd()) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(
            logical_sector_size(f.as_fd()),
            Err(nix::errno::Errno::ENOTTY)
        );
        assert_eq!(device_size(f.as_fd()), Err(nix::errno::Errno::ENOTTY));
        assert_eq!(
            reread_partition_table(f.as_fd()),
            Err(nix::errno::Errno::ENOTTY)
        );
    }
}
