//! Finding partitions by what their filesystems say (label, UUID), on one
//! disk or on all of them.

use crate::fsprobe::FsInfo;
use crate::system::System;
use std::path::PathBuf;

/// A partition and its filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Device node.
    pub dev: PathBuf,
    /// Filesystem facts.
    pub fs: FsInfo,
}

/// Every recognised filesystem on `disk`.
pub fn on_disk<S: System + ?Sized>(sys: &S, disk: &str) -> Result<Vec<Found>, String> {
    Ok(sys
        .partitions(disk)?
        .into_iter()
        .filter_map(|dev| sys.fs_info(&dev).map(|fs| Found { dev, fs }))
        .collect())
}

/// The partition on `disk` whose filesystem label is `label`.
pub fn by_label<S: System + ?Sized>(sys: &S, disk: &str, label: &str) -> Result<Found, String> {
    let all = on_disk(sys, disk)?;
    let names: Vec<String> = all
        .iter()
        .map(|f| format!("{} ({})", f.dev.display(), f.fs.label))
        .collect();
    all.into_iter()
        .find(|f| f.fs.label == label)
        .ok_or_else(|| {
            format!(
                "no partition labelled {label} on /dev/{disk}; found: {}",
                names.join(", ")
            )
        })
}

/// The filesystem with UUID `uuid` on any disk.
pub fn by_uuid<S: System + ?Sized>(sys: &S, uuid: &str) -> Result<Found, String> {
    for d in sys.disks()? {
        for f in on_disk(sys, &d.name)? {
            if f.fs.uuid.eq_ignore_ascii_case(uuid) {
                return Ok(f);
            }
        }
    }
    Err(format!("no filesystem with UUID {uuid} on any disk"))
}

/// The partition with PARTUUID `partuuid` (case-insensitive) on any disk.
pub fn by_partuuid<S: System + ?Sized>(sys: &S, partuuid: &str) -> Result<PathBuf, String> {
    let mut seen = Vec::new();
    for d in sys.disks()? {
        for (dev, id) in sys.partuuids(&d.name)? {
            if id.eq_ignore_ascii_case(partuuid) {
                return Ok(dev);
            }
            seen.push(id);
        }
    }
    Err(format!(
        "no partition with PARTUUID {partuuid}; found: {}",
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    ))
}
