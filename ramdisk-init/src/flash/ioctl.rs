//! The block-device ioctls the flash engine needs. The only `unsafe` of the
//! engine lives here: each call passes a file descriptor the caller keeps
//! open for the call's duration and, where the kernel writes a result, a
//! pointer to a local of exactly the type the kernel writes.
//!
//! The request numbers are the kernel's (include/uapi/linux/fs.h), which
//! are not always what their names suggest:
//! - `BLKSSZGET` is `_IO(0x12, 104)`: no size in the number, the kernel
//!   writes an `int`;
//! - `BLKGETSIZE64` is `_IOR(0x12, 114, size_t)`: the number encodes the
//!   size of `size_t` (4 bytes on armv7, 8 on x86_64 and aarch64) although
//!   the kernel always writes a `u64`. Encoding it with `u64` gives a number
//!   no 32-bit kernel knows (ENOTTY), which once failed every flash on
//!   armv7;
//! - `BLKRRPART` is `_IO(0x12, 95)`;
//! - `BLKPG` is `_IO(0x12, 105)` although it takes a pointer to a
//!   `struct blkpg_ioctl_arg` (include/uapi/linux/blkpg.h), whose `data`
//!   points to a `struct blkpg_partition`; both are `repr(C)` here, so their
//!   layout follows the target's pointer and `long long` sizes.
#![allow(unsafe_code)]

use nix::libc::c_int;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `BLKSSZGET`.
const BLKSSZGET: nix::sys::ioctl::ioctl_num_type = nix::request_code_none!(0x12, 104);
/// `BLKGETSIZE64`: `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: nix::sys::ioctl::ioctl_num_type =
    nix::request_code_read!(0x12, 114, std::mem::size_of::<usize>());

nix::ioctl_read_bad!(blksszget, BLKSSZGET, c_int);
nix::ioctl_read_bad!(blkgetsize64, BLKGETSIZE64, u64);
nix::ioctl_none!(blkrrpart, 0x12, 95);
nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);

/// `struct blkpg_partition`.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: c_int,
    flags: c_int,
    datalen: c_int,
    data: *mut BlkpgPartition,
}

/// `BLKPG_ADD_PARTITION`.
const BLKPG_ADD_PARTITION: c_int = 1;
/// `BLKPG_DEL_PARTITION`.
const BLKPG_DEL_PARTITION: c_int = 2;

fn blkpg_call(fd: BorrowedFd<'_>, op: c_int, pno: u32, start: u64, length: u64) -> nix::Result<()> {
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| nix::errno::Errno::EINVAL)?,
        length: i64::try_from(length).map_err(|_| nix::errno::Errno::EINVAL)?,
        pno: c_int::try_from(pno).map_err(|_| nix::errno::Errno::EINVAL)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as c_int,
        data: &mut part,
    };
    // SAFETY: `fd` is open (borrowed); `arg` and the `part` it points to
    // live on this frame for the whole call and have the kernel's layout.
    unsafe { blkpg(fd.as_raw_fd(), &arg) }?;
    Ok(())
}

/// Tell the kernel about partition `pno` at byte `start`, `length` bytes
/// long (BLKPG_ADD_PARTITION); `EBUSY` when that number or range is taken.
pub fn add_partition(fd: BorrowedFd<'_>, pno: u32, start: u64, length: u64) -> nix::Result<()> {
    blkpg_call(fd, BLKPG_ADD_PARTITION, pno, start, length)
}

/// Make the kernel forget partition `pno` (BLKPG_DEL_PARTITION); `ENXIO`
/// when it has none of that number, `EBUSY` when it is open.
pub fn delete_partition(fd: BorrowedFd<'_>, pno: u32) -> nix::Result<()> {
    blkpg_call(fd, BLKPG_DEL_PARTITION, pno, 0, 0)
}

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

    /// The kernel's numbers, as `_IOC(dir, type, nr, size)` gives them on
    /// x86_64, aarch64 and armv7 (asm-generic/ioctl.h: read = 2 << 30,
    /// size << 16, type << 8, nr), written out by hand per target. The
    /// armv7 and aarch64 values are checked where they run: test.sh runs
    /// this module's tests for both targets under qemu-user.
    #[test]
    fn request_numbers_are_the_kernels() {
        #[cfg(target_pointer_width = "32")]
        let blkgetsize64 = 0x8004_1272;
        #[cfg(target_pointer_width = "64")]
        let blkgetsize64 = 0x8008_1272;
        assert_eq!(u64::from(BLKGETSIZE64 as u32), blkgetsize64);
        assert_eq!(u64::from(BLKSSZGET as u32), 0x1268);
        assert_eq!(u64::from(nix::request_code_none!(0x12, 95) as u32), 0x125f);
        assert_eq!(u64::from(nix::request_code_none!(0x12, 105) as u32), 0x1269);
        // struct blkpg_partition: two long long, an int, 2 x 64 chars,
        // padded to 8 bytes; struct blkpg_ioctl_arg: three ints and a
        // pointer, padded to the pointer's alignment.
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        #[cfg(target_pointer_width = "32")]
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 16);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
    }

    /// On a real block device (a loop device, when the machine lets the
    /// test make one) both reads succeed and agree with the backing file.
    #[test]
    fn a_loop_device_reports_its_size_and_sector_size() {
        let Some(dev) = crate::flash::test_loop::LoopDevice::attach(3 << 20) else {
            eprintln!("not root: no loop device, skipped");
            return;
        };
        let f = std::fs::File::open(dev.path()).unwrap();
        assert_eq!(device_size(f.as_fd()), Ok(3 << 20));
        assert_eq!(logical_sector_size(f.as_fd()), Ok(512));
    }

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
