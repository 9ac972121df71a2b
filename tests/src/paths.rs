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
/// at the start of each run; see [`LogDir`] for what is kept afterwards.
/// Waits first for a slot in the machine's pool of running scenarios
/// ([`crate::slots`]), held until the [`LogDir`] is dropped.
pub fn log_dir(scenario: &str) -> Result<LogDir> {
    crate::slots::hold()?;
    let d = lab_dir().join("logs").join(scenario);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(LogDir(d))
}

/// Files at least this big are a scenario's disks, images and copies of
/// binaries, not its logs.
const BULKY: u64 = 1 << 20;

/// A scenario's log folder. When it goes out of scope (the scenario passed
/// or failed) the disk images and other bulky files in it (1 MiB or more,
/// other than `*.log`) are removed and the logs stay, so that the whole lab
/// (about twenty devices of 0.3 to 2 GiB each) fits on a small CI disk.
/// `MIGRD_LAB_KEEP=1` keeps everything, to look at a device's disks.
/// Dropping it also frees the scenario's slot in the machine's pool of
/// running scenarios ([`crate::slots`]).
#[derive(Debug)]
pub struct LogDir(PathBuf);

impl LogDir {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for LogDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for LogDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if !std::env::var_os("MIGRD_LAB_KEEP").is_some_and(|v| v == "1") {
            prune_bulky(&self.0);
        }
        crate::slots::release();
    }
}

/// Remove files of [`BULKY`] size or more, other than `*.log`, under `dir`;
/// empty folders left behind are removed too. Best effort: a file that
/// cannot be removed stays.
pub fn prune_bulky(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            prune_bulky(&p);
            let _ = std::fs::remove_dir(&p); // only if now empty
        } else if ft.is_file()
            && !matches!(p.extension(), Some(x) if x == "log")
            && e.metadata().is_ok_and(|m| m.len() >= BULKY)
        {
            let _ = std::fs::remove_file(&p);
        }
    }
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

/// The Cargo profile folders a host or cross binary is looked up in, first
/// match wins: the profile the running test binary was built with (its
/// folder name under the target folder: `ci` under `tests/lab/test.sh`,
/// `release` under `cargo test --release`, so a test uses the `migrd` built
/// alongside it rather than a stale one from another profile), then `ci`
/// (the profile `tests/lab/test.sh` builds), `release` and `debug`.
pub fn profile_dirs() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if let Some(own) = own_profile() {
        v.push(own);
    }
    for p in ["ci", "release", "debug"] {
        if !v.iter().any(|x| x == p) {
            v.push(p.to_string());
        }
    }
    v
}

/// The profile folder of the running executable: `<target>/<profile>/deps/
/// <test binary>` or `<target>/<profile>/<binary>`; `None` when it is not
/// under the target folder (e.g. an installed binary).
fn own_profile() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?;
    }
    // Only a profile folder directly under the host target folder counts
    // (a cross build's `<target>/<triple>/<profile>` does not run tests).
    let target = target_dir();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if !same(dir.parent()?, &target) {
        return None;
    }
    Some(dir.file_name()?.to_string_lossy().into_owned())
}

/// The `migrd` binary under test: `MIGRD_BIN`, else `migrd` in the first
/// of [`profile_dirs`] that has one.
pub fn migrd_bin() -> Result<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("MIGRD_BIN") {
        c.push(PathBuf::from(p));
    }
    c.extend(
        profile_dirs()
            .iter()
            .map(|p| target_dir().join(p).join("migrd")),
    );
    first_file(
        &c,
        "migrd binary",
        "run `cargo build --profile ci -p migrd` (or `--release`)",
    )
}

/// The static `migrd` built for the Rust target `triple` (aarch64 musl,
/// armv7 with a static glibc): `migrd` in the first of [`profile_dirs`]
/// under `<target>/<triple>/` that has one.
pub fn cross_migrd_bin(triple: &str) -> Result<PathBuf> {
    let t = target_dir().join(triple);
    let c: Vec<PathBuf> = profile_dirs()
        .iter()
        .map(|p| t.join(p).join("migrd"))
        .collect();
    first_file(
        &c,
        &format!("static migrd for {triple}"),
        &format!(
            "tests/lab/test.sh builds it (cargo build --profile ci -p migrd --bin migrd \
             --target {triple})"
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_removes_disks_and_keeps_logs() -> Result<()> {
        let d = tempfile::tempdir()?;
        let disk = d.path().join("debian.img");
        std::fs::File::create(&disk)?.set_len(2 << 30)?; // sparse, 2 GiB
        std::fs::write(d.path().join("1-debian.serial.log"), vec![b'x'; 2 << 20])?;
        std::fs::write(d.path().join("qemu.cmd"), "qemu-system-x86_64 ...")?;
        std::fs::create_dir_all(d.path().join("balena/empty"))?;
        std::fs::write(d.path().join("balena/balena.img.gz"), vec![0u8; 1 << 20])?;
        std::fs::write(d.path().join("balena/small.json"), "{}")?;
        prune_bulky(d.path());
        assert!(!disk.exists(), "a 2 GiB disk image stays");
        assert!(!d.path().join("balena/balena.img.gz").exists());
        assert!(
            !d.path().join("balena/empty").exists(),
            "empty folder stays"
        );
        assert!(
            d.path().join("1-debian.serial.log").exists(),
            "a big log went"
        );
        assert!(d.path().join("qemu.cmd").exists());
        assert!(d.path().join("balena/small.json").exists());
        Ok(())
    }

    #[test]
    fn keep_leaves_everything() -> Result<()> {
        let d = tempfile::tempdir()?;
        let disk = d.path().join("disk.img");
        std::fs::File::create(&disk)?.set_len(4 << 20)?;
        std::env::set_var("MIGRD_LAB_KEEP", "1");
        drop(LogDir(d.path().to_path_buf()));
        std::env::remove_var("MIGRD_LAB_KEEP");
        assert!(disk.exists(), "MIGRD_LAB_KEEP=1 did not keep the disk");
        drop(LogDir(d.path().to_path_buf()));
        assert!(!disk.exists(), "without MIGRD_LAB_KEEP the disk stays");
        Ok(())
    }
}
