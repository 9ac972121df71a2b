//! Disarm: delete the ramdisk's EFI boot entry.

use crate::efi::vars::EfiVars;
use crate::system::System;

/// Delete the EFI variable `name` (`Boot0007-8be4df61-…`). One that is
/// already gone is fine (an earlier run deleted it), and said so.
pub fn delete<S: System>(sys: &mut S, name: &str) -> Result<String, String> {
    let dir = sys
        .efivarfs()
        .map_err(|e| format!("deleting EFI variable {name}: {e}"))?;
    match EfiVars::new(dir).delete(name) {
        Ok(true) => Ok(format!("deleted EFI variable {name}")),
        Ok(false) => Ok(format!("EFI variable {name} was already gone")),
        Err(e) => Err(e.to_string()),
    }
}
