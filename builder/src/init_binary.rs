//! Finding the static `migrd-init` to put in the ramdisk when `--init` is not
//! given.
//!
//! Installed layout: `migrd-init-<arch>` beside the `migrd` executable (how
//! release archives ship it). Development layout: the workspace target
//! folder, where `cargo build -p migrd-init --profile init --target <triple>`
//! puts it. The `MIGRD_INIT_DIR` environment variable adds a folder holding
//! `migrd-init-<arch>`.

use anyhow::{bail, Result};
use migrd_init::arch::Arch;
use std::path::{Path, PathBuf};

/// Candidate paths, in search order.
pub fn candidates(arch: Arch, exe: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let file = format!("migrd-init-{}", arch.name());
    if let Some(d) = std::env::var_os("MIGRD_INIT_DIR") {
        v.push(PathBuf::from(d).join(&file));
    }
    if let Some(dir) = exe.parent() {
        v.push(dir.join(&file));
        // target/<profile>/migrd → target/<triple>/{init,release}/migrd-init
        if let Some(target) = dir.parent() {
            for profile in ["init", "release"] {
                v.push(
                    target
                        .join(arch.init_triple())
                        .join(profile)
                        .join("migrd-init"),
                );
            }
            // target/<profile>/deps/<test> (integration tests)
            if let Some(t2) = target.parent() {
                for profile in ["init", "release"] {
                    v.push(t2.join(arch.init_triple()).join(profile).join("migrd-init"));
                }
            }
        }
    }
    v
}

/// The bundled init for `arch`, or an error listing where it looked and how
/// to build it.
pub fn locate(arch: Arch) -> Result<PathBuf> {
    let exe = std::env::current_exe().unwrap_or_default();
    let c = candidates(arch, &exe);
    if let Some(p) = c.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    bail!(
        "no bundled migrd-init for {arch}; looked in: {}. Build it with \
         `cargo build -p migrd-init --profile init --target {}` or pass --init FILE",
        c.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        arch.init_triple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_and_installed_layouts_are_searched() {
        let c = candidates(Arch::Aarch64, Path::new("/w/target/release/migrd"));
        assert!(c.contains(&PathBuf::from("/w/target/release/migrd-init-aarch64")));
        assert!(c.contains(&PathBuf::from(
            "/w/target/aarch64-unknown-linux-musl/init/migrd-init"
        )));
    }
}
