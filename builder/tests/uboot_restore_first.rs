//! The U-Boot strategy on the BeagleBone fixture (only /boot/uEnv.txt, so
//! no self-clearing path): `migrd check` and the armer `migrd migrate` runs
//! agree with and without `--uboot-restore-first`, and the restore-first
//! edit goes through the journal so `migrd cancel` puts every byte back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use clap::Parser;
use migrd::commands::migrate_args::MigrateArgs;
use migrd::journal::Journaled;
use migrd::migrate::arm::uboot::UbootArmer;
use migrd::migrate::arm::{Armer, Ctx};
use migrd::migrate::kernel::RunningKernel;
use migrd::probe::Facts;
use migrd_bootloaders::uboot::bootcount::SAVED_ENV;
use migrd_bootloaders::uboot::env::Env;
use migrd_bootloaders::uboot::restore_first::SAVED;
use migrd_init::plan::{BootStrategy, DisarmAction};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::{fixture, migrd};

const RELEASE: &str = "5.10.168-ti-r71";
const CMDLINE: &str = "console=ttyS0,115200n8 rootfstype=ramfs panic=10";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: MigrateArgs,
}

/// A copy of the fixture with what `migrd migrate` finds on a real board
/// besides: the running kernel's image and a built ramdisk.
struct Board {
    dir: tempfile::TempDir,
    facts: Facts,
    kernel: RunningKernel,
}

impl Board {
    fn new() -> Board {
        Board::with(|_| {})
    }

