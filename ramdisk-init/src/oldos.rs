//! Leaving word for the old OS: when stage 2 goes back (a failure before
//! the point of no return, or a pretend run), it writes a status file onto
//! the old OS's boot filesystem, where `migrd status` reads it.

use crate::events::EventLog;
use crate::fsfile::write_synced;
use crate::partfind;
use crate::plan::StatusLocation;
use crate::system::System;
use serde::Serialize;
use std::io::Write;

/// Outcome recorded for the old OS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A step failed; nothing was written to the target.
    Fallback,
    /// A pretend run passed every step up to the point of no return.
    PretendOk,
    /// The ramdisk reached its disks and went on: the last word when it
    /// stops without another (a power cut, a reset, a hang its guard
    /// rebooted).
    Started,
}

#[derive(Serialize)]
struct StatusFile<'a> {
    migrd_status: u32,
    outcome: Outcome,
    step: &'a str,
    reason: &'a str,
    events: Vec<serde_json::Value>,
}

/// Write `bytes` to `rel` on the filesystem with UUID `uuid`, mounting it
/// for the time of the write.
pub fn write_on<S: System>(
    sys: &mut S,
    uuid: &str,
    fstype: &str,
    rel: &str,
    bytes: &[u8],
) -> Result<String, String> {
    let found = wait_for(sys, uuid)?;
    let mnt = sys.payload_root().join("mnt/oldos");
    std::fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
    sys.mount(&found.dev, fstype, &mnt)?;
    let res = write_synced(&mnt, rel, bytes, 0o644);
    let un = sys.umount(&mnt);
    res?;
    un?;
    Ok(format!("{rel} on {}", found.dev.display()))
}

/// How long to wait for the old OS's filesystem, in 250 ms polls: a run
/// that failed early (at the modules step) may not have seen its disks
/// appear yet.
const WAIT_POLLS: u32 = 40;

/// The filesystem with UUID `uuid`, waiting up to 10 s for it to appear.
fn wait_for<S: System>(sys: &mut S, uuid: &str) -> Result<partfind::Found, String> {
    let mut poll = 0;
    loop {
        poll += 1;
        match partfind::by_uuid(sys, uuid) {
            Ok(f) => return Ok(f),
            Err(e) if poll >= WAIT_POLLS => return Err(e),
            Err(_) => sys.sleep(std::time::Duration::from_millis(250)),
        }
    }
}

/// Write the status file. Errors are returned for the event log; they never
/// stop the fallback.
pub fn record<S: System, W: Write>(
    sys: &mut S,
    log: &EventLog<W>,
    at: &StatusLocation,
    outcome: Outcome,
    step: &str,
    reason: &str,
) -> Result<String, String> {
    let body = StatusFile {
        migrd_status: 1,
        outcome,
        step,
        reason,
        events: log
            .history
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    };
    let text = serde_json::to_string_pretty(&body).map_err(|e| e.to_string())?;
    write_on(sys, &at.fs_uuid, &at.fstype, &at.path, text.as_bytes())
}

/// Where stage 2's log goes on the log device.
pub const DEVICE_LOG_PATH: &str = "migrd/stage2.log";

/// Copy the whole event log to the log device (takeover's `-l`).
pub fn copy_log<S: System, W: Write>(
    sys: &mut S,
    log: &EventLog<W>,
    at: &StatusLocation,
) -> Result<String, String> {
    let text = log.history.join("\n") + "\n";
    write_on(
        sys,
        &at.fs_uuid,
        &at.fstype,
        DEVICE_LOG_PATH,
        text.as_bytes(),
    )
}
