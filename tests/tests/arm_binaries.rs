//! The static ARM builds (aarch64 musl and armv7 glibc with crt-static) run
//! under qemu-user: each binary is a static ELF for the right machine,
//! `migrd --version` and `migrd check --root <fixture> --json` answer
//! exactly like the host build, `migrd write-image` decodes zstd and xz
//! through the C libraries built with the cross compilers, and
//! `migrd-init` starts, prints its version and refuses to run outside
//! PID 1 without touching anything.
//!
//! `#[ignore]`d for a plain `cargo test`: needs qemu-user-static and the
//! cross builds (tests/lab/test.sh does both).

use anyhow::{ensure, Context, Result};
use migrd::elf_check::check_init_file;
use migrd_init::arch::Arch;
use migrd_lab::paths;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Target {
    arch: Arch,
    qemu: &'static str,
    /// A fixture of a device of this architecture.
    fixture: &'static str,
    /// migrd has a `kexec_file_load` wrapper for this architecture; where it
    /// has none, the kexec strategy's reason is the one part of the report
    /// that rightly differs from the host build's.
    kexec_syscall: bool,
}

const AARCH64: Target = Target {
    arch: Arch::Aarch64,
    qemu: "qemu-aarch64-static",
    fixture: "rpi4-bookworm",
    kexec_syscall: true,
};
const ARMV7: Target = Target {
    arch: Arch::Armv7,
    qemu: "qemu-arm-static",
    fixture: "beaglebone-debian",
    kexec_syscall: false,
};

fn bin(t: &Target, profile: &str, name: &str) -> Result<PathBuf> {
    let p = paths::target_dir()
        .join(t.arch.init_triple())
        .join(profile)
        .join(name);
    ensure!(
        p.is_file(),
        "{} missing: tests/lab/test.sh builds it (cargo build --profile {profile} --target {})",
        p.display(),
        t.arch.init_triple()
    );
    Ok(p)
}

fn run(t: &Target, exe: &Path, args: &[&str]) -> Result<Output> {
    Command::new(t.qemu)
        .arg(exe)
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "running {} under {} (install qemu-user-static)",
                exe.display(),
                t.qemu
            )
        })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fixture(name: &str) -> String {
    paths::repo()
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `check --json` of the fixture with the host migrd, for comparison.
fn host_check(fx: &str) -> Result<serde_json::Value> {
    let out = Command::new(paths::migrd_bin()?)
        .args(["check", "--root", fx, "--json"])
        .output()?;
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("host check: {}", text(&out.stderr)))
}

/// Replace `from` by `to` in every string of `v`.
fn replace_in_strings(v: &mut serde_json::Value, from: &str, to: &str) {
    match v {
        serde_json::Value::String(s) => *s = s.replace(from, to),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| replace_in_strings(x, from, to)),
        serde_json::Value::Object(o) => {
            o.values_mut().for_each(|x| replace_in_strings(x, from, to))
        }
        _ => {}
    }
}

/// Removes and returns the kexec entry of a report's strategy list.
fn take_kexec(report: &mut serde_json::Value) -> Result<serde_json::Value> {
    let list = report["boot"]["strategies"]
        .as_array_mut()
        .context("no boot.strategies in the report")?;
    let i = list
        .iter()
        .position(|s| s["strategy"] == "kexec")
        .context("no kexec entry in boot.strategies")?;
    Ok(list.remove(i))
}

/// 3 MiB of varied bytes that `write-image` accepts as a disk: an MBR with
/// one partition (sectors 2048..6144) that ends where the image ends.
fn disk_image() -> Vec<u8> {
    let mut raw: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    raw[446..510].fill(0);
    raw[450] = 0x83;
    raw[454..458].copy_from_slice(&2048u32.to_le_bytes());
    raw[458..462].copy_from_slice(&4096u32.to_le_bytes());
    raw[510] = 0x55;
    raw[511] = 0xaa;
    raw
}

