//! The watchdog ioctls (include/uapi/linux/watchdog.h). Like
//! [`crate::flash::ioctl`], the only `unsafe` here: each call passes a file
//! descriptor the caller keeps open and a pointer to a local `c_int`, the
//! type every one of these requests reads or writes.
//!
//! - `WDIOC_KEEPALIVE` is `_IOR('W', 5, int)` (the kernel ignores the
//!   argument; the number still encodes an `int`);
//! - `WDIOC_SETTIMEOUT` is `_IOWR('W', 6, int)`: seconds in, the timeout the
//!   driver really set out (it may round or clamp);
//! - `WDIOC_GETTIMEOUT` is `_IOR('W', 7, int)`.
//!
//! `int` is 4 bytes on x86_64, aarch64 and armv7, so unlike `BLKGETSIZE64`
//! the numbers are the same on 32- and 64-bit targets.
#![allow(unsafe_code)]

use nix::libc::c_int;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `WDIOC_KEEPALIVE`: `_IOR('W', 5, int)`.
const WDIOC_KEEPALIVE: nix::sys::ioctl::ioctl_num_type =
    nix::request_code_read!(b'W', 5, std::mem::size_of::<c_int>());
/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: nix::sys::ioctl::ioctl_num_type =
    nix::request_code_readwrite!(b'W', 6, std::mem::size_of::<c_int>());
/// `WDIOC_GETTIMEOUT`: `_IOR('W', 7, int)`.
const WDIOC_GETTIMEOUT: nix::sys::ioctl::ioctl_num_type =
    nix::request_code_read!(b'W', 7, std::mem::size_of::<c_int>());

nix::ioctl_read_bad!(wdioc_keepalive, WDIOC_KEEPALIVE, c_int);
nix::ioctl_readwrite_bad!(wdioc_settimeout, WDIOC_SETTIMEOUT, c_int);
nix::ioctl_read_bad!(wdioc_gettimeout, WDIOC_GETTIMEOUT, c_int);

/// Restart the watchdog's countdown (`WDIOC_KEEPALIVE`).
pub fn keepalive(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let mut v: c_int = 0;
    // SAFETY: `fd` is open (borrowed), `v` is a c_int as the request encodes.
    unsafe { wdioc_keepalive(fd.as_raw_fd(), &mut v) }?;
    Ok(())
}

/// Set the timeout in seconds (`WDIOC_SETTIMEOUT`); returns what the driver
/// set, which may differ.
pub fn set_timeout(fd: BorrowedFd<'_>, secs: u32) -> nix::Result<u32> {
    let mut v: c_int = c_int::try_from(secs).unwrap_or(c_int::MAX);
    // SAFETY: `fd` is open (borrowed), `v` is a c_int the kernel reads and
    // overwrites.
    unsafe { wdioc_settimeout(fd.as_raw_fd(), &mut v) }?;
    Ok(u32::try_from(v).unwrap_or(0))
}

/// The timeout in seconds (`WDIOC_GETTIMEOUT`).
pub fn get_timeout(fd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut v: c_int = 0;
    // SAFETY: `fd` is open (borrowed), `v` is a c_int as the kernel writes.
    unsafe { wdioc_gettimeout(fd.as_raw_fd(), &mut v) }?;
    Ok(u32::try_from(v).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The kernel's numbers, written out by hand from `_IOC(dir, 'W', nr,
    /// sizeof(int))` (asm-generic/ioctl.h: read = 2 << 30, read-write =
    /// 3 << 30, size 4 << 16, 'W' = 0x57 << 8), the same on every target
    /// migrd-init builds for (test.sh runs this under qemu-user for armv7
    /// and aarch64 too).
    #[test]
    fn request_numbers_are_the_kernels() {
        let num = |n: nix::sys::ioctl::ioctl_num_type| u64::from(n as u32);
        assert_eq!(num(WDIOC_KEEPALIVE), 0x8004_5705);
        assert_eq!(num(WDIOC_SETTIMEOUT), 0xc004_5706);
        assert_eq!(num(WDIOC_GETTIMEOUT), 0x8004_5707);
    }

    /// A regular file is no watchdog: every request fails with ENOTTY
    /// (proves the wrappers reach the kernel and report its error).
    #[test]
    fn a_regular_file_is_not_a_watchdog() -> std::io::Result<()> {
        let f = tempfile::tempfile()?;
        assert_eq!(keepalive(f.as_fd()), Err(nix::errno::Errno::ENOTTY));
        assert_eq!(set_timeout(f.as_fd(), 60), Err(nix::errno::Errno::ENOTTY));
        assert_eq!(get_timeout(f.as_fd()), Err(nix::errno::Errno::ENOTTY));
        Ok(())
    }
}
