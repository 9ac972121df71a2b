//! The inode "immutable" flag (`chattr -i`), which efivarfs sets on most
//! variables so that a stray `rm` cannot brick a machine. migrd clears it
//! on the one variable it is about to rewrite or delete, and sets it back
//! after a rewrite.
//!
//! The only unsafe code in this crate: two ioctls, through nix's macros.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::libc::c_long;
use std::fs::File;
use std::os::fd::AsRawFd;

/// `FS_IMMUTABLE_FL` from linux/fs.h.
const FS_IMMUTABLE_FL: c_long = 0x10;

// FS_IOC_GETFLAGS = _IOR('f', 1, long), FS_IOC_SETFLAGS = _IOW('f', 2, long).
// The kernel reads and writes an int through the pointer; a long is at
// least as large, so the buffer is always big enough.
nix::ioctl_read!(fs_ioc_getflags, b'f', 1, c_long);
nix::ioctl_write_ptr!(fs_ioc_setflags, b'f', 2, c_long);

/// The kernel writes an int: keep its 32 bits (a no-op where long is 32
/// bits, as on armv7).
#[cfg(target_pointer_width = "64")]
const INT_BITS: c_long = 0xffff_ffff;
#[cfg(not(target_pointer_width = "64"))]
const INT_BITS: c_long = -1;

fn get(f: &File) -> Result<c_long, Errno> {
    let mut flags: c_long = 0;
    // SAFETY: the fd is open for the lifetime of `f`, and `flags` is a valid,
    // writable c_long that outlives the call.
    unsafe { fs_ioc_getflags(f.as_raw_fd(), &mut flags) }?;
    Ok(flags & INT_BITS)
}

fn set(f: &File, flags: c_long) -> Result<(), Errno> {
    // SAFETY: the fd is open for the lifetime of `f`, and `flags` is a valid
    // c_long the kernel only reads during the call.
    unsafe { fs_ioc_setflags(f.as_raw_fd(), &flags) }?;
    Ok(())
}

/// Clear the immutable flag of the open file. Returns whether it was set
/// (so it can be restored). A filesystem without inode flags (ENOTTY,
/// EOPNOTSUPP, EINVAL) has nothing to clear.
pub fn clear(f: &File) -> std::io::Result<bool> {
    let flags = match get(f) {
        Ok(fl) => fl,
        Err(Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if flags & FS_IMMUTABLE_FL == 0 {
        return Ok(false);
    }
    set(f, flags & !FS_IMMUTABLE_FL)?;
    Ok(true)
}

/// Set the immutable flag again.
pub fn restore(f: &File) -> std::io::Result<()> {
    let flags = get(f)?;
    set(f, flags | FS_IMMUTABLE_FL)?;
    Ok(())
}
