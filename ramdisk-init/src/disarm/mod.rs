//! The disarm step: undo what stage 1 changed to get this ramdisk booted
//! once, before anything else can fail, so that every later failure (and
//! every reset) boots the old OS.
//!
//! It runs after the modules are loaded (restoring a file needs the disk's
//! driver and its filesystem) and before the target disk is looked for. One
//! file per action.

mod efi_var;
mod restore_file;

use crate::events::{EventLog, Status, Step};
use crate::plan::DisarmAction;
use crate::system::System;
use std::io::Write;

/// Run every disarm action in order; the first failure stops and is
/// returned with the action it belongs to.
pub fn run<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    actions: &[DisarmAction],
) -> Result<(), String> {
    if actions.is_empty() {
        log.note(
            Step::Disarm,
            Status::Skip,
            "boot path clears itself; nothing to restore",
        );
        return Ok(());
    }
    for a in actions {
        let done = match a {
            DisarmAction::RestoreFile {
                partuuid,
                fstype,
                path,
                original,
            } => restore_file::run(sys, partuuid, fstype, path, original),
            DisarmAction::DeleteEfiVar { name } => efi_var::delete(sys, name),
        }?;
        log.note(Step::Disarm, Status::Ok, &done);
    }
    Ok(())
}
