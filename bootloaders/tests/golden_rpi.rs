//! Golden files for every file the Raspberry Pi strategies generate, on
//! the fixture trees (Raspberry Pi OS bookworm on a Pi 4 and a Pi 3 B+,
//! Raspbian buster on a Pi 3, bullseye 32- and 64-bit on a Pi 4) and on a config.txt with sections, an
//! `os_prefix`, an existing `initramfs` line and DOS line endings.
//!
//! The expected files are in `tests/golden/rpi/<case>/<strategy>/`.
//! After an intended change, regenerate them and review the diff by eye:
//!
//! ```text
//! MIGRD_BLESS=1 cargo test -p migrd-bootloaders --test golden_rpi
//! git diff bootloaders/tests/golden
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use migrd_bootloaders::change::Change;
use migrd_bootloaders::rpi::oneshot::{self, CurrentBoot, Inputs};
use migrd_bootloaders::rpi::Model;
use std::path::{Path, PathBuf};

const CMDLINE: &str = "console=serial0,115200 console=tty1 rootfstype=ramfs panic=10";
const RAMDISK: &str = "/var/lib/migrd/work/ramdisk/initramfs.img";
const PARTUUID: &str = "4e5f6a7b-01";

struct Case {
    name: &'static str,
    /// The device's root (a fixture tree).
    root: PathBuf,
    /// Where the boot partition is mounted on the device.
    boot_dir: &'static str,
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> Vec<Case> {
    let fx = here().join("../tests/fixtures");
    vec![
        Case {
            name: "rpi4-bookworm",
            root: fx.join("rpi4-bookworm"),
            boot_dir: "/boot/firmware",
        },
        Case {
            name: "rpi3bplus-bookworm",
            root: fx.join("rpi3bplus-bookworm"),
            boot_dir: "/boot/firmware",
        },
        Case {
            name: "rpi3-buster",
            root: fx.join("rpi3-buster"),
            boot_dir: "/boot",
        },
        // Raspberry Pi OS bullseye, 32- and 64-bit: the firmware boots its
        // own kernel7l.img / kernel8.img (no vmlinuz to copy).
        Case {
            name: "rpi4-bullseye",
            root: fx.join("rpi4-bullseye"),
            boot_dir: "/boot",
        },
        Case {
            name: "rpi4-bullseye-arm64",
            root: fx.join("rpi4-bullseye-arm64"),
            boot_dir: "/boot",
        },
    ]
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The manifest line of a change, and the file it writes (if any).
fn describe(c: &Change) -> (String, Option<(String, Vec<u8>)>) {
    match c {
        Change::Copy { from, to, mode } => (
            format!("copy {} -> {} ({mode:o})", from.display(), to.display()),
            None,
        ),
        Change::Write {
            path, bytes, mode, ..
        } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            (
                format!("write {} ({} bytes, {mode:o})", path.display(), bytes.len()),
                Some((name, bytes.clone())),
            )
        }
        other => (format!("{other:?}"), None),
    }
}

/// Compare `files` with the golden folder (or write them with MIGRD_BLESS=1).
fn check(dir: &Path, files: &[(String, Vec<u8>)]) -> Vec<String> {
    let bless = std::env::var_os("MIGRD_BLESS").is_some();
    let mut bad = Vec::new();
    if bless {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
    }
    for (name, bytes) in files {
        let p = dir.join(name);
        if bless {
            std::fs::write(&p, bytes).unwrap();
        } else if std::fs::read(&p).ok().as_deref() != Some(bytes.as_slice()) {
            bad.push(format!(
                "{} differs (MIGRD_BLESS=1 regenerates; review the diff):\n--- golden\n{}\n--- generated\n{}",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_else(|e| format!("<{e}>")),
                String::from_utf8_lossy(bytes)
            ));
        }
    }
    let listed: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    for n in listed {
        if !files.iter().any(|(f, _)| *f == n) {
            bad.push(format!(
                "{}: golden file no longer generated",
                dir.join(n).display()
            ));
        }
    }
    bad
}

fn generated(changes: &[Change], extra: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut manifest = String::new();
    let mut files = extra;
    for c in changes {
        let (line, file) = describe(c);
        manifest.push_str(&line);
        manifest.push('\n');
        files.extend(file);
    }
    files.push(("changes.txt".into(), manifest.into_bytes()));
    files
}

fn run_case(
    name: &str,
    model: Model,
    running_64bit: bool,
    boot_dir: &str,
    config: &str,
) -> Vec<String> {
    let cur = CurrentBoot::read(config, model, running_64bit, &|_| None).unwrap();
    let inputs = Inputs {
        boot_dir: Path::new(boot_dir),
        config_txt: config,
        current: &cur,
        initramfs: Path::new(RAMDISK),
        cmdline: CMDLINE,
        kernel_copy: None,
    };
    let golden = here().join("tests/golden/rpi").join(name);
    let mut bad = Vec::new();
    match oneshot::tryboot(model, &inputs) {
        Ok(ch) => bad.extend(check(&golden.join("tryboot"), &generated(&ch, vec![]))),
        Err(e) => {
            assert!(!model.has_tryboot(), "{name}: {e}");
            assert!(
                !golden.join("tryboot").exists(),
                "{name}: stale golden tryboot/"
            );
        }
    }
    let ch = oneshot::config_edit(&inputs).unwrap();
    let (action, (saved_at, saved)) = oneshot::config_disarm(PARTUUID, config.as_bytes());
    assert_eq!(
        saved,
        config.as_bytes(),
        "the saved original is config.txt's bytes"
    );
    let disarm = format!("{action:#?}\nsaved original at {saved_at}\n");
    bad.extend(check(
        &golden.join("config"),
        &generated(&ch, vec![("disarm.txt".into(), disarm.into_bytes())]),
    ));
    bad
}

#[test]
fn generated_files_match_the_golden_files() {
    let mut bad = Vec::new();
    for c in cases() {
        let model_str = read(&c.root.join("proc/device-tree/model"));
        let model = Model::from_dt_model(&model_str).unwrap();
        let running_64bit = read(&c.root.join("proc/sys/kernel/arch")).trim() == "aarch64";
        let config = read(
            &c.root
                .join(c.boot_dir.trim_start_matches('/'))
                .join("config.txt"),
        );
        bad.extend(run_case(c.name, model, running_64bit, c.boot_dir, &config));
    }
    let sections = read(&here().join("tests/data/rpi/pi4-sections/config.txt"));
    bad.extend(run_case(
        "pi4-sections",
        Model::Pi4,
        true,
        "/boot/firmware",
        &sections,
    ));
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn only_lines_are_appended_and_the_original_is_a_prefix() {
    // Whatever the input, the generated config starts with the original
    // bytes: nothing of the device's own configuration is rewritten.
    for text in ["", "a=1", "[pi4]\nkernel=x.img", "# c\r\n[cm4]\r\n"] {
        let out = oneshot::with_entry(text, "kernel8.img").unwrap();
        assert!(out.starts_with(text), "{text:?} -> {out:?}");
        let tail = &out[text.len()..];
        assert!(tail.contains("[all]") && tail.contains("initramfs migrd-initrd.img followkernel"));
    }
}
