//! migrd's U-Boot codecs against Debian's U-Boot tools: environments made
//! by `mkenvimage` (u-boot-tools) are read by migrd, environments written
//! by migrd are read by `fw_printenv` and changed by `fw_setenv`
//! (libubootenv-tool) through a test fw_env.config that points at a file,
//! and migrd's script images equal `mkimage -T script`'s byte for byte.
//!
//! `#[ignore]`d for a plain `cargo test`: needs u-boot-tools and
//! libubootenv-tool (tests/lab/setup.sh installs them; tests/lab/test.sh
//! runs these).

// Test helpers outside #[test] functions: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::panic)]

use migrd_bootloaders::uboot::env::{active_copy, Env};
use migrd_bootloaders::uboot::fw_config;
use migrd_bootloaders::uboot::script::{script_image, script_of, ImageArch};
use std::path::Path;
use std::process::Command;

const SIZE: usize = 0x4000;
const TOOLS: &str =
    "needs u-boot-tools and libubootenv-tool (tests/lab/setup.sh); run by tests/lab/test.sh";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} ({TOOLS})"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sample() -> Env {
    let mut e = Env::new();
    e.set("arch", "arm").unwrap();
    e.set("bootcmd", "run distro_bootcmd; echo done").unwrap();
    e.set("bootlimit", "3").unwrap();
    e.set("boot_targets", "mmc0 mmc1 usb0 pxe dhcp").unwrap();
    e
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs u-boot-tools (mkenvimage); run by tests/lab/test.sh"]
fn reads_environments_made_by_mkenvimage() {
    let d = tempfile::tempdir().unwrap();
    let txt = d.path().join("env.txt");
    std::fs::write(&txt, sample().to_string()).unwrap();
    let single = d.path().join("single.bin");
    run(Command::new("mkenvimage")
        .args(["-s", &SIZE.to_string(), "-o"])
        .arg(&single)
        .arg(&txt));
    let bytes = std::fs::read(&single).unwrap();
    assert_eq!(bytes.len(), SIZE);
    let c = Env::decode(&bytes, false, "single.bin").unwrap();
    assert_eq!(c.flag, None);
    assert_eq!(
        sorted_lines(&c.env.to_string()),
        sorted_lines(&sample().to_string())
    );
    // And migrd writes the very same bytes for the same variables.
    assert_eq!(c.env.encode(SIZE, None).unwrap(), bytes);

    let red = d.path().join("redundant.bin");
    run(Command::new("mkenvimage")
        .args(["-r", "-s", &SIZE.to_string(), "-o"])
        .arg(&red)
        .arg(&txt));
    let bytes = std::fs::read(&red).unwrap();
    let c = Env::decode(&bytes, true, "redundant.bin").unwrap();
    assert_eq!(c.flag, Some(1));
    assert_eq!(c.env.get("bootlimit"), Some("3"));
    // The same bytes read as a single environment fail the CRC.
    assert!(Env::decode(&bytes, false, "redundant.bin").is_err());
}

fn config(dir: &Path, copies: &[&str]) -> std::path::PathBuf {
    let cfg = dir.join("fw_env.config");
    let text: String = copies
        .iter()
        .map(|f| format!("{} 0x0 {SIZE:#x}\n", dir.join(f).display()))
        .collect();
    std::fs::write(&cfg, &text).unwrap();
    // migrd reads the same config.
    let parsed = fw_config::parse(&text, "fw_env.config").unwrap();
    assert_eq!(parsed.copies.len(), copies.len());
    assert!(parsed
        .copies
        .iter()
        .all(|c| c.offset == 0 && c.size == SIZE));
    cfg
}

#[test]
#[ignore = "needs libubootenv-tool (fw_printenv, fw_setenv); run by tests/lab/test.sh"]
fn fw_printenv_reads_and_fw_setenv_changes_what_migrd_writes() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("env.bin"),
        sample().encode(SIZE, None).unwrap(),
    )
    .unwrap();
    let cfg = config(d.path(), &["env.bin"]);
    let printed = run(Command::new("fw_printenv").arg("-c").arg(&cfg));
    assert_eq!(sorted_lines(&printed), sorted_lines(&sample().to_string()));

    run(Command::new("fw_setenv")
        .arg("-c")
        .arg(&cfg)
        .args(["migrd_oneshot", "1"]));
    let c = Env::decode(
        &std::fs::read(d.path().join("env.bin")).unwrap(),
        false,
        "env.bin",
    )
    .unwrap();
    assert_eq!(c.env.get("migrd_oneshot"), Some("1"));
    assert_eq!(c.env.get("bootcmd"), Some("run distro_bootcmd; echo done"));
}

#[test]
#[ignore = "needs libubootenv-tool (fw_printenv, fw_setenv); run by tests/lab/test.sh"]
fn redundant_copies_agree_with_fw_printenv_on_the_active_one() {
    let d = tempfile::tempdir().unwrap();
    let mut newer = sample();
    newer.set("bootcmd", "run newer").unwrap();
    std::fs::write(
        d.path().join("a.bin"),
        sample().encode(SIZE, Some(4)).unwrap(),
    )
    .unwrap();
    std::fs::write(d.path().join("b.bin"), newer.encode(SIZE, Some(5)).unwrap()).unwrap();
    let cfg = config(d.path(), &["a.bin", "b.bin"]);
    let printed = run(Command::new("fw_printenv")
        .arg("-c")
        .arg(&cfg)
        .arg("bootcmd"));
    assert_eq!(printed.trim(), "bootcmd=run newer");
    let read = |f: &str| Env::decode(&std::fs::read(d.path().join(f)).unwrap(), true, f);
    assert_eq!(
        active_copy(read("a.bin").ok().as_ref(), read("b.bin").ok().as_ref()),
        Some(1)
    );

    // fw_setenv writes the other copy with the next flag; migrd follows.
    run(Command::new("fw_setenv")
        .arg("-c")
        .arg(&cfg)
        .args(["bootcmd", "run third"]));
    let (a, b) = (read("a.bin"), read("b.bin"));
    let active = active_copy(a.as_ref().ok(), b.as_ref().ok()).unwrap();
    let env = [a, b].into_iter().nth(active).unwrap().unwrap();
    assert_eq!(env.env.get("bootcmd"), Some("run third"));
    assert_eq!(active, 0, "fw_setenv wrote the inactive copy");
}

#[test]
#[ignore = "needs u-boot-tools (mkimage); run by tests/lab/test.sh"]
fn script_images_equal_mkimage_output() {
    let d = tempfile::tempdir().unwrap();
    for (arch, name, script) in [
        ("arm64", ImageArch::Arm64, "echo one\nboot\n"),
        ("arm", ImageArch::Arm, "echo odd length\n"),
    ] {
        let cmd = d.path().join("boot.cmd");
        let scr = d.path().join("boot.scr");
        std::fs::write(&cmd, script).unwrap();
        run(Command::new("mkimage")
            .env("SOURCE_DATE_EPOCH", "0")
            .args([
                "-A",
                arch,
                "-O",
                "linux",
                "-T",
                "script",
                "-C",
                "none",
                "-n",
                "migrd one-shot",
                "-d",
            ])
            .arg(&cmd)
            .arg(&scr));
        let theirs = std::fs::read(&scr).unwrap();
        assert_eq!(
            script_image(script, name, "migrd one-shot", 0),
            theirs,
            "{arch}"
        );
        assert_eq!(script_of(&theirs).as_deref(), Some(script));
    }
}
