//! First real boots: the Debian kernel (from Debian's package, extracted by
//! tests/lab/setup.sh) with an initramfs made by `migrd build`, under
//! `qemu-system-x86_64 -accel tcg`. The serial log must show migrd-init
//! loading virtio_blk, finding the disk by serial, verifying the payload and
//! going back (a pretend run: these boots prove the ramdisk) — or, with a corrupted or truncated ramdisk, reporting it and
//! leaving by the fallback path.
//!
//! These tests need QEMU and the kernel, so they are `#[ignore]`d for a plain
//! `cargo test`; the README's test command runs them (`--include-ignored`).

use anyhow::{ensure, Context, Result};
use migrd_lab::events::{self, find, summary};
use migrd_lab::images::balena;
use migrd_lab::paths;
use migrd_lab::qemu::{Ended, Qemu};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERIAL: &str = "MIGRDLAB0001";
const TRIPLE: &str = "x86_64-unknown-linux-musl";

/// The payload: the lab's synthetic balenaOS image (stage 1 refuses
/// anything that does not decode to a balenaOS disk), and a config.json.
/// Built once per `dir` (builds from one `dir` must get the same bytes:
/// the image's filesystems carry fresh UUIDs and times).
fn make_payload(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let img = dir.join("balena.img.gz");
    if !img.exists() {
        let built = balena::image(&dir.join("balena"))?;
        std::fs::copy(&built.gz, &img)?;
    }
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        br#"{"deviceType":"genericx86-64-ext","applicationId":"1234","apiKey":"lab-secret"}"#,
    )?;
    Ok((img, cfg))
}

fn migrd_build(work: &Path, out: &str, extra: &[&str]) -> Result<PathBuf> {
    let k = paths::kernel("amd64")?;
    let (img, cfg) = make_payload(work)?;
    let out = work.join(out);
    let res = Command::new(paths::migrd_bin()?)
        .arg("build")
        .args(["--arch", "x86_64", "--kernel-release", &k.release])
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .arg("-i")
        .arg(&img)
        .arg("-c")
        .arg(&cfg)
        .arg("--init")
        .arg(paths::init_bin(TRIPLE)?)
        .args([
            "--target",
            &format!("serial={SERIAL}"),
            "--target-wait",
            "10",
            // Pretend: these boots prove the ramdisk, not flashing (the
            // payload is a stand-in); stage 2 stops before the point of no
            // return.
            "--pretend",
        ])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .output()?;
    ensure!(
        res.status.success(),
        "migrd build failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    Ok(out)
}

fn boot(scenario: &str, initrd: &Path) -> Result<(migrd_lab::qemu::Run, Vec<serde_json::Value>)> {
    let k = paths::kernel("amd64")?;
    let logs = paths::log_dir(scenario)?;
    let disk = logs.join("disk.img");
    std::fs::File::create(&disk)?.set_len(64 << 20)?;
    let cmdline = format!(
        "{} console=ttyS0 quiet",
        std::fs::read_to_string(initrd.with_file_name("cmdline.txt"))
            .unwrap_or_else(|_| "rootfstype=ramfs panic=10".into())
            .trim()
    );
    let run = Qemu::x86_64(&logs)
        .kernel(&k.image, initrd, &cmdline)
        .disk(&disk, Some(SERIAL))
        .run(Duration::from_secs(180), None)?;
    let ev = events::parse(&run.serial);
    eprintln!(
        "{scenario}: {:?} in {:.1}s; events {:?}",
        run.ended,
        run.elapsed.as_secs_f64(),
        summary(&ev)
    );
    Ok((run, ev))
}

#[test]
#[ignore = "lab: needs QEMU and a Debian kernel (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn boots_loads_virtio_finds_disk_verifies_and_goes_back() -> Result<()> {
    let work = tempfile::tempdir()?;
    let out = migrd_build(work.path(), "out", &[])?;
    let (run, ev) = boot("first-boot-ok", &out.join("initramfs.img"))?;
    ensure!(
        matches!(run.ended, Ended::Exited(_)),
        "QEMU did not power off cleanly: {:?} (log {})",
        run.ended,
        run.log.display()
    );
    let modules = find(&ev, "modules", "ok").context("no modules/ok event")?;
    let loaded: Vec<&str> = modules["data"]["loaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    ensure!(
        loaded.contains(&"virtio_blk") && loaded.contains(&"virtio_pci"),
        "virtio not loaded: {loaded:?}"
    );
    let t = find(&ev, "find-target", "ok").context("target not found")?;
    ensure!(
        t["data"]["disk"]["name"] == "vda" && t["data"]["disk"]["serial"] == SERIAL,
        "wrong disk: {t}"
    );
    let verified: Vec<&str> = ev
        .iter()
        .filter(|e| e["step"] == "verify" && e["status"] == "ok")
        .filter_map(|e| e["data"]["path"].as_str())
        .collect();
    ensure!(
        verified == ["/payload/balena.img.gz", "/payload/config.json"],
        "verified {verified:?}"
    );
    ensure!(
        find(&ev, "done", "ok").is_some(),
        "no done event: {:?}",
        summary(&ev)
    );
    ensure!(
        find(&ev, "point-of-no-return", "ok").is_none(),
        "pretend crossed the point of no return"
    );
    ensure!(
        find(&ev, "exit", "ok").map(|e| e["msg"] == "rebooting into the old OS") == Some(true),
        "{:?}",
        summary(&ev)
    );
    ensure!(
        !run.serial.contains("lab-secret"),
        "the API key reached the console"
    );
    Ok(())
}

