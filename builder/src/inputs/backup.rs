//! Backup of volumes, in takeover's YAML format:
//!
//! ```yaml
//! - volume: "app-data"
//!   items:
//!     - source: /home/pi/app/data
//!       target: "data"          # optional sub-directory in the volume
//!       filter: '.*\.db$'       # optional regex on the full source path
//! ```
//!
//! The archive is `backup.tgz` whose top-level directories are the volume
//! names; the balena supervisor restores matching volumes from it. Written
//! with the `tar` and `flate2` crates (takeover's default shelled out to
//! `tar` and wrote into the current directory rather than the work dir).

use flate2::write::GzEncoder;
use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One item of a volume.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// File or directory to back up.
    pub source: String,
    /// Sub-path inside the volume (default: the volume root for a directory,
    /// the file name for a file).
    pub target: Option<String>,
    /// Regex over the full source path of each file.
    pub filter: Option<String>,
}

/// One volume.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name (the top-level directory in the archive).
    pub volume: String,
    /// Items.
    pub items: Vec<Item>,
}

/// Errors, each naming the backup config and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Unreadable config.
    #[error("cannot read backup config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// Not the expected YAML.
    #[error("backup config {0} is not a list of '- volume: NAME / items: [{{source, target?, filter?}}]': {1}")]
    Parse(PathBuf, String),
    /// Bad volume, filter or missing source.
    #[error("backup config {0}: {1}")]
    Item(PathBuf, String),
    /// Writing the archive failed.
    #[error("writing backup archive {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// A parsed backup definition.
#[derive(Clone, Debug)]
pub struct BackupSpec {
    /// The YAML file.
    pub path: PathBuf,
    /// Volumes.
    pub volumes: Vec<Volume>,
}

/// One file to archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File on the device.
    pub source: PathBuf,
    /// Path in the archive (`volume/...`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

fn clean_rel(s: &str) -> String {
    s.split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect::<Vec<_>>()
        .join("/")
}

