//! Choosing a balenaOS version: `default` (newest final), an exact version
//! with build metadata (`5.1.20+rev1`), or a semver range (`~5.1`, `^5`).

use semver::{Version, VersionReq};
use std::cmp::Ordering;

/// Why no version could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The request is not a version or range.
    #[error("-v/--version {0:?} is not 'default', a version such as 5.1.20+rev1, or a range such as ~5.1 or ^5")]
    BadRequest(String),
    /// Nothing published matches.
    #[error(
        "no published balenaOS version for {slug} matches {wanted:?} (newest available: {newest})"
    )]
    NoMatch {
        /// Device type.
        slug: String,
        /// The request.
        wanted: String,
        /// Newest published version, or "none".
        newest: String,
    },
}

/// The numeric part of a `revN` build tag (so `rev10` sorts after `rev9`).
fn rev(v: &Version) -> u64 {
    v.build
        .as_str()
        .split('.')
        .find_map(|p| p.strip_prefix("rev").and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Newest first: by semver precedence, then by `revN`.
fn newest_first(a: &Version, b: &Version) -> Ordering {
    b.cmp_precedence(a).then_with(|| rev(b).cmp(&rev(a)))
}

/// Pick the version to download from the published `raw_version`s.
pub fn select(published: &[String], wanted: &str, slug: &str) -> Result<String, VersionError> {
    let mut vs: Vec<(Version, &String)> = published
        .iter()
        .filter_map(|s| {
            Version::parse(s.trim().trim_start_matches('v'))
                .ok()
                .map(|v| (v, s))
        })
        .collect();
    vs.sort_by(|a, b| newest_first(&a.0, &b.0));
    let finals = || vs.iter().filter(|(v, _)| v.pre.is_empty());
    let wanted = wanted.trim();
    let hit = if wanted.is_empty() || wanted == "default" || wanted == "latest" {
        finals().next()
    } else if wanted.starts_with(['^', '~', '>', '<', '=']) || wanted.contains('*') {
        let req = VersionReq::parse(wanted).map_err(|_| VersionError::BadRequest(wanted.into()))?;
        finals().find(|(v, _)| req.matches(v))
    } else {
        let want = Version::parse(wanted.trim_start_matches('v'))
            .map_err(|_| VersionError::BadRequest(wanted.into()))?;
        vs.iter().find(|(v, _)| *v == want)
    };
    hit.map(|(_, s)| (*s).clone())
        .ok_or_else(|| VersionError::NoMatch {
            slug: slug.into(),
            wanted: wanted.into(),
            newest: finals().next().map_or("none".into(), |(_, s)| (*s).clone()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<String> {
        [
            "6.0.13",
            "5.1.20+rev1",
            "5.1.20+rev10",
            "5.1.20+rev9",
            "5.1.0",
            "5.0.1+rev2",
            "4.0.23",
            "6.1.0-beta.1",
            "garbage",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn default_is_newest_final() {
        assert_eq!(select(&list(), "default", "x").unwrap(), "6.0.13");
    }

    #[test]
    fn exact_with_build_metadata() {
        assert_eq!(select(&list(), "5.1.20+rev1", "x").unwrap(), "5.1.20+rev1");
        assert!(matches!(
            select(&list(), "5.1.21", "x"),
            Err(VersionError::NoMatch { .. })
        ));
    }

    #[test]
    fn ranges_take_the_newest_match_with_numeric_revs() {
        assert_eq!(select(&list(), "~5.1", "x").unwrap(), "5.1.20+rev10");
        assert_eq!(select(&list(), "^5", "x").unwrap(), "5.1.20+rev10");
        assert_eq!(select(&list(), "^4", "x").unwrap(), "4.0.23");
        assert_eq!(
            select(&list(), "^6", "x").unwrap(),
            "6.0.13",
            "pre-releases skipped"
        );
    }

    #[test]
    fn bad_requests_and_empty_lists() {
        assert!(matches!(
            select(&list(), "five", "x"),
            Err(VersionError::BadRequest(_))
        ));
        let e = select(&[], "default", "raspberrypi4-64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("raspberrypi4-64") && e.contains("none"), "{e}");
    }
}
