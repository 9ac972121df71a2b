//! Locations used by the lab.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { repo().join(p) })
        .unwrap_or_else(|| repo().join("target"))
}

/// The lab cache (`MIGRD_LAB_DIR`, default `target/lab`).
pub fn lab_dir() -> PathBuf {
    std::env::var_os("MIGRD_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/lab"))
}

/// Where a scenario keeps its logs: `target/lab/logs/<scenario>/`, emptied
/// at the start of each run and kept afterwards (CI uploads the folder).
pub fn log_dir(scenario: &str) -> Result<PathBuf> {
    let d = lab_dir().join("logs").join(scenario);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// A Debian kernel extracted into the lab.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The kernel image (`boot/vmlinuz-<release>`).
    pub image: PathBuf,
    /// Its release string.
    pub release: String,
    /// `lib/modules` of the extracted package.
    pub modules_dir: PathBuf,
    /// `boot/config-<release>`.
    pub config: PathBuf,
}

/// The extracted Debian kernel for `debian_arch` (`amd64`, `arm64`).
pub fn kernel(debian_arch: &str) -> Result<Kernel> {
    let root = lab_dir().join("kernel").join(debian_arch);
    let modules_dir = root.join("lib/modules");
    let release = std::fs::read_dir(&modules_dir)
        .ok()
        .and_then(|mut rd| rd.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let Some(release) = release else {
        bail!(
            "no Debian {debian_arch} kernel in {}: run tests/lab/setup.sh first",
            root.display()
        );
    };
    Ok(Kernel {
        image: root.join("boot").join(format!("vmlinuz-{release}")),
        config: root.join("boot").join(format!("config-{release}")),
        modules_dir,
        release,
    })
}

fn first_file(cands: &[PathBuf], what: &str, how: &str) -> Result<PathBuf> {
    if let Some(p) = cands.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    bail!(
        "{what} not found (looked in {}); {how}",
        cands
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The `migrd` binary under test (`MIGRD_BIN`, else target/release, else
/// target/debug).
pub fn migrd_bin() -> Result<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("MIGRD_BIN") {
        c.push(PathBuf::from(p));
    }
    c.push(target_dir().join("release/migrd"));
    c.push(target_dir().join("debug/migrd"));
    first_file(&c, "migrd binary", "run `cargo build --release -p migrd`")
}

/// The static migrd-init for a Rust target triple.
pub fn init_bin(triple: &str) -> Result<PathBuf> {
    first_file(
        &[target_dir().join(triple).join("init/migrd-init")],
        "static migrd-init",
        &format!("run `cargo build -p migrd-init --profile init --target {triple}`"),
    )
}

/// The static balena-reporter (PID 1 of the synthetic balenaOS image).
pub fn reporter_bin() -> Result<PathBuf> {
    reporter_bin_for("x86_64-unknown-linux-musl")
}

/// The static balena-reporter built for the Rust target `triple`.
pub fn reporter_bin_for(triple: &str) -> Result<PathBuf> {
    let t = target_dir().join(triple);
    first_file(
        &[
            t.join("init/balena-reporter"),
            t.join("release/balena-reporter"),
        ],
        "static balena-reporter",
        &format!(
            "run `cargo build -p migrd-lab --bin balena-reporter --no-default-features \
             --profile init --target {triple}`"
        ),
    )
}