impl BackupSpec {
    /// Parse YAML text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BackupError> {
        let volumes: Vec<Volume> = serde_yaml::from_str(text)
            .map_err(|e| BackupError::Parse(path.into(), e.to_string()))?;
        for v in &volumes {
            let n = v.volume.trim();
            if n.is_empty() || n.contains('/') || n == "." || n == ".." {
                return Err(BackupError::Item(
                    path.into(),
                    format!(
                        "volume name {:?} must be a single non-empty path component",
                        v.volume
                    ),
                ));
            }
        }
        Ok(BackupSpec {
            path: path.into(),
            volumes,
        })
    }

    /// Read a YAML file.
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let text = std::fs::read_to_string(path).map_err(|e| BackupError::Read(path.into(), e))?;
        Self::parse(&text, path)
    }

    /// The files to archive, sorted by archive name. Fails on a missing
    /// source or a bad filter.
    pub fn entries(&self) -> Result<Vec<Entry>, BackupError> {
        let err = |m: String| BackupError::Item(self.path.clone(), m);
        let mut out = Vec::new();
        for v in &self.volumes {
            let vol = clean_rel(&v.volume);
            for it in &v.items {
                let filter = it
                    .filter
                    .as_deref()
                    .map(Regex::new)
                    .transpose()
                    .map_err(|e| err(format!("filter {:?}: {e}", it.filter)))?;
                let src = Path::new(&it.source);
                let meta = std::fs::metadata(src).map_err(|e| {
                    err(format!(
                        "source {} of volume {:?}: {e}",
                        it.source, v.volume
                    ))
                })?;
                let target = it.target.as_deref().map(clean_rel).unwrap_or_default();
                if meta.is_file() {
                    let name = if target.is_empty() {
                        src.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    } else {
                        target
                    };
                    if filter.as_ref().map_or(true, |f| f.is_match(&it.source)) {
                        out.push(Entry {
                            source: src.into(),
                            name: format!("{vol}/{name}"),
                            size: meta.len(),
                        });
                    }
                    continue;
                }
                for e in walkdir::WalkDir::new(src)
                    .follow_links(true)
                    .sort_by_file_name()
                {
                    let e = e.map_err(|e| err(format!("reading {}: {e}", it.source)))?;
                    if !e.file_type().is_file() {
                        continue;
                    }
                    let full = e.path().to_string_lossy().into_owned();
                    if filter.as_ref().is_some_and(|f| !f.is_match(&full)) {
                        continue;
                    }
                    let rel = e.path().strip_prefix(src).unwrap_or(e.path());
                    let rel = clean_rel(&rel.to_string_lossy());
                    let name = [vol.as_str(), target.as_str(), rel.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push(Entry {
                        source: e.path().into(),
                        name,
                        size: e.metadata().map(|m| m.len()).unwrap_or(0),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    /// Total bytes of the files (an upper bound for the archive, which is
    /// compressed; used in the memory budget before the archive exists).
    pub fn estimate_size(&self) -> Result<u64, BackupError> {
        Ok(self.entries()?.iter().map(|e| e.size).sum::<u64>() + 64 * 1024)
    }

    /// Write `backup.tgz` to `out` (0600: backups can hold secrets).
    /// Returns its size.
    pub fn write_tgz(&self, out: &Path) -> Result<u64, BackupError> {
        let werr = |e: std::io::Error| BackupError::Write(out.into(), e);
        let entries = self.entries()?;
        let f = crate::inputs::create_secret_file(out).map_err(werr)?;
        let mut tar = tar::Builder::new(GzEncoder::new(f, flate2::Compression::default()));
        tar.follow_symlinks(true);
        let mut dirs: Vec<String> = self.volumes.iter().map(|v| clean_rel(&v.volume)).collect();
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(&mut h, format!("{d}/"), std::io::empty())
                .map_err(werr)?;
        }
        for e in &entries {
            tar.append_path_with_name(&e.source, &e.name)
                .map_err(werr)?;
        }
        let gz = tar.into_inner().map_err(werr)?;
        let f = gz.finish().map_err(werr)?;
        f.sync_all().map_err(werr)?;
        Ok(f.metadata().map_err(werr)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("app/data/sub")).unwrap();
        std::fs::write(p.join("app/data/a.db"), "A").unwrap();
        std::fs::write(p.join("app/data/sub/b.db"), "BB").unwrap();
        std::fs::write(p.join("app/data/notes.txt"), "N").unwrap();
        std::fs::write(p.join("app/settings.ini"), "S").unwrap();
        d
    }

    fn names_in(tgz: &Path) -> Vec<String> {
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(tgz).unwrap(),
        ));
        let mut v: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn volumes_are_top_level_with_target_and_filter() {
        let d = tree();
        let p = d.path().display();
        let yaml = format!(
            "- volume: \"data vol\"\n  items:\n  - source: {p}/app/data\n    target: \"db\"\n    filter: '.*\\.db$'\n- volume: cfg\n  items:\n  - source: {p}/app/settings.ini\n  - source: {p}/app/data/notes.txt\n    target: n/notes\n"
        );
        let spec = BackupSpec::parse(&yaml, Path::new("b.yml")).unwrap();
        let out = d.path().join("backup.tgz");
        let size = spec.write_tgz(&out).unwrap();
        assert!(size > 0);
        assert_eq!(
            names_in(&out),
            [
                "cfg/",
                "cfg/n/notes",
                "cfg/settings.ini",
                "data vol/",
                "data vol/db/a.db",
                "data vol/db/sub/b.db"
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&out).unwrap(),
        ));
        let mut e = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().ends_with("b.db"))
            .unwrap();
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "BB");
    }

    #[test]
    fn bad_configs_are_named() {
        let e = BackupSpec::parse("- item: x\n", Path::new("/etc/b.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/b.yml") && e.contains("volume"), "{e}");
        let e = BackupSpec::parse("- volume: ../x\n  items: []\n", Path::new("b.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("single"), "{e}");
        let s = BackupSpec::parse(
            "- volume: v\n  items:\n  - source: /nonexistent/zz\n",
            Path::new("b.yml"),
        )
        .unwrap();
        assert!(s
            .entries()
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/zz"));
        let d = tree();
        let s = BackupSpec::parse(
            &format!(
                "- volume: v\n  items:\n  - source: {}\n    filter: '('\n",
                d.path().display()
            ),
            Path::new("b.yml"),
        )
        .unwrap();
        assert!(s.entries().unwrap_err().to_string().contains("filter"));
    }
}
