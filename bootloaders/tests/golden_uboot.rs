//! Golden files for every file the U-Boot strategy generates: the boot
//! script (text and image), the flag file and the list of changes, for a
//! board booting `boot.scr` from a FAT /boot (arm64) and one booting
//! `/boot/extlinux/extlinux.conf` from an ext4 root (armv7).
//!
//! The restore-first mode's edits (`--uboot-restore-first`) have cases of
//! their own: the BeagleBone fixture's uEnv.txt and an extlinux.conf read
//! first by distro boot.
//!
//! The expected files are in `tests/golden/uboot/<case>/`. After an
//! intended change, regenerate them and review the diff by eye:
//!
//! ```text
//! MIGRD_BLESS=1 cargo test -p migrd-bootloaders --test golden_uboot
//! git diff bootloaders/tests/golden
//! ```

#![allow(clippy::unwrap_used, clippy::panic)]

use migrd_bootloaders::change::Change;
use migrd_bootloaders::uboot::detect::EnvState;
use migrd_bootloaders::uboot::oneshot::script_text;
use migrd_bootloaders::uboot::restore_first::{self, EditInputs};
use migrd_bootloaders::uboot::script::{script_of, ImageArch};
use migrd_bootloaders::uboot::{arm, decide, detect, ArmInputs, BootFs, Decision, UbootFacts};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const CMDLINE: &str = "console=ttyAMA0 rootfstype=ramfs panic=10 migrd.plan=/migrd/plan.json";

struct Case {
    name: &'static str,
    facts: UbootFacts,
}

fn cases() -> Vec<Case> {
    let fs = |mp: &str, t: &str, files: &[&str]| BootFs {
        mount_point: PathBuf::from(mp),
        fstype: t.into(),
        files: files.iter().map(|f| f.to_string()).collect(),
        partuuid: None,
    };
    vec![
        Case {
            name: "boot-scr-fat-arm64",
            facts: UbootFacts {
                filesystems: vec![
                    fs("/boot", "vfat", &["/boot.scr", "/uEnv.txt"]),
                    fs("/", "ext4", &[]),
                ],
                env: EnvState::NotConfigured,
                arch: ImageArch::Arm64,
            },
        },
        Case {
            name: "extlinux-ext4-armv7",
            facts: UbootFacts {
                filesystems: vec![fs("/", "ext4", &["/boot/extlinux/extlinux.conf"])],
                env: EnvState::NotConfigured,
                arch: ImageArch::Arm,
            },
        },
    ]
}

fn golden_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/uboot")
        .join(case)
}

fn check(dir: &Path, name: &str, got: &[u8]) {
    let p = dir.join(name);
    if std::env::var_os("MIGRD_BLESS").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&p, got).unwrap();
        return;
    }
    let want = std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (MIGRD_BLESS=1 to create)", p.display()));
    assert!(
        want == got,
        "{} differs from the generated file:\n{}",
        p.display(),
        String::from_utf8_lossy(got)
    );
}

#[test]
fn generated_files_match_golden() {
    for c in cases() {
        let flow = detect(&c.facts).unwrap();
        let dir = golden_dir(c.name);
        let changes = arm(
            &flow,
            &c.facts,
            &ArmInputs {
                kernel: Path::new("/boot/vmlinuz-6.1.0-28-arm64"),
                initramfs: Path::new("/var/lib/migrd/work/ramdisk/initramfs.img"),
                cmdline: CMDLINE,
                original_script: Some(b"original boot.scr bytes"),
            },
        )
        .unwrap();
        let mut manifest = String::new();
        for ch in &changes {
            match ch {
                Change::MkDir { path } => writeln!(manifest, "mkdir {}", path.display()),
                Change::Copy { from, to, mode } => {
                    writeln!(
                        manifest,
                        "copy {} -> {} {mode:o}",
                        from.display(),
                        to.display()
                    )
                }
                Change::Write {
                    path,
                    bytes,
                    mode,
                    in_place,
                } => {
                    let name = path.file_name().unwrap().to_string_lossy();
                    check(&dir, &name, bytes);
                    writeln!(
                        manifest,
                        "write {} {mode:o} in_place={in_place} ({} bytes)",
                        path.display(),
                        bytes.len()
                    )
                }
                other => panic!("unexpected change {other:?}"),
            }
            .unwrap();
        }
        check(&dir, "changes.txt", manifest.as_bytes());
        let text = script_text(&flow, &c.facts, CMDLINE).unwrap();
        check(&dir, "boot.cmd", text.as_bytes());
        // The image in the changes carries exactly that script.
        let img = changes
            .iter()
            .find_map(|ch| match ch {
                Change::Write { path, bytes, .. } if path.ends_with("boot.scr") => Some(bytes),
                _ => None,
            })
            .unwrap();
        assert_eq!(script_of(img).as_deref(), Some(text.as_str()), "{}", c.name);
    }
}

