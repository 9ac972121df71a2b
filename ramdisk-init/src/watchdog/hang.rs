//! The kernel's hung-task panic, relaxed at the point of no return.
//!
//! The ramdisk boots with `hung_task_panic=1` (see stage 1's
//! `RAMDISK_HANG_CMDLINE`): before the point of no return a task blocked in
//! the kernel for `hung_task_timeout_secs` (a dead SD card, a stuck mount)
//! panics, and `panic=` reboots into the old OS. While flashing, a task can
//! legitimately wait that long on a slow card's writeback, and a reboot
//! then would leave a half-written disk: so at the point of no return
//! stage 2 turns the panic off and raises the timeout (reports only).

use std::path::Path;

/// Hung-task timeout set at the point of no return: reports only, and
/// rarely, while a slow card writes.
pub const FLASH_HUNG_TASK_TIMEOUT_SECS: u32 = 600;

/// Write `0` to `<proc>/sys/kernel/hung_task_panic` and `timeout_secs` to
/// `hung_task_timeout_secs`. A kernel without hung-task detection has
/// neither file: nothing to relax. Returns what it changed, for the log.
pub fn relax_hung_task_panic(proc_root: &Path, timeout_secs: u32) -> Result<String, String> {
    let k = proc_root.join("sys/kernel");
    let panic = k.join("hung_task_panic");
    if !panic.exists() {
        return Ok("no hung-task detection in this kernel".into());
    }
    std::fs::write(&panic, "0\n").map_err(|e| format!("writing {}: {e}", panic.display()))?;
    let timeout = k.join("hung_task_timeout_secs");
    std::fs::write(&timeout, format!("{timeout_secs}\n"))
        .map_err(|e| format!("writing {}: {e}", timeout.display()))?;
    Ok(format!(
        "hung tasks no longer panic; reported after {timeout_secs} s"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_off_and_timeout_raised() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("sys/kernel");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("hung_task_panic"), "1\n").unwrap();
        std::fs::write(k.join("hung_task_timeout_secs"), "120\n").unwrap();
        let msg = relax_hung_task_panic(d.path(), 600).unwrap();
        assert!(msg.contains("600"), "{msg}");
        assert_eq!(
            std::fs::read_to_string(k.join("hung_task_panic")).unwrap(),
            "0\n"
        );
        assert_eq!(
            std::fs::read_to_string(k.join("hung_task_timeout_secs")).unwrap(),
            "600\n"
        );
    }

    #[test]
    fn a_kernel_without_hung_task_detection_needs_nothing() {
        let d = tempfile::tempdir().unwrap();
        let msg = relax_hung_task_panic(d.path(), 600).unwrap();
        assert!(msg.contains("no hung-task detection"), "{msg}");
        assert!(!d.path().join("sys").exists());
    }
}