fn smoke_migrd(t: &Target) -> Result<()> {
    let migrd = paths::cross_migrd_bin(t.arch.init_triple())?;
    check_init_file(&migrd, t.arch).with_context(|| "migrd is not a static ELF for its target")?;

    let out = run(t, &migrd, &["--version"])?;
    ensure!(out.status.success(), "--version: {}", text(&out.stderr));
    ensure!(
        text(&out.stdout).trim() == concat!("migrd ", env!("CARGO_PKG_VERSION")),
        "--version printed {:?}",
        text(&out.stdout)
    );

    let fx = fixture(t.fixture);
    let out = run(t, &migrd, &["check", "--root", &fx, "--json"])?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "check --json output: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })?;
    let mut report = report;
    let mut host = host_check(&fx)?;
    if !t.kexec_syscall {
        let ours = take_kexec(&mut report)?;
        let theirs = take_kexec(&mut host)?;
        ensure!(
            !ours["usable"].as_bool().unwrap_or(true)
                && ours["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("on this CPU architecture")),
            "the {} build should refuse kexec for its architecture: {ours}",
            t.arch
        );
        // The boot-strategy check quotes every strategy's reason: the
        // kexec one is the architecture's here, the kernel's on the host.
        if let (Some(o), Some(h)) = (ours["reason"].as_str(), theirs["reason"].as_str()) {
            replace_in_strings(&mut report, o, h);
        }
    }
    ensure!(
        report == host,
        "the {} build's report differs from the host build's: {report}",
        t.arch
    );
    ensure!(
        report["device"]["kernel_machine"].as_str().is_some(),
        "no kernel_machine in {report}"
    );

    // The C libzstd and liblzma, cross-compiled, decode.
    let dir = tempfile::tempdir()?;
    let raw = disk_image();
    let zst = dir.path().join("img.zst");
    std::fs::write(&zst, zstd::encode_all(&raw[..], 3)?)?;
    let xz = dir.path().join("img.xz");
    let mut e = xz2::write::XzEncoder::new(std::fs::File::create(&xz)?, 1);
    e.write_all(&raw)?;
    e.finish()?;
    for img in [&zst, &xz] {
        let to = img.with_extension("raw");
        let out = run(
            t,
            &migrd,
            &[
                "write-image",
                &img.display().to_string(),
                "--to",
                &to.display().to_string(),
                "--json",
            ],
        )?;
        ensure!(
            out.status.success(),
            "write-image {}: {}",
            img.display(),
            text(&out.stderr)
        );
        ensure!(
            std::fs::read(&to)? == raw,
            "write-image {} wrote other bytes",
            img.display()
        );
    }
    Ok(())
}

fn smoke_init(t: &Target) -> Result<()> {
    let init = bin(t, "init", "migrd-init")?;
    check_init_file(&init, t.arch)
        .with_context(|| "migrd-init is not a static ELF for its target")?;
    let out = run(t, &init, &["--version"])?;
    ensure!(out.status.success(), "--version: {}", text(&out.stderr));
    ensure!(text(&out.stdout).trim() == concat!("migrd-init ", env!("CARGO_PKG_VERSION")));

    // Outside PID 1 with no plan: refuses, exit 2, nothing printed on
    // stdout (no stage event: it did not start the stage).
    let out = run(t, &init, &[])?;
    let err = text(&out.stderr);
    ensure!(out.status.code() == Some(2), "exit {:?}: {err}", out.status);
    ensure!(
        err.contains("refusing to run as process") && err.contains("PID 1"),
        "{err}"
    );
    ensure!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    Ok(())
}

#[test]
#[ignore = "needs qemu-user-static and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn aarch64_migrd_runs_under_qemu_user() -> Result<()> {
    smoke_migrd(&AARCH64)
}

#[test]
#[ignore = "needs qemu-user-static and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn aarch64_migrd_init_starts_and_refuses_outside_pid1() -> Result<()> {
    smoke_init(&AARCH64)
}

#[test]
#[ignore = "needs qemu-user-static and the armv7 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn armv7_migrd_runs_under_qemu_user() -> Result<()> {
    smoke_migrd(&ARMV7)
}

#[test]
#[ignore = "needs qemu-user-static and the armv7 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn armv7_migrd_init_starts_and_refuses_outside_pid1() -> Result<()> {
    smoke_init(&ARMV7)
}
