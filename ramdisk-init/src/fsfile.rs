//! Writing one file durably on a mounted filesystem: parents created, mode
//! set, data and directory synced before returning.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Write `bytes` to `root/rel` with permission bits `mode`.
pub fn write_synced(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    let path = root.join(rel.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    // vfat ignores most bits; ext4 keeps them (0600 for secrets).
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    f.sync_all()
        .map_err(|e| format!("syncing {}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_parents_and_sets_the_mode() {
        let d = tempfile::tempdir().unwrap();
        write_synced(
            d.path(),
            "/system-connections/wifi.nmconnection",
            b"x",
            0o600,
        )
        .unwrap();
        let p = d.path().join("system-connections/wifi.nmconnection");
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_synced(&p, "below-a-file", b"x", 0o644).unwrap_err();
        assert!(
            e.contains("below-a-file") || e.contains("wifi.nmconnection"),
            "{e}"
        );
    }
}
