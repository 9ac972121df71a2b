//! Restart with an argument (`reboot(2)`, `LINUX_REBOOT_CMD_RESTART2`), for
//! systems without systemd: busybox's `reboot` ignores an argument and
//! reboots plainly, and sysvinit's takes none. nix's `reboot()` has no
//! RESTART2 (the only command that carries one), so this module holds the
//! raw call.
#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use std::ffi::CString;

/// Flush the filesystems and restart, passing `arg` to the kernel (which
/// hands it to the firmware driver: the Raspberry Pi's turns "0 tryboot"
/// into the tryboot flag). Services are not stopped cleanly first, which
/// is why callers use this only when systemd is missing. Returns only on
/// failure.
pub fn restart_with(arg: &str) -> Result<()> {
    let c_arg = CString::new(arg).with_context(|| format!("reboot argument {arg:?}"))?;
    nix::unistd::sync();
    // SAFETY: reboot(2) with the documented magic numbers; `c_arg` is a
    // NUL-terminated string that outlives the call, which only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_reboot,
            libc::LINUX_REBOOT_MAGIC1,
            libc::LINUX_REBOOT_MAGIC2,
            libc::LINUX_REBOOT_CMD_RESTART2,
            c_arg.as_ptr(),
        )
    };
    let e = std::io::Error::last_os_error();
    bail!("reboot(LINUX_REBOOT_CMD_RESTART2, {arg:?}) returned {r}: {e}; reboot with that argument yourself as root — a plain reboot boots the old OS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_with_a_nul_is_refused_before_any_call() {
        let e = restart_with("0\0tryboot").unwrap_err();
        assert!(format!("{e:#}").contains("reboot argument"), "{e:#}");
    }
}
