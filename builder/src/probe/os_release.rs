//! `/etc/os-release` and whether migrd supports migrating away from it.
//!
//! Support is decided by `ID` and a `VERSION_ID` range from
//! `data/os-support.json`, never by exact `PRETTY_NAME` strings (takeover's
//! table rejected "Ubuntu 20.04.6 LTS" and every Raspberry Pi OS after 10).

use super::device_types::{os_support, OsEntry};
use super::rootfs;
use serde::Serialize;
use std::cmp::Ordering;
use std::path::Path;

/// The fields of os-release migrd uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `raspbian`, `ubuntu`, `balena-os`).
    pub id: String,
    /// `ID_LIKE`, split on spaces.
    pub id_like: Vec<String>,
    /// `VERSION_ID` (`12`, `22.04`), if set.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`, or `UBUNTU_CODENAME`.
    pub codename: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// Parse os-release text (shell-style `KEY=value`, optionally quoted).
pub fn parse(text: &str) -> OsRelease {
    let mut r = OsRelease::default();
    let mut ubuntu_codename = None;
    for line in text.lines() {
        let line = line.trim();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.starts_with('#') {
            continue;
        }
        let v = unquote(v.trim());
        match k.trim() {
            "ID" => r.id = v.to_ascii_lowercase(),
            "ID_LIKE" => r.id_like = v.split_whitespace().map(str::to_ascii_lowercase).collect(),
            "VERSION_ID" => r.version_id = Some(v),
            "VERSION_CODENAME" if !v.is_empty() => r.codename = Some(v),
            "UBUNTU_CODENAME" if !v.is_empty() => ubuntu_codename = Some(v),
            "PRETTY_NAME" => r.pretty_name = Some(v),
            _ => {}
        }
    }
    if r.codename.is_none() {
        r.codename = ubuntu_codename;
    }
    if r.id.is_empty() {
        r.id = "linux".into(); // the os-release(5) default
    }
    r
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v);
    v.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Read `/etc/os-release` (falling back to `/usr/lib/os-release`).
pub fn read(root: &Path) -> Option<OsRelease> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(rootfs::resolve(root, Path::new(p))).ok())
        .map(|t| parse(&t))
}

/// Whether migrd supports this OS as a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Support {
    /// In the table by `ID` and `VERSION_ID`.
    Supported {
        /// The table's name for it.
        name: String,
    },
    /// A derivative (`ID_LIKE`) whose codename is a supported parent release.
    Derivative {
        /// The parent's name.
        parent: String,
        /// The parent release it is based on.
        parent_version: String,
    },
    /// Not supported; why.
    Unsupported {
        /// The reason, for the operator.
        reason: String,
    },
}

