//! The Raspberry Pi strategies' files, booted by the firmware emulator
//! (`migrd_lab::rpi_firmware`, a model of the firmware's file selection —
//! not the firmware): what the firmware would load after arming, after the
//! one-shot is spent, and after stage 2's restore. No QEMU; runs in CI
//! with the unit tests.
//!
//! Scenarios: tryboot migrate, tryboot fallback (flag consumed, config.txt
//! untouched), config.txt migrate, config.txt fallback after the
//! ramdisk's restore — on the Pi 4 and Pi 3 fixtures, a config.txt with
//! sections and an `os_prefix`, and once from a FAT image.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use migrd_bootloaders::change::Change;
use migrd_bootloaders::rpi::oneshot::{self, CurrentBoot, Inputs};
use migrd_bootloaders::rpi::Model;
use migrd_init::plan::DisarmAction;
use migrd_lab::rpi_firmware::{Board, BootFs, DirFs, FatImage, Firmware, Selection};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

const CMDLINE: &str = "console=ttyAMA0,115200 rootfstype=ramfs panic=10";

/// A boot partition (folder) with the fixture's config.txt and
/// cmdline.txt, kernel files, and a built ramdisk beside it.
struct Partition {
    dir: tempfile::TempDir,
    ramdisk: PathBuf,
}

impl Partition {
    fn new(config: &str, cmdline: &str, prefix: &str) -> Partition {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::create_dir_all(boot.join(prefix)).unwrap();
        std::fs::write(boot.join("config.txt"), config).unwrap();
        std::fs::write(boot.join(format!("{prefix}cmdline.txt")), cmdline).unwrap();
        for k in ["kernel7.img", "kernel7l.img", "kernel8.img"] {
            std::fs::write(boot.join(format!("{prefix}{k}")), k).unwrap();
        }
        let ramdisk = dir.path().join("initramfs.img");
        std::fs::write(&ramdisk, b"ramdisk").unwrap();
        Partition { dir, ramdisk }
    }
    fn from_fixture(name: &str, boot: &str) -> Partition {
        let fx = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
            .join(boot);
        Partition::new(
            &std::fs::read_to_string(fx.join("config.txt")).unwrap(),
            &std::fs::read_to_string(fx.join("cmdline.txt")).unwrap(),
            "",
        )
    }
    fn boot(&self) -> PathBuf {
        self.dir.path().join("boot")
    }
    fn fs(&self) -> DirFs {
        DirFs(self.boot())
    }
    fn config(&self) -> String {
        std::fs::read_to_string(self.boot().join("config.txt")).unwrap()
    }
    /// Apply strategy changes (device paths are under `/b`).
    fn apply(&self, changes: &[Change]) {
        let map = |p: &Path| self.boot().join(p.strip_prefix("/b").unwrap());
        for c in changes {
            match c {
                Change::Copy { from, to, .. } => {
                    std::fs::copy(from, map(to)).unwrap();
                }
                Change::Write { path, bytes, .. } => std::fs::write(map(path), bytes).unwrap(),
                other => panic!("unexpected change {other:?}"),
            }
        }
    }
    fn arm(&self, model: Model, tryboot: bool, running_64bit: bool) -> Vec<Change> {
        let config = self.config();
        let cur = CurrentBoot::read(&config, model, running_64bit, &|_| None).unwrap();
        let i = Inputs {
            boot_dir: Path::new("/b"),
            config_txt: &config,
            current: &cur,
            initramfs: &self.ramdisk,
            cmdline: CMDLINE,
            kernel_copy: None,
        };
        let changes = if tryboot {
            oneshot::tryboot(model, &i).unwrap()
        } else {
            oneshot::config_edit(&i).unwrap()
        };
        self.apply(&changes);
        changes
    }
}

fn assert_ramdisk(sel: &Selection, prefix: &str, kernel: &str) {
    assert_eq!(sel.kernel, format!("{prefix}{kernel}"), "{sel:?}");
    assert_eq!(
        sel.initramfs,
        [format!("{prefix}migrd-initrd.img")],
        "{sel:?}"
    );
    assert_eq!(sel.cmdline, CMDLINE, "{sel:?}");
}

fn assert_old_os(sel: &Selection, prefix: &str, kernel: &str) {
    assert_eq!(sel.config_file, "config.txt");
    assert_eq!(sel.kernel, format!("{prefix}{kernel}"), "{sel:?}");
    assert!(
        sel.initramfs.iter().all(|f| !f.contains("migrd")),
        "{sel:?}"
    );
    assert!(sel.cmdline.contains("root=PARTUUID="), "{sel:?}");
}

