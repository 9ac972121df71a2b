//! Disarm: put a file on a partition back to its original bytes.

use crate::system::System;

/// Restore `path` on the filesystem of partition `partuuid` from the saved
/// copy at `original` inside the ramdisk.
pub fn run<S: System>(
    _sys: &mut S,
    partuuid: &str,
    _fstype: &str,
    path: &str,
    _original: &str,
) -> Result<String, String> {
    Err(format!(
        "restoring {path} on partition {partuuid}: this migrd-init cannot restore files yet"
    ))
}
