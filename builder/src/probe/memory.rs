//! Memory, from `/proc/meminfo`.

use super::rootfs;
use serde::Serialize;
use std::path::Path;

/// RAM totals in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable` (or `MemFree` on kernels before 3.14).
    pub available: u64,
}

/// Parse meminfo text (values in kB).
pub fn parse(text: &str) -> Memory {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Memory {
        total: get("MemTotal").unwrap_or(0),
        available: get("MemAvailable").or_else(|| get("MemFree")).unwrap_or(0),
    }
}

/// Read `<root>/proc/meminfo`.
pub fn probe(root: &Path) -> Memory {
    rootfs::read_trimmed(root, "proc/meminfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_and_falls_back_to_memfree() {
        let m = parse("MemTotal:        3884376 kB\nMemFree:          200000 kB\nMemAvailable:    3000000 kB\n");
        assert_eq!(m.total, 3884376 * 1024);
        assert_eq!(m.available, 3000000 * 1024);
        assert_eq!(
            parse("MemTotal: 100 kB\nMemFree: 50 kB\n").available,
            50 * 1024
        );
        assert_eq!(parse("").total, 0);
    }
}