/// Flip one byte of the payload inside the ramdisk (gzip segment this time,
/// so both RD_ZSTD and RD_GZIP layouts boot): stage 2 must name the file and
/// leave by the fallback path, never reaching `done`.
#[test]
#[ignore = "lab: needs QEMU and a Debian kernel (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn flipped_payload_byte_is_reported_and_falls_back() -> Result<()> {
    let work = tempfile::tempdir()?;
    let out = migrd_build(work.path(), "out", &["--compression", "gzip"])?;
    let initrd = out.join("initramfs.img");
    let mut bytes = std::fs::read(&initrd)?;
    let img = std::fs::read(work.path().join("balena.img.gz"))?;
    let at = bytes
        .windows(64)
        .position(|w| w == &img[1000..1064])
        .context("payload bytes not found stored in the initramfs")?;
    bytes[at] ^= 0x01;
    std::fs::write(&initrd, &bytes)?;
    let (run, ev) = boot("first-boot-flipped", &initrd)?;
    ensure!(matches!(run.ended, Ended::Exited(_)), "{:?}", run.ended);
    let fail = find(&ev, "verify", "fail")
        .with_context(|| format!("no verify/fail: {:?}", summary(&ev)))?;
    let msg = fail["msg"].as_str().unwrap_or_default();
    ensure!(
        msg.contains("/payload/balena.img.gz") && msg.contains("sha256"),
        "{msg}"
    );
    ensure!(
        find(&ev, "done", "ok").is_none(),
        "reached done despite corruption"
    );
    ensure!(find(&ev, "exit", "ok").map(|e| e["msg"] == "rebooting into the old OS") == Some(true));
    Ok(())
}

/// Cut the ramdisk in the middle of the payload, as a bootloader or a full
/// /boot could: the kernel unpacks what it can without failing the boot.
/// Measured here: the kernel sizes each file to its header's length before
/// copying (init/initramfs.c truncates to body_len), so a cut leaves a
/// full-size file with a zero tail — the size check passes and only the
/// hash catches it. Stage 2 must stop at load-payload or verify, naming the
/// file, and never reach `done`.
#[test]
#[ignore = "lab: needs QEMU and a Debian kernel (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn truncated_ramdisk_is_caught_before_use() -> Result<()> {
    let work = tempfile::tempdir()?;
    let out = migrd_build(work.path(), "out", &[])?;
    let initrd = out.join("initramfs.img");
    let len = std::fs::metadata(&initrd)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&initrd)?
        .set_len(len - 500_000)?;
    let (_run, ev) = boot("first-boot-truncated", &initrd)?;
    let fail = find(&ev, "load-payload", "fail")
        .or_else(|| find(&ev, "verify", "fail"))
        .with_context(|| format!("no load-payload/fail or verify/fail: {:?}", summary(&ev)))?;
    let msg = fail["msg"].as_str().unwrap_or_default();
    ensure!(msg.contains("/payload/balena.img.gz"), "{fail}");
    ensure!(
        find(&ev, "done", "ok").is_none(),
        "reached done with a truncated ramdisk"
    );
    Ok(())
}

/// Same inputs, same bytes; GNU cpio lists the first segment exactly as
/// `migrd inspect` does.
#[test]
#[ignore = "lab: needs the Debian kernel's modules (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn builds_are_reproducible_and_gnu_cpio_reads_them() -> Result<()> {
    let work = tempfile::tempdir()?;
    let a = migrd_build(work.path(), "a", &[])?;
    let b = migrd_build(work.path(), "b", &[])?;
    let (ia, ib) = (
        std::fs::read(a.join("initramfs.img"))?,
        std::fs::read(b.join("initramfs.img"))?,
    );
    ensure!(
        ia == ib,
        "two builds differ ({} vs {} bytes)",
        ia.len(),
        ib.len()
    );
    ensure!(std::fs::read(a.join("plan.json"))? == std::fs::read(b.join("plan.json"))?);

    let insp = Command::new(paths::migrd_bin()?)
        .arg("inspect")
        .arg("--json")
        .arg(a.join("initramfs.img"))
        .output()?;
    ensure!(insp.status.success());
    let v: serde_json::Value = serde_json::from_slice(&insp.stdout)?;
    let segs = v["segments"].as_array().context("segments")?;
    ensure!(
        segs.len() == 2 && segs[0]["compression"] == "zstd" && segs[1]["compression"] == "none",
        "{segs:?}"
    );
    ensure!(v["plan"]["target"]["serial"] == SERIAL);

    let (off, len) = (
        segs[0]["offset"].as_u64().unwrap_or(0) as usize,
        segs[0]["length"].as_u64().unwrap_or(0) as usize,
    );
    let first = &ia[off..off + len];
    let raw = zstd_decompress(first)?;
    let mut cpio = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    cpio.stdin.take().context("stdin")?.write_all(&raw)?;
    let listed = cpio.wait_with_output()?;
    ensure!(listed.status.success(), "GNU cpio failed");
    let gnu: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let ours: Vec<String> = segs[0]["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    ensure!(gnu == ours, "GNU cpio {gnu:?} vs inspect {ours:?}");
    ensure!(
        gnu.contains(&"init".to_string())
            && gnu.contains(&"plan.json".to_string())
            && gnu.contains(&"lib/modules/virtio_blk.ko".to_string())
    );
    Ok(())
}

fn zstd_decompress(b: &[u8]) -> Result<Vec<u8>> {
    let mut c = Command::new("zstd")
        .args(["-dc", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("zstd (Debian package zstd)")?;
    let mut stdin = c.stdin.take().context("stdin")?;
    let data = b.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = c.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread"))??;
    ensure!(out.status.success(), "zstd -d failed on the first segment");
    Ok(out.stdout)
}
