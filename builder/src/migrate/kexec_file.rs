//! `kexec_file_load(2)`: hand the running kernel a new kernel, initramfs and
//! command line to jump into at the next `reboot(LINUX_REBOOT_CMD_KEXEC)`.
//! The kernel reads both files when they are loaded and keeps them in
//! memory; nothing is written anywhere, and a power cut or a firmware
//! reboot forgets them.
//!
//! No crate in the workspace wraps this syscall (nix does not; the
//! `kexec-loader` crate would add a dependency for one call), so it is one
//! small function here (with `restart2`, one of the two `unsafe` calls of
//! stage 1).
#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where stage 1 notes that it loaded the ramdisk: on /run (tmpfs), so the
/// note disappears with any reboot, exactly like the loaded image.
pub const MARKER: &str = "/run/migrd/kexec-loaded.json";

/// What was loaded (for `migrd status` and `migrd cancel`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// Its size in bytes.
    pub initramfs_size: u64,
    /// The command line.
    pub cmdline: String,
}

/// The syscall's number. The libc crate names it on x86_64 but not for
/// aarch64-musl, so both come from the kernel's tables:
/// arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h.
#[cfg(target_arch = "x86_64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 320;
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 294;

/// `kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags)`.
/// `cmdline` is empty or NUL-terminated.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn kexec_file_load(kernel: i32, initrd: i32, cmdline: &[u8], flags: i32) -> io::Result<()> {
    let ptr = if cmdline.is_empty() {
        std::ptr::null()
    } else {
        cmdline.as_ptr()
    };
    // SAFETY: the syscall reads `cmdline.len()` bytes at `ptr`, which
    // borrow a live slice (or is NULL with length 0, as KEXEC_FILE_UNLOAD
    // requires); the descriptors are either open files the caller owns for
    // the duration of the call or -1. The kernel copies everything it keeps
    // before returning, and writes nothing into our memory.
    let r = unsafe {
        libc::syscall(
            SYS_KEXEC_FILE_LOAD,
            libc::c_long::from(kernel),
            libc::c_long::from(initrd),
            cmdline.len() as libc::c_ulong,
            ptr,
            flags as libc::c_ulong,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn kexec_file_load(_: i32, _: i32, _: &[u8], _: i32) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// What an errno from `kexec_file_load` means for the operator.
pub fn explain(e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::EPERM) => "not permitted: run migrd as root; under lockdown (Secure Boot) the kernel also refuses images it cannot verify — use --boot-via grub",
        Some(libc::EKEYREJECTED) | Some(libc::ENOKEY) | Some(libc::EBADMSG) => {
            "the kernel could not verify the image's signature (lockdown or KEXEC_SIG_FORCE); use --boot-via grub"
        }
        Some(libc::ENOEXEC) => "the kernel does not recognise the image format; use --boot-via grub or efi",
        Some(libc::ENOMEM) | Some(libc::EADDRNOTAVAIL) => {
            "not enough free memory for the kernel and the ramdisk; free memory or use --boot-via grub or efi"
        }
        Some(libc::EBUSY) => "another kexec load is in progress; try again",
        Some(libc::ENOSYS) => "this kernel has no kexec_file_load (CONFIG_KEXEC_FILE); use --boot-via grub or efi",
        Some(libc::EINVAL) => "the kernel refused the arguments (a command line too long for it?)",
        _ => "",
    };
    if what.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {what}")
    }
}

/// Load `kernel` with `initramfs` and `cmdline` for the next kexec.
pub fn load(kernel: &Path, initramfs: &Path, cmdline: &str) -> Result<()> {
    let k = File::open(kernel).with_context(|| format!("opening {}", kernel.display()))?;
    let i = File::open(initramfs).with_context(|| format!("opening {}", initramfs.display()))?;
    let c = CString::new(cmdline).context("the kernel command line contains a NUL byte")?;
    kexec_file_load(k.as_raw_fd(), i.as_raw_fd(), c.as_bytes_with_nul(), 0).map_err(|e| {
        anyhow::anyhow!(
            "kexec_file_load of {} with {}: {}",
            kernel.display(),
            initramfs.display(),
            explain(&e)
        )
    })
}

/// Drop whatever is loaded for kexec (`KEXEC_FILE_UNLOAD`).
pub fn unload() -> Result<()> {
    match kexec_file_load(-1, -1, &[], libc::KEXEC_FILE_UNLOAD) {
        Ok(()) => Ok(()),
        Err(e) => bail!("unloading the kexec image: {}", explain(&e)),
    }
}

/// Whether a kexec image is loaded (`/sys/kernel/kexec_loaded` is 1) on the
/// system under `root`.
pub fn is_loaded(root: &Path) -> bool {
    std::fs::read_to_string(root.join("sys/kernel/kexec_loaded")).is_ok_and(|s| s.trim() == "1")
}

/// The marker under `root`.
pub fn marker(root: &Path) -> PathBuf {
    root.join(MARKER.trim_start_matches('/'))
}

/// Record what was loaded.
pub fn write_marker(root: &Path, l: &Loaded) -> Result<()> {
    let p = marker(root);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(&p, serde_json::to_vec_pretty(l)?)
        .with_context(|| format!("writing {}", p.display()))
}

/// What migrd loaded, if the marker is there and the kernel still has an
/// image loaded.
pub fn loaded_by_migrd(root: &Path) -> Option<Loaded> {
    if !is_loaded(root) {
        return None;
    }
    let text = std::fs::read(marker(root)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    #[test]
    fn syscall_number_is_libcs() {
        assert_eq!(SYS_KEXEC_FILE_LOAD, libc::SYS_kexec_file_load);
    }

    #[test]
    fn errors_explained() {
        let e = explain(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(e.contains("root") && e.contains("--boot-via grub"), "{e}");
        let e = explain(&io::Error::from_raw_os_error(libc::EKEYREJECTED));
        assert!(e.contains("signature"), "{e}");
        let e = explain(&io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(e.contains("memory"), "{e}");
        let e = explain(&io::Error::from_raw_os_error(libc::EIO));
        assert!(!e.contains(": not"), "{e}");
    }

    #[test]
    fn bad_inputs_refused_before_the_syscall() {
        let d = tempfile::tempdir().unwrap();
        let e = load(&d.path().join("nope"), &d.path().join("nope2"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let k = d.path().join("k");
        std::fs::write(&k, b"k").unwrap();
        let e = load(&k, &k, "a\0b").unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
    }

    #[test]
    fn marker_only_counts_while_the_kernel_has_an_image() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("sys/kernel")).unwrap();
        std::fs::write(r.join("sys/kernel/kexec_loaded"), "1\n").unwrap();
        assert_eq!(loaded_by_migrd(r), None);
        let l = Loaded {
            kernel: "/boot/vmlinuz-6.1.0-41-amd64".into(),
            initramfs: "/root/ramdisk/initramfs.img".into(),
            initramfs_size: 42,
            cmdline: "rootfstype=ramfs panic=10 console=ttyS0".into(),
        };
        write_marker(r, &l).unwrap();
        assert_eq!(loaded_by_migrd(r), Some(l));
        // A reboot forgets the image (and /run): an image no longer loaded
        // is not reported even if the marker survived.
        std::fs::write(r.join("sys/kernel/kexec_loaded"), "0\n").unwrap();
        assert_eq!(loaded_by_migrd(r), None);
    }
}