/// Compare dotted numeric versions (`22.04` vs `16.04`; `12` vs `9`);
/// build suffixes (`+rev1`) and non-numeric parts compare as 0.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<u64> {
        s.split(['+', '-', '~'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let o = pa.get(i).unwrap_or(&0).cmp(pb.get(i).unwrap_or(&0));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn in_range(e: &OsEntry, v: &str) -> bool {
    compare_versions(v, &e.min) != Ordering::Less
        && compare_versions(v, &e.max) != Ordering::Greater
}

/// Decide support from the embedded table.
pub fn support(os: &OsRelease) -> Support {
    let table = os_support();
    if let Some(e) = table.iter().find(|e| e.id == os.id) {
        let Some(v) = os.version_id.as_deref().or_else(|| {
            os.codename
                .as_deref()
                .and_then(|c| e.codenames.get(c).map(String::as_str))
        }) else {
            return Support::Unsupported {
                reason: format!(
                    "{} without VERSION_ID or a known codename (a testing/rolling release?)",
                    e.name
                ),
            };
        };
        return if in_range(e, v) {
            Support::Supported {
                name: format!("{} {v}", e.name),
            }
        } else {
            Support::Unsupported {
                reason: format!(
                    "{} {v} is outside the tested range {}–{}",
                    e.name, e.min, e.max
                ),
            }
        };
    }
    for parent in &os.id_like {
        let Some(e) = table.iter().find(|e| &e.id == parent) else {
            continue;
        };
        if let Some(pv) = os.codename.as_deref().and_then(|c| e.codenames.get(c)) {
            if in_range(e, pv) {
                return Support::Derivative {
                    parent: e.name.clone(),
                    parent_version: pv.clone(),
                };
            }
        }
        return Support::Unsupported {
            reason: format!(
                "'{}' is like {} but its codename {:?} is not a supported {} release",
                os.id, parent, os.codename, e.name
            ),
        };
    }
    Support::Unsupported {
        reason: format!(
            "'{}' is not a supported source OS (Raspberry Pi OS, Debian, Ubuntu, balenaOS)",
            os.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup(text: &str) -> Support {
        support(&parse(text))
    }

    #[test]
    fn raspberry_pi_os_and_debian_ranges() {
        let bookworm32 = "PRETTY_NAME=\"Raspbian GNU/Linux 12 (bookworm)\"\nNAME=\"Raspbian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=raspbian\nID_LIKE=debian\n";
        assert!(matches!(sup(bookworm32), Support::Supported { .. }));
        let bookworm64 =
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert!(matches!(sup(bookworm64), Support::Supported { .. }));
        assert!(matches!(
            sup("ID=debian\nVERSION_ID=\"8\"\n"),
            Support::Unsupported { .. }
        ));
        assert!(matches!(
            sup("ID=debian\nVERSION_ID=\"13\"\n"),
            Support::Supported { .. }
        ));
        assert!(matches!(
            sup("ID=raspbian\nVERSION_ID=\"13\"\n"),
            Support::Unsupported { .. }
        ));
    }

    #[test]
    fn ubuntu_point_releases_are_accepted_by_range_not_string() {
        let u = "NAME=\"Ubuntu\"\nVERSION=\"20.04.6 LTS (Focal Fossa)\"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 20.04.6 LTS\"\nVERSION_ID=\"20.04\"\nUBUNTU_CODENAME=focal\n";
        assert!(matches!(sup(u), Support::Supported { .. }));
        assert!(matches!(
            sup("ID=ubuntu\nVERSION_ID=\"24.04\"\n"),
            Support::Supported { .. }
        ));
        assert!(matches!(
            sup("ID=ubuntu\nVERSION_ID=\"24.10\"\n"),
            Support::Unsupported { .. }
        ));
        assert!(matches!(
            sup("ID=ubuntu\nVERSION_ID=\"14.04\"\n"),
            Support::Unsupported { .. }
        ));
        assert_eq!(parse(u).codename.as_deref(), Some("focal"));
    }

    #[test]
    fn derivatives_by_codename_and_others_refused() {
        let mint =
            "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"21.2\"\nUBUNTU_CODENAME=jammy\n";
        assert_eq!(
            sup(mint),
            Support::Derivative {
                parent: "Ubuntu".into(),
                parent_version: "22.04".into()
            }
        );
        let devuan = "ID=devuan\nID_LIKE=debian\nVERSION_ID=\"4.0\"\nVERSION_CODENAME=chimaera\n";
        assert!(matches!(sup(devuan), Support::Unsupported { .. }));
        assert!(matches!(sup("ID=arch\n"), Support::Unsupported { .. }));
        assert!(matches!(
            sup("ID=debian\nVERSION_CODENAME=trixie\n"),
            Support::Supported { .. }
        ));
        assert!(matches!(
            sup("ID=debian\nPRETTY_NAME=\"Debian sid\"\n"),
            Support::Unsupported { .. }
        ));
    }

    #[test]
    fn balenaos_and_version_comparison() {
        assert!(matches!(
            sup("ID=\"balena-os\"\nVERSION_ID=\"5.1.20+rev1\"\n"),
            Support::Supported { .. }
        ));
        assert_eq!(compare_versions("22.04", "16.04"), Ordering::Greater);
        assert_eq!(compare_versions("9", "12"), Ordering::Less);
        assert_eq!(compare_versions("12.0", "12"), Ordering::Equal);
    }
}
