//! Running the host tools images are made with.

use super::arm64_legacy::Arch;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `cmd`, failing with its stderr and the package that provides it.
pub fn run(cmd: &mut Command, package: &str) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| {
        format!("running {shown} (Debian package {package}; tests/lab/setup.sh)")
    })?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Copy every entry of the folder `dir` (recursively, in name order) to
/// the root of the FAT filesystem image `fs`.
pub fn mcopy_dir(fs: &Path, dir: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    run(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-i"])
            .arg(fs)
            .args(&entries)
            .arg("::/"),
        "mtools",
    )?;
    Ok(())
}

/// Write `text` as a U-Boot script image for `arch` named `name` to `out`
/// with `mkimage`, as a board vendor would (`work` holds the source).
pub fn uboot_script(text: &str, name: &str, out: &Path, work: &Path, arch: Arch) -> Result<()> {
    let cmd = work.join("boot.cmd");
    std::fs::write(&cmd, text)?;
    run(
        Command::new("mkimage")
            .args([
                "-A",
                arch.mkimage(),
                "-O",
                "linux",
                "-T",
                "script",
                "-C",
                "none",
            ])
            .args(["-n", name, "-d"])
            .arg(&cmd)
            .arg(out),
        "u-boot-tools",
    )?;
    Ok(())
}
