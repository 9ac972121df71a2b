//! Disarm: delete the ramdisk's EFI boot entry.

use crate::system::System;

/// Delete the EFI variable `name` (`Boot0007-8be4df61-…`).
pub fn delete<S: System>(_sys: &mut S, name: &str) -> Result<String, String> {
    Err(format!(
        "deleting EFI variable {name}: this migrd-init cannot delete EFI variables yet"
    ))
}