#[test]
fn tryboot_migrate_then_fallback_on_the_pi4_fixture() {
    let p = Partition::from_fixture("rpi4-bookworm", "boot/firmware");
    let before = p.config();
    p.arm(Model::Pi4, true, true);
    assert_eq!(p.config(), before, "config.txt untouched by tryboot");
    // Armed but not yet rebooted with the flag: a plain reboot is the old OS.
    let mut fw = Firmware::default();
    assert_old_os(&fw.boot(&p.fs(), Board::Pi4).unwrap(), "", "kernel8.img");
    // reboot "0 tryboot": the ramdisk, once.
    fw.tryboot_flag = true;
    let sel = fw.boot(&p.fs(), Board::Pi4).unwrap();
    assert_eq!(sel.config_file, "tryboot.txt");
    assert_ramdisk(&sel, "", "kernel8.img");
    // The ramdisk fails (or power is cut): the flag was consumed.
    assert!(!fw.tryboot_flag);
    assert_old_os(&fw.boot(&p.fs(), Board::Pi4).unwrap(), "", "kernel8.img");
}

#[test]
fn config_txt_migrate_then_fallback_after_the_restore_on_the_fixtures() {
    // The fixtures' running kernels: armv7l on the Pi 3s, aarch64 on the Pi 4.
    let cases = [
        (
            "rpi3-buster",
            "boot",
            Board::Pi3,
            Model::Pi3,
            false,
            "kernel7.img",
        ),
        (
            "rpi3bplus-bookworm",
            "boot/firmware",
            Board::Pi3Plus,
            Model::Pi3Plus,
            false,
            "kernel7.img",
        ),
        (
            "rpi4-bookworm",
            "boot/firmware",
            Board::Pi4,
            Model::Pi4,
            true,
            "kernel8.img",
        ),
    ];
    for (name, boot, board, model, running_64bit, kernel) in cases {
        let p = Partition::from_fixture(name, boot);
        let before = p.config();
        p.arm(model, false, running_64bit);
        let mut fw = Firmware::default();
        // Every boot until the ramdisk restores config.txt is the ramdisk.
        for _ in 0..2 {
            assert_ramdisk(&fw.boot(&p.fs(), board).unwrap(), "", kernel);
        }
        // Stage 2's disarm: the saved original written back as planned.
        let (action, (saved_at, saved)) = oneshot::config_disarm("abcd-01", before.as_bytes());
        let DisarmAction::RestoreFile { path, original, .. } = action else {
            panic!("{action:?}")
        };
        assert_eq!(original, saved_at);
        std::fs::write(p.boot().join(path), saved).unwrap();
        assert_old_os(&fw.boot(&p.fs(), board).unwrap(), "", kernel);
        assert_eq!(p.config(), before, "{name}");
    }
}

#[test]
fn sections_os_prefix_and_an_existing_initramfs_are_honoured() {
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../bootloaders/tests/data/rpi/pi4-sections/config.txt"),
    )
    .unwrap();
    let p = Partition::new(
        &config,
        "console=serial0 root=PARTUUID=0badcafe-02 rootwait\n",
        "current/",
    );
    std::fs::write(p.boot().join("current/initrd.img-6.6.31"), b"old initrd").unwrap();
    let old = Firmware::default().boot(&p.fs(), Board::Pi4).unwrap();
    assert_eq!(old.initramfs, ["current/initrd.img-6.6.31"]);
    p.arm(Model::Pi4, true, true);
    let sel = Firmware { tryboot_flag: true }
        .boot(&p.fs(), Board::Pi4)
        .unwrap();
    assert_ramdisk(&sel, "current/", "kernel8.img");
    assert_eq!(Firmware::default().boot(&p.fs(), Board::Pi4).unwrap(), old);
    // The CM4 (its own [cm4] section) boots the ramdisk too: [all] holds.
    p.arm(Model::Cm4, false, true);
    let sel = Firmware::default().boot(&p.fs(), Board::Pi4).unwrap();
    assert_ramdisk(&sel, "current/", "kernel8.img");
}

/// The partition as a FAT image made with the `fatfs` crate.
fn fat_image(from: &Path) -> tempfile::NamedTempFile {
    let mut img = std::io::Cursor::new(vec![0u8; 8 << 20]);
    fatfs::format_volume(&mut img, fatfs::FormatVolumeOptions::new()).unwrap();
    img.rewind().unwrap();
    {
        let fs = fatfs::FileSystem::new(&mut img, fatfs::FsOptions::new()).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                let mut f = fs
                    .root_dir()
                    .create_file(&e.file_name().to_string_lossy())
                    .unwrap();
                f.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
            }
        }
    }
    let mut out = tempfile::NamedTempFile::new().unwrap();
    out.write_all(img.get_ref()).unwrap();
    out
}

#[test]
fn a_fat_image_gives_the_same_selection_as_the_folder() {
    let p = Partition::from_fixture("rpi4-bookworm", "boot/firmware");
    p.arm(Model::Pi4, true, true);
    let img = fat_image(&p.boot());
    let fat = FatImage::open(img.path(), 0, 8 << 20).unwrap();
    assert_eq!(fat.read("tryboot.txt"), p.fs().read("tryboot.txt"));
    for flag in [true, false] {
        assert_eq!(
            Firmware { tryboot_flag: flag }
                .boot(&fat, Board::Pi4)
                .unwrap(),
            Firmware { tryboot_flag: flag }
                .boot(&p.fs(), Board::Pi4)
                .unwrap()
        );
    }
    let e = FatImage::open(img.path(), 512, 4096)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a FAT filesystem"), "{e}");
}