    /// The fixture copy, changed by `tweak` before it is probed.
    fn with(tweak: impl FnOnce(&Path)) -> Board {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let fx = fixture("beaglebone-debian");
        for e in walkdir::WalkDir::new(&fx) {
            let e = e.unwrap();
            let dst = r.join(e.path().strip_prefix(&fx).unwrap());
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&dst).unwrap();
            } else if e.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dst).unwrap();
            } else {
                std::fs::copy(e.path(), &dst).unwrap();
            }
        }
        let image = r.join(format!("boot/vmlinuz-{RELEASE}"));
        std::fs::write(&image, b"running kernel").unwrap();
        std::fs::create_dir_all(r.join("var/lib/migrd")).unwrap();
        std::fs::write(r.join("var/lib/migrd/initramfs.img"), b"ramdisk bytes").unwrap();
        tweak(r);
        let facts = migrd::probe::probe(r);
        let kernel = RunningKernel {
            release: RELEASE.into(),
            image,
            modules_dir: r.join("lib/modules").join(RELEASE),
            config: None,
            consoles: vec![],
        };
        Board { dir, facts, kernel }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `migrd migrate`'s strategy step: `prepare` with these flags.
    fn prepare(
        &self,
        args: &MigrateArgs,
    ) -> (UbootArmer, anyhow::Result<migrd::migrate::arm::Prepared>) {
        let mut a = UbootArmer::default();
        let ctx = Ctx {
            root: self.root(),
            facts: &self.facts,
            kernel: &self.kernel,
            args,
        };
        let p = a.prepare(&ctx);
        (a, p)
    }

    /// `migrd check --json`'s verdict on the uboot strategy.
    fn check(&self, flags: &[&str]) -> (bool, String) {
        let out = migrd()
            .args(["check", "--root"])
            .arg(self.root())
            .args(["--json", "--no-api-check", "--no-vpn-check", "-c"])
            .arg(self.root().join("config.json"))
            .args(flags)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = v["boot"]["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["strategy"] == "uboot")
            .unwrap()
            .clone();
        (
            c["usable"].as_bool().unwrap(),
            c["reason"].as_str().unwrap().to_string(),
        )
    }

    /// Every file under the root with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(self.root())
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                (
                    e.path().strip_prefix(self.root()).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// `migrd migrate`'s arming step: `armer`'s changes for the built
    /// ramdisk, applied through the undo journal.
    fn arm(&self, armer: &UbootArmer, a: &MigrateArgs) {
        let ctx = Ctx {
            root: self.root(),
            facts: &self.facts,
            kernel: &self.kernel,
            args: a,
        };
        let changes = armer
            .changes_for(&ctx, Path::new("/var/lib/migrd/initramfs.img"), CMDLINE)
            .unwrap();
        let mut j = Journaled::begin(self.root()).unwrap();
        for c in &changes {
            j.apply(c).unwrap();
        }
    }

    /// `migrd cancel`, which must succeed.
    fn cancel(&self) {
        let out = migrd()
            .args(["cancel", "--root"])
            .arg(self.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn text(&self, p: &str) -> String {
        std::fs::read_to_string(self.root().join(p)).unwrap()
    }
}

fn args(flags: &[&str]) -> MigrateArgs {
    Cli::parse_from(std::iter::once("migrd").chain(flags.iter().copied())).a
}

#[test]
fn check_and_migrate_agree_on_the_beaglebone_fixture() {
    let b = Board::new();
    for flags in [&[][..], &["--uboot-restore-first"][..]] {
        let (usable, reason) = b.check(flags);
        let (armer, prepared) = b.prepare(&args(flags));
        match prepared {
            Ok(_) => assert!(usable, "{flags:?}: migrate arms, check says: {reason}"),
            Err(e) => {
                assert!(
                    !usable,
                    "{flags:?}: check says usable, migrate refuses: {e:#}"
                );
                assert_eq!(format!("{e:#}"), reason, "{flags:?}");
            }
        }
        if flags.is_empty() {
            assert!(!usable);
            // The refusal explains the risk and names the flag.
            assert!(reason.contains("--uboot-restore-first"), "{reason}");
            assert!(reason.contains("boots again on every reset"), "{reason}");
            assert!(reason.contains("powers the device off"), "{reason}");
            assert_eq!(armer.plan_strategy(), BootStrategy::Uboot);
        } else {
            assert!(usable, "{reason}");
            assert!(reason.starts_with("restore-first"), "{reason}");
            assert!(reason.contains("/boot/uEnv.txt"), "{reason}");
            // Stage 2 is told the boot does not clear itself.
            assert_eq!(armer.plan_strategy(), BootStrategy::UbootRestoreFirst);
            assert!(!armer.plan_strategy().self_clearing());
        }
    }
}

#[test]
fn a_board_that_counts_boots_is_reported_in_the_restore_first_reason() {
    let b = Board::new();
    let mut env = Env::new();
    env.set("bootlimit", "3").unwrap();
    env.set("altbootcmd", "run recovery").unwrap();
    std::fs::write(
        b.root().join("dev/mmcblk1boot0"),
        env.encode(0x2000, None).unwrap(),
    )
    .unwrap();
    std::fs::write(
        b.root().join("etc/fw_env.config"),
        "/dev/mmcblk1boot0 0x0 0x2000\n",
    )
    .unwrap();
    let (usable, reason) = b.check(&["--uboot-restore-first"]);
    assert!(usable, "{reason}");
    // On a raw device range: reported, not armed, and why.
    assert!(
        reason.contains(
            "counts boots (bootlimit=3 with altbootcmd), but migrd does not arm its counter: \
             the environment is kept on /dev/mmcblk1boot0"
        ),
        "{reason}"
    );
    let (_, prepared) = b.prepare(&args(&["--uboot-restore-first"]));
    assert_eq!(prepared.unwrap().disarm.len(), 1, "only the board file");
    // bootlimit without altbootcmd: nothing to say.
    let mut env = Env::new();
    env.set("bootlimit", "3").unwrap();
    std::fs::write(
        b.root().join("dev/mmcblk1boot0"),
        env.encode(0x2000, None).unwrap(),
    )
    .unwrap();
    let (_, reason) = b.check(&["--uboot-restore-first"]);
    assert!(!reason.contains("counts boots"), "{reason}");
}

#[test]
fn restore_first_arms_through_the_journal_and_cancel_restores_every_byte() {
    let b = Board::new();
    let before = b.snapshot();
    let uenv = b.text("boot/uEnv.txt");
    let a = args(&["--uboot-restore-first"]);
    let (armer, prepared) = b.prepare(&a);
    let p = prepared.unwrap();
    assert_eq!(
        p.disarm,
        [DisarmAction::RestoreFile {
            partuuid: "5e6a7b8c-01".into(),
            fstype: "ext4".into(),
            path: "boot/uEnv.txt".into(),
            original: SAVED.into(),
        }]
    );
    assert_eq!(
        p.ramdisk_files,
        [(SAVED.to_string(), uenv.clone().into_bytes())]
    );
    b.arm(&armer, &a);
    let armed = b.text("boot/uEnv.txt");
    assert!(armed.contains("\nuname_r=migrd\n"), "{armed}");
    assert!(armed.contains(&format!("\ncmdline={CMDLINE}\n")), "{armed}");
    assert!(
        armed.contains("enable_uboot_overlays=1\n"),
        "other lines kept: {armed}"
    );
    assert_eq!(b.text("boot/vmlinuz-migrd"), "running kernel");
    assert_eq!(b.text("boot/initrd.img-migrd"), "ramdisk bytes");
    assert_eq!(
        std::fs::read(b.root().join("boot/dtbs/migrd/am335x-boneblack.dtb")).unwrap(),
        std::fs::read(
            b.root()
                .join(format!("boot/dtbs/{RELEASE}/am335x-boneblack.dtb"))
        )
        .unwrap()
    );
    // `migrd cancel` puts every byte back and removes every added file.
    b.cancel();
    assert_eq!(b.snapshot(), before);
    assert!(!b.root().join("boot/dtbs/migrd").exists());
}

/// The board's root filesystem with `/extlinux/extlinux.conf`: distro boot
/// reads it before any script, so only the restore-first edit works.
const EXTLINUX: &str = "default l0\ntimeout 10\n\nlabel l0\n\tlinux /boot/vmlinuz-5.10.168-ti-r71\n\tfdtdir /boot/dtbs/5.10.168-ti-r71/\n\tappend root=/dev/mmcblk1p1 ro\n";

#[test]
fn extlinux_read_first_is_edited_only_with_the_flag_and_cancel_restores_it() {
    let b = Board::with(|r| {
        std::fs::create_dir_all(r.join("extlinux")).unwrap();
        std::fs::write(r.join("extlinux/extlinux.conf"), EXTLINUX).unwrap();
    });
    // check and migrate agree, with and without the flag.
    let (usable, reason) = b.check(&[]);
    let (_, prepared) = b.prepare(&args(&[]));
    assert!(!usable);
    assert_eq!(format!("{:#}", prepared.unwrap_err()), reason);
    assert!(
        reason.contains("/extlinux/extlinux.conf") && reason.contains("--uboot-restore-first"),
        "{reason}"
    );
    let (usable, reason) = b.check(&["--uboot-restore-first"]);
    assert!(usable, "{reason}");
    assert!(
        reason.contains("/extlinux/extlinux.conf is edited"),
        "{reason}"
    );

    let before = b.snapshot();
    let a = args(&["--uboot-restore-first"]);
    let (armer, prepared) = b.prepare(&a);
    let p = prepared.unwrap();
    assert_eq!(
        p.disarm,
        [DisarmAction::RestoreFile {
            partuuid: "5e6a7b8c-01".into(),
            fstype: "ext4".into(),
            path: "extlinux/extlinux.conf".into(),
            original: SAVED.into(),
        }]
    );
    b.arm(&armer, &a);
    let armed = b.text("extlinux/extlinux.conf");
    assert!(armed.contains("\ndefault migrd\n"), "{armed}");
    assert!(
        armed.ends_with(&format!(
            "label migrd\n\tmenu label migrd migration ramdisk\n\tlinux /migrd/kernel\n\tinitrd /migrd/initramfs\n\tfdtdir /boot/dtbs/5.10.168-ti-r71/\n\tappend {CMDLINE}\n"
        )),
        "{armed}"
    );
    assert_eq!(b.text("migrd/kernel"), "running kernel");
    assert_eq!(b.text("migrd/initramfs"), "ramdisk bytes");
    b.cancel();
    assert_eq!(b.snapshot(), before);
    assert!(!b.root().join("migrd").exists());
}

/// A board counting boots with its environment in a file on the boot
/// filesystem (`CONFIG_ENV_IS_IN_FAT`-style; here the fixture's ext4 root).
fn counting_board() -> (Board, Vec<u8>) {
    let mut env = Env::new();
    env.set("bootcmd", "run distro_bootcmd").unwrap();
    env.set("bootlimit", "3").unwrap();
    env.set("altbootcmd", "run recovery").unwrap();
    let bytes = env.encode(0x2000, None).unwrap();
    let b = Board::with(|r| {
        std::fs::write(r.join("boot/uboot.env"), &bytes).unwrap();
        std::fs::write(r.join("etc/fw_env.config"), "/boot/uboot.env 0x0 0x2000\n").unwrap();
    });
    (b, bytes)
}

#[test]
fn a_counting_board_gets_its_counter_armed_and_cancel_restores_the_environment() {
    let (b, original) = counting_board();
    let (usable, reason) = b.check(&["--uboot-restore-first"]);
    assert!(usable, "{reason}");
    assert!(
        reason.contains(
            "the board counts boots (bootlimit=3): migrd sets bootcount=0 and upgrade_available=1 in /boot/uboot.env"
        ) && reason.contains("altbootcmd (`run recovery`)"),
        "{reason}"
    );
    let before = b.snapshot();
    let a = args(&["--uboot-restore-first"]);
    let (armer, prepared) = b.prepare(&a);
    let p = prepared.unwrap();
    // Stage 2 puts the board file back first, then the environment.
    assert_eq!(
        p.disarm,
        [
            DisarmAction::RestoreFile {
                partuuid: "5e6a7b8c-01".into(),
                fstype: "ext4".into(),
                path: "boot/uEnv.txt".into(),
                original: SAVED.into(),
            },
            DisarmAction::RestoreFile {
                partuuid: "5e6a7b8c-01".into(),
                fstype: "ext4".into(),
                path: "boot/uboot.env".into(),
                original: SAVED_ENV.into(),
            }
        ]
    );
    assert_eq!(
        p.ramdisk_files[1],
        (SAVED_ENV.to_string(), original.clone())
    );
    b.arm(&armer, &a);
    let env_file = b.root().join("boot/uboot.env");
    let armed = Env::decode(&std::fs::read(&env_file).unwrap(), false, "armed")
        .unwrap()
        .env;
    assert_eq!(armed.get("bootcount"), Some("0"));
    assert_eq!(armed.get("upgrade_available"), Some("1"));
    assert_eq!(armed.get("bootlimit"), Some("3"));
    assert_eq!(armed.get("bootcmd"), Some("run distro_bootcmd"));
    assert!(b.text("boot/uEnv.txt").contains("\nuname_r=migrd\n"));
    // U-Boot counts two failed boots of the ramdisk, then the operator
    // cancels from the old OS: every byte comes back, the count included.
    let mut counted = armed.clone();
    counted.set("bootcount", "2").unwrap();
    std::fs::write(&env_file, counted.encode(0x2000, None).unwrap()).unwrap();
    b.cancel();
    assert_eq!(b.snapshot(), before);
}
