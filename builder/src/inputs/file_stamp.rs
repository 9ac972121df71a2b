//! What tells a file changed without reading it again: its size,
//! modification time, inode and device. Taken when the image is checked,
//! compared before the image is read a second time (a zip's hash comes from
//! a second read, [`super::image_check`]), so an image that changed in
//! between is refused rather than hashed as if it were the checked one.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// A file's identity and version, as the filesystem reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
    dev: u64,
}

impl FileStamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            ino: m.ino(),
            dev: m.dev(),
        })
    }

    /// Whether the file at `path` still has this stamp (a file that cannot
    /// be read has not).
    pub fn still(&self, path: &Path) -> bool {
        FileStamp::of(path).is_ok_and(|now| now == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn a_rewrite_a_replacement_or_a_removal_changes_the_stamp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img.zip");
        std::fs::write(&p, b"one").unwrap();
        let s = FileStamp::of(&p).unwrap();
        assert!(s.still(&p));

        // Same size, written in place, later time.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        (&f).write_all(b"two").unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        assert!(!s.still(&p));

        // Replaced by another file with the same size and time.
        let s = FileStamp::of(&p).unwrap();
        let q = d.path().join("new");
        std::fs::write(&q, b"six").unwrap();
        let t = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&q)
            .unwrap()
            .set_modified(t)
            .unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert!(!s.still(&p));

        std::fs::remove_file(&p).unwrap();
        assert!(!s.still(&p));
    }
}
