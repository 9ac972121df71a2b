//! Running the host tools images are made with.

use anyhow::{bail, Context, Result};
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
