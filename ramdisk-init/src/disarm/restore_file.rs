//! Disarm: put a file on a partition back to its original bytes (the
//! Raspberry Pi config.txt edit). The partition is found by PARTUUID,
//! mounted, and the file replaced atomically: the bytes go to a temporary
//! file beside it, which is synced and renamed over the file, then the
//! folder is synced — a reset at any moment leaves either the armed or the
//! original file, never a torn one. The result is read back before the
//! partition is unmounted.

use crate::partfind;
use crate::system::System;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How long to wait for the partition to appear (slow SD/USB enumeration).
pub const WAIT_SECS: u32 = 30;

/// Where the partition is mounted, under the ramdisk root.
const MOUNT_AT: &str = "mnt/disarm";

/// Replace `dir/rel` with `bytes`: temporary file, fsync, rename, fsync of
/// the folder, read back.
pub fn replace_synced(dir: &Path, rel: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(rel.trim_start_matches('/'));
    let parent = path
        .parent()
        .ok_or_else(|| format!("{}: no parent folder", path.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    // 8.3-safe is not needed: Linux vfat stores long names.
    let tmp = parent.join(format!(".{}.migrd-tmp", name.to_string_lossy()));
    let mut f = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.sync_all()
        .map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &path)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))?;
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing folder {}: {e}", parent.display()))?;
    match std::fs::read(&path) {
        Ok(back) if back == bytes => Ok(()),
        Ok(_) => Err(format!("{} reads back different bytes", path.display())),
        Err(e) => Err(format!("reading back {}: {e}", path.display())),
    }
}

/// Restore `path` on the filesystem of partition `partuuid` from the saved
/// copy at `original` inside the ramdisk.
pub fn run<S: System>(
    sys: &mut S,
    partuuid: &str,
    fstype: &str,
    path: &str,
    original: &str,
) -> Result<String, String> {
    let saved = sys.payload_root().join(original.trim_start_matches('/'));
    let bytes = std::fs::read(&saved)
        .map_err(|e| format!("reading the saved original {original} of {path}: {e}"))?;
    let mut tries = 0;
    let dev = loop {
        match partfind::by_partuuid(sys, partuuid) {
            Ok(dev) => break dev,
            Err(_) if tries < WAIT_SECS => {
                tries += 1;
                sys.sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(format!("restoring {path}: {e} (waited {WAIT_SECS} s)")),
        }
    };
    let mnt = sys.payload_root().join(MOUNT_AT);
    std::fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
    sys.mount(&dev, fstype, &mnt)
        .map_err(|e| format!("restoring {path}: mounting {}: {e}", dev.display()))?;
    let res = replace_synced(&mnt, path, &bytes);
    let un = sys.umount(&mnt);
    res.map_err(|e| format!("restoring {path} on {}: {e}", dev.display()))?;
    un.map_err(|e| format!("restoring {path}: unmounting {}: {e}", dev.display()))?;
    Ok(format!(
        "restored {path} on {} (PARTUUID {partuuid}, {} bytes)",
        dev.display(),
        bytes.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.txt"), b"armed\n").unwrap();
        replace_synced(d.path(), "config.txt", b"original\n").unwrap();
        assert_eq!(
            std::fs::read(d.path().join("config.txt")).unwrap(),
            b"original\n"
        );
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.txt"]);
        let e = replace_synced(&d.path().join("missing-dir"), "config.txt", b"x").unwrap_err();
        assert!(e.contains("missing-dir"), "{e}");
    }
}
