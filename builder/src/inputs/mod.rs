//! Inputs: config.json, the image, network profiles, hostname, backup.
//! Reading them changes nothing; the `write_*` helpers are called by the
//! migrate flow only after every check has passed.

pub mod backup;
pub mod config_json;
pub mod file_stamp;
pub mod gather;
pub mod image_check;
pub mod image_decode;
pub mod network;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Create (or truncate) a file readable by its owner only (0600).
pub fn create_secret_file(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its old mode through open(2): force it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Write a file holding secrets (config.json, keyfiles) with mode 0600.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = create_secret_file(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Create a directory (and parents) only its owner can enter (0700).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_even_when_they_existed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret_file(&p, b"{}").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    }
}
