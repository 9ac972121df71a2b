//! The board → balena device-type table (`builder/data/device-types.json`)
//! and the supported-OS table (`builder/data/os-support.json`), embedded at
//! build time. They are data, not code: add a board by editing the JSON.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const DEVICE_TYPES: &str = include_str!("../../data/device-types.json");
const OS_SUPPORT: &str = include_str!("../../data/os-support.json");

/// One board family entry.
#[derive(Clone, Debug, Deserialize)]
pub struct BoardEntry {
    /// Stable id (`rpi-4`, `beaglebone-black`, `generic-x86_64`).
    pub id: String,
    /// Family: `rpi`, `beaglebone`, `jetson`, `x86`.
    pub family: String,
    /// Where the model string comes from: `device-tree` or `dmi`.
    pub source: String,
    /// Human name.
    pub name: String,
    /// Regex over the model string.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Kernel architecture family the board runs (`armv6`, `armv7`, `aarch64`, `x86_64`).
    pub arch: String,
    /// Compatible balena device-type slugs, best first.
    pub slugs: Vec<String>,
    /// Whether the firmware supports Raspberry Pi tryboot.
    #[serde(default)]
    pub tryboot: bool,
    /// The running kernels (`uname -m`) the entry applies to; empty for
    /// any. For a model string two machines share: QEMU's `virt` machine
    /// is `linux,dummy-virt` with a 32-bit and a 64-bit CPU alike.
    #[serde(default)]
    pub kernels: Vec<String>,
}

/// Facts about a balena device-type slug.
#[derive(Clone, Debug, Deserialize)]
pub struct SlugEntry {
    /// balena architecture name (`rpi`, `armv7hf`, `aarch64`, `amd64`).
    pub arch: String,
    /// Whether the API serves a flasher image by default (so the raw image
    /// must be asked for).
    #[serde(default)]
    pub flasher: bool,
}

/// The device-type table.
#[derive(Clone, Debug, Deserialize)]
pub struct DeviceTypes {
    /// Boards, tried in order.
    pub boards: Vec<BoardEntry>,
    /// Known slugs.
    pub slugs: BTreeMap<String, SlugEntry>,
    /// Family → kernel modules the board restarts through.
    #[serde(default)]
    pub restart: BTreeMap<String, Vec<String>>,
}

impl DeviceTypes {
    /// The board families that `slug` runs on (`raspberrypi3` → `rpi`).
    pub fn families_of_slug(&self, slug: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .boards
            .iter()
            .filter(|b| b.slugs.iter().any(|s| s == slug))
            .map(|b| b.family.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// One supported source OS.
#[derive(Clone, Debug, Deserialize)]
pub struct OsEntry {
    /// os-release `ID`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Lowest supported `VERSION_ID` (inclusive).
    pub min: String,
    /// Highest supported `VERSION_ID` (inclusive).
    pub max: String,
    /// Release codenames → VERSION_ID, for derivatives.
    #[serde(default)]
    pub codenames: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OsTable {
    os: Vec<OsEntry>,
}

/// The embedded device-type table.
pub fn device_types() -> &'static DeviceTypes {
    static T: OnceLock<DeviceTypes> = OnceLock::new();
    T.get_or_init(|| {
        // The file is checked by a unit test; an unparsable table would
        // only mean "no board known", never a panic.
        serde_json::from_str(DEVICE_TYPES).unwrap_or(DeviceTypes {
            boards: Vec::new(),
            slugs: BTreeMap::new(),
            restart: BTreeMap::new(),
        })
    })
}

/// The embedded supported-OS table.
pub fn os_support() -> &'static [OsEntry] {
    static T: OnceLock<Vec<OsEntry>> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str::<OsTable>(OS_SUPPORT)
            .map(|t| t.os)
            .unwrap_or_default()
    })
}

/// The balena architecture of a slug, if the table knows it.
pub fn slug_arch(slug: &str) -> Option<&'static str> {
    device_types().slugs.get(slug).map(|s| s.arch.as_str())
}

/// Whether the API serves a flasher image for this slug by default.
pub fn slug_is_flasher(slug: &str) -> bool {
    device_types().slugs.get(slug).is_some_and(|s| s.flasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_parse_and_every_board_slug_is_known() {
        let t: DeviceTypes = serde_json::from_str(DEVICE_TYPES).unwrap();
        assert!(t.boards.len() > 15);
        for b in &t.boards {
            regex::Regex::new(&b.pattern).unwrap();
            assert!(!b.slugs.is_empty(), "{}", b.id);
            for s in &b.slugs {
                assert!(
                    t.slugs.contains_key(s),
                    "board {} names unknown slug {s}",
                    b.id
                );
            }
        }
        let o: OsTable = serde_json::from_str(OS_SUPPORT).unwrap();
        assert!(o.os.iter().any(|e| e.id == "ubuntu"));
        assert_eq!(device_types().boards.len(), t.boards.len());
    }

    #[test]
    fn flasher_and_arch_lookups() {
        assert!(slug_is_flasher("generic-amd64"));
        assert!(!slug_is_flasher("raspberrypi4-64"));
        assert_eq!(slug_arch("raspberrypi3"), Some("armv7hf"));
        assert_eq!(slug_arch("nonexistent"), None);
    }
}