/// A typical Debian u-boot-menu extlinux.conf at the root of a FAT boot
/// partition (where distro boot reads it before any script).
const EXTLINUX: &str = "## /extlinux/extlinux.conf\n##\n## IMPORTANT WARNING\n\ndefault l0\nmenu title U-Boot menu\nprompt 0\ntimeout 50\n\n\nlabel l0\n\tmenu label Debian GNU/Linux 12 (bookworm) 6.1.0-28-arm64\n\tlinux /vmlinuz-6.1.0-28-arm64\n\tinitrd /initrd.img-6.1.0-28-arm64\n\tfdtdir /dtbs/6.1.0-28-arm64/\n\tappend root=UUID=0b3a ro quiet\n\nlabel l0r\n\tmenu label Debian GNU/Linux 12 (bookworm) 6.1.0-28-arm64 (rescue target)\n\tlinux /vmlinuz-6.1.0-28-arm64\n\tinitrd /initrd.img-6.1.0-28-arm64\n\tfdtdir /dtbs/6.1.0-28-arm64/\n\tappend root=UUID=0b3a ro single\n\n";

#[test]
fn restore_first_files_match_golden() {
    let fs = |mp: &str, t: &str, file: &str| BootFs {
        mount_point: PathBuf::from(mp),
        fstype: t.into(),
        files: vec![file.to_string()],
        partuuid: Some("5e6a7b8c-01".into()),
    };
    let uenv = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/beaglebone-debian/boot/uEnv.txt"),
    )
    .unwrap();
    let cases = [
        (
            "restore-first-uenv-beaglebone",
            fs("/", "ext4", "/boot/uEnv.txt"),
            ImageArch::Arm,
            uenv.as_str(),
            "uEnv.txt",
        ),
        (
            "restore-first-extlinux-fat-arm64",
            fs("/boot", "vfat", "/extlinux/extlinux.conf"),
            ImageArch::Arm64,
            EXTLINUX,
            "extlinux.conf",
        ),
    ];
    for (name, bootfs, arch, original, file) in cases {
        let facts = UbootFacts {
            filesystems: vec![bootfs],
            env: EnvState::NotConfigured,
            arch,
        };
        let Ok(Decision::RestoreFirst(edit)) = decide(&facts, true) else {
            panic!("{name}: not the restore-first mode")
        };
        let dtbs = [PathBuf::from(
            "/boot/dtbs/5.10.168-ti-r71/am335x-boneblack.dtb",
        )];
        let changes = restore_first::arm(
            &edit,
            &facts,
            &EditInputs {
                original,
                kernel: Path::new("/boot/vmlinuz-5.10.168-ti-r71"),
                initramfs: Path::new("/var/lib/migrd/work/ramdisk/initramfs.img"),
                cmdline: CMDLINE,
                dtbs: &dtbs,
            },
        )
        .unwrap();
        let dir = golden_dir(name);
        let mut manifest = String::new();
        for ch in &changes {
            match ch {
                Change::MkDir { path } => writeln!(manifest, "mkdir {}", path.display()),
                Change::Copy { from, to, mode } => writeln!(
                    manifest,
                    "copy {} -> {} {mode:o}",
                    from.display(),
                    to.display()
                ),
                Change::Write { path, bytes, .. } => {
                    check(&dir, file, bytes);
                    writeln!(manifest, "write {} ({} bytes)", path.display(), bytes.len())
                }
                other => panic!("unexpected change {other:?}"),
            }
            .unwrap();
        }
        // The board file is written last: before that nothing boots differently.
        assert!(
            matches!(changes.last(), Some(Change::Write { path, .. }) if path.ends_with(file)),
            "{name}"
        );
        check(&dir, "changes.txt", manifest.as_bytes());
        let (action, (saved, bytes)) = restore_first::disarm(&edit, &facts, original.as_bytes());
        assert_eq!(bytes, original.as_bytes());
        check(
            &dir,
            "disarm.txt",
            format!("{action:#?}\ncarried at {saved}\n").as_bytes(),
        );
    }
}
