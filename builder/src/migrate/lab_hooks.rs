//! Lab-only hooks of stage 1, set by `MIGRD_TEST_HOOK` (the lab's
//! scenarios use them; nothing else sets it): damage the image or the
//! built ramdisk at a chosen moment, pause between the arming's journaled
//! changes, and the stage-2 hooks the plan carries (`exit-after=`,
//! `hang-at=`, `wedge-at=`).

use anyhow::Result;
use migrd_init::plan::TestHooks;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Environment variable for lab-only hooks (`exit-after=plan`).
pub const TEST_HOOK_ENV: &str = "MIGRD_TEST_HOOK";

/// Lab-only stage 1 hook: flip one byte of the built ramdisk before it is
/// armed, standing for a payload damaged between stage 1 and stage 2 (the
/// kexec strategy reads the ramdisk when it loads it, so the lab cannot
/// damage it afterwards as it does with the copy on /boot).
pub const CORRUPT_HOOK: &str = "corrupt-ramdisk";

/// Lab-only stage 1 hook: flip one byte near the end of the image file
/// after the checks decoded and hashed it and before the ramdisk packs it,
/// standing for an image that changes under migrd (a second download, a
/// failing disk). The plan keeps the hash of what was checked, so stage 2
/// refuses the packed copy at verify, before the point of no return.
pub const CORRUPT_IMAGE_HOOK: &str = "corrupt-image-after-check";

/// Flip the byte 1000 bytes before the end of `path` (inside the payload,
/// the stored segment's last file).
pub(super) fn corrupt_for_lab(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let at = f.metadata()?.len().saturating_sub(1000);
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut b)?;
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&b)?;
    f.sync_all()?;
    log::warn!(
        "{TEST_HOOK_ENV}={CORRUPT_HOOK}: flipped byte {at} of {}",
        path.display()
    );
    Ok(())
}

/// The stage-2 hooks the plan carries, from `MIGRD_TEST_HOOK`.
pub(super) fn test_hooks() -> TestHooks {
    match std::env::var(TEST_HOOK_ENV) {
        Ok(v) => TestHooks {
            exit_after: v.strip_prefix("exit-after=").map(str::to_string),
            hang_at: v.strip_prefix("hang-at=").map(str::to_string),
            wedge_at: v.strip_prefix("wedge-at=").map(str::to_string),
        },
        Err(_) => TestHooks::default(),
    }
}

/// Lab-only stage 1 hook: after each journaled change of the arming, say
/// so on stderr ("change N of M applied") and wait until the lab creates
/// `/run/migrd-lab-continue-N` (at most ten minutes), so that it can copy
/// the disk as a power cut at that moment would leave it.
pub const PAUSE_HOOK: &str = "pause-after-changes";

/// The [`PAUSE_HOOK`] pause after change `n` of `of`, if the hook is set.
pub(super) fn pause_for_lab(n: usize, of: usize) {
    if std::env::var(TEST_HOOK_ENV).as_deref() != Ok(PAUSE_HOOK) {
        return;
    }
    eprintln!("{TEST_HOOK_ENV}={PAUSE_HOOK}: change {n} of {of} applied");
    let go = PathBuf::from(format!("/run/migrd-lab-continue-{n}"));
    let t0 = Instant::now();
    while !go.exists() && t0.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(100));
    }
}
