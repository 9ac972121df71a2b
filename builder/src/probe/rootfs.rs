//! Reading files of the probed system under a root prefix.
//!
//! On a live system the root is `/`; in tests it is a fixture tree. Symlinks
//! are followed *inside* the root: an absolute target such as
//! `/usr/lib/os-release` is re-rooted, so a fixture never reads the host.

use std::path::{Component, Path, PathBuf};

/// Join `rel` (absolute or relative) onto `root`, lexically.
pub fn join(root: &Path, rel: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if out != root => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Resolve `rel` under `root`, following a symlink in the last component up
/// to 16 times, re-rooting absolute targets.
pub fn resolve(root: &Path, rel: &Path) -> PathBuf {
    let mut logical = PathBuf::from("/").join(rel);
    for _ in 0..16 {
        let p = join(root, &logical);
        match std::fs::read_link(&p) {
            Ok(target) if target.is_absolute() => logical = target,
            Ok(target) => {
                let parent = logical.parent().map(Path::to_path_buf).unwrap_or_default();
                logical = parent.join(target);
            }
            Err(_) => return p,
        }
    }
    join(root, &logical)
}

/// Read a text file under the root, trimmed of surrounding whitespace and
/// NUL bytes (device-tree strings end in NUL). `None` when absent or empty.
pub fn read_trimmed(root: &Path, rel: &str) -> Option<String> {
    let bytes = std::fs::read(resolve(root, Path::new(rel))).ok()?;
    let s = String::from_utf8_lossy(&bytes);
    let t = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!t.is_empty()).then(|| t.to_string())
}

/// Whether a path exists under the root (after resolving a final symlink).
pub fn exists(root: &Path, rel: &str) -> bool {
    resolve(root, Path::new(rel)).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("usr/lib/os-release"), "ID=debian\n").unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", d.path().join("etc/os-release")).unwrap();
        assert_eq!(
            read_trimmed(d.path(), "/etc/os-release").as_deref(),
            Some("ID=debian")
        );
        std::os::unix::fs::symlink("../usr/lib/os-release", d.path().join("etc/rel")).unwrap();
        assert_eq!(
            read_trimmed(d.path(), "etc/rel").as_deref(),
            Some("ID=debian")
        );
    }

    #[test]
    fn nul_terminated_strings_are_trimmed_and_dotdot_cannot_escape() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model"), b"Raspberry Pi 4 Model B Rev 1.4\0").unwrap();
        assert_eq!(
            read_trimmed(d.path(), "model").as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(
            join(d.path(), Path::new("../../etc/passwd")),
            d.path().join("etc/passwd")
        );
    }
}
