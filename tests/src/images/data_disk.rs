//! Getting files into a guest: a whole-disk ext4 image made from a folder
//! (`mkfs.ext4 -d`, no mount), attached as a second disk and mounted in
//! the guest by label (`mount LABEL=<label> /mnt`).

use super::tools;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Make `out`, a raw ext4 filesystem of `size_mib` MiB (no partition table)
/// labelled `label`, holding the files of `src`.
pub fn ext4_disk(src: &Path, out: &Path, label: &str, size_mib: u64) -> Result<()> {
    let _ = std::fs::remove_file(out);
    tools::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label, "-d"])
            .arg(src)
            .arg(out)
            .arg(format!("{size_mib}M")),
        "e2fsprogs",
    )?;
    Ok(())
}
