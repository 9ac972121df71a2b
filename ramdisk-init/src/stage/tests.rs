//! The stage-2 state machine against a fake machine: disks, partitions and
//! filesystems are folders and files in a temporary directory.

use super::*;
use crate::efi::load_option::{HardDrive, LoadOption, PartSignature};
use crate::efi::table::TablePart;
use crate::efi::vars::{boot_var, EfiVars};
use crate::events::EventLog;
use crate::fsprobe::FsInfo;
use crate::guard::Recorder;
use crate::plan::tests_support::sample_plan;
use crate::plan::Plan;
use crate::plan::{InjectTarget, Injection, PayloadRole, StatusLocation, TestHooks, PLAN_VERSION};
use crate::system::{FlashFailure, Flashed, TargetGeometry};
use crate::system::{FlashProgress, ModuleLoad};
use crate::target::Disk;
use serde_json::json;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Fake {
    plan: String,
    root: PathBuf,
    disks: Vec<Disk>,
    appear_after: Cell<u32>,
    needs: Vec<(&'static str, &'static str)>,
    loaded: Vec<String>,
    flashed: bool,
    flash_failures: u32,
    /// The failing flashes wrote something before failing.
    failures_write: bool,
    /// Another attempt may succeed (an I/O error, not a decode error).
    failures_retry: bool,
    /// What re-reading the partition table reports.
    reread: Result<(), String>,
    /// The kernel's view of vda is the flashed image's table.
    kernel_new: bool,
    /// Partitions added one by one, when they were.
    added: Option<Vec<TablePart>>,
    flash_calls: u32,
    /// What opening the target reports.
    geometry: Result<TargetGeometry, String>,
    /// Booted by UEFI: efivarfs is the folder `efivars` under the root.
    uefi: bool,
    /// The new image's first partition has the GPT ESP type.
    esp_typed: bool,
}

fn fs(fstype: &str, label: &str, uuid: &str) -> FsInfo {
    FsInfo {
        fstype: fstype.into(),
        label: label.into(),
        uuid: uuid.into(),
    }
}

impl Fake {
    fn table(&self) -> BTreeMap<PathBuf, FsInfo> {
        let dev = self.root.join("dev");
        let mut m = BTreeMap::new();
        // A USB stick for the log, untouched by flashing.
        m.insert(dev.join("sdb1"), fs("vfat", "LOGS", "10G-0001"));
        if self.kernel_new {
            m.insert(dev.join("vda1"), fs("vfat", "resin-boot", "AAAA-0001"));
            m.insert(dev.join("vda2"), fs("ext4", "resin-rootA", "r-a"));
            m.insert(dev.join("vda6"), fs("ext4", "resin-data", "r-d"));
        } else {
            m.insert(dev.join("vda1"), fs("ext4", "", "old-boot-uuid"));
        }
        m
    }

    /// The folder standing for a filesystem's content.
    fn fs_dir(&self, uuid: &str) -> PathBuf {
        self.root.join("fs").join(uuid)
    }
}

impl System for Fake {
    fn setup(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn read_plan(&self) -> Result<String, String> {
        Ok(self.plan.clone())
    }
    fn load_module(&mut self, path: &str) -> Result<ModuleLoad, String> {
        let m = super::before::short(path);
        if self.loaded.contains(&m) {
            return Ok(ModuleLoad::AlreadyLoaded);
        }
        if m == "crct10dif_pclmul" {
            return Ok(ModuleLoad::NoDevice);
        }
        for (mod_, dep) in &self.needs {
            if *mod_ == m && !self.loaded.iter().any(|l| l == dep) {
                return Ok(ModuleLoad::NeedsDependency);
            }
        }
        self.loaded.push(m);
        Ok(ModuleLoad::Loaded)
    }
    fn disks(&self) -> Result<Vec<Disk>, String> {
        let n = self.appear_after.get();
        if n > 0 {
            self.appear_after.set(n - 1);
            return Ok(vec![]);
        }
        Ok(self.disks.clone())
    }
    fn partitions(&self, disk: &str) -> Result<Vec<PathBuf>, String> {
        Ok(self
            .table()
            .into_keys()
            .filter(|p| p.to_string_lossy().contains(&format!("/dev/{disk}")))
            .collect())
    }
    fn fs_info(&self, dev: &Path) -> Option<FsInfo> {
        self.table().get(dev).cloned()
    }
    /// MBR-style PARTUUIDs: `vda` has signature 0000beef, others 0000cafe.
    fn partuuids(&self, disk: &str) -> Result<Vec<(PathBuf, String)>, String> {
        let sig = if disk == "vda" {
            "0000beef"
        } else {
            "0000cafe"
        };
        Ok(self
            .partitions(disk)?
            .into_iter()
            .map(|dev| {
                let n: String = dev
                    .to_string_lossy()
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let n: u32 = n.chars().rev().collect::<String>().parse().unwrap_or(0);
                (dev, format!("{sig}-{n:02}"))
            })
            .collect())
    }
    fn mount(&mut self, dev: &Path, fstype: &str, at: &Path) -> Result<(), String> {
        let info = self.fs_info(dev).ok_or("no fs")?;
        assert_eq!(info.fstype, fstype, "mounted with the wrong type");
        let dir = self.fs_dir(&info.uuid);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir(at);
        std::os::unix::fs::symlink(&dir, at).map_err(|e| e.to_string())
    }
    fn umount(&mut self, at: &Path) -> Result<(), String> {
        std::fs::remove_file(at).map_err(|e| format!("umount {}: {e}", at.display()))
    }
    fn flash(
        &mut self,
        image: &Path,
        _expected: Option<&crate::plan::DecodedImage>,
        disk: &str,
        progress: &mut dyn FnMut(FlashProgress),
    ) -> Result<Flashed, FlashFailure> {
        self.flash_calls += 1;
        assert_eq!(disk, "vda");
        assert!(image.is_file(), "{}", image.display());
        if self.flash_calls <= self.flash_failures {
            return Err(FlashFailure {
                reason: format!("write error at attempt {}", self.flash_calls),
                wrote: self.failures_write,
                retry: self.failures_retry,
            });
        }
        progress(FlashProgress {
            written: 3,
            total: Some(3),
        });
        self.flashed = true;
        Ok(Flashed {
            bytes: 3,
            sha256: "x".into(),
            verified: true,
        })
    }
    fn reread_partitions(&mut self, disk: &str) -> Result<(), String> {
        assert_eq!(disk, "vda");
        self.reread.clone()?;
        self.kernel_new = self.flashed;
        Ok(())
    }
    fn add_partitions(&mut self, disk: &str, parts: &[TablePart]) -> Result<(), String> {
        assert_eq!(disk, "vda");
        self.added = Some(parts.to_vec());
        self.kernel_new = self.flashed;
        Ok(())
    }
    fn open_target(&mut self, disk: &str) -> Result<TargetGeometry, String> {
        assert_eq!(disk, "vda");
        self.geometry.clone()
    }
    fn efivarfs(&mut self) -> Result<PathBuf, String> {
        if !self.uefi {
            return Err("not booted by UEFI (/sys/firmware/efi is missing)".into());
        }
        let d = self.root.join("efivars");
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        Ok(d)
    }
    fn partition_table(&self, disk: &str) -> Result<Vec<TablePart>, String> {
        assert_eq!(disk, "vda");
        let part = |n: u32, guid: &str, esp_type: bool| TablePart {
            hd: HardDrive {
                partition: n,
                start: 2048 * u64::from(n),
                size: 2048,
                signature: PartSignature::Gpt(guid.parse().unwrap()),
            },
            esp_type,
        };
        Ok(if self.flashed {
            vec![
                part(1, NEW_ESP, self.esp_typed),
                part(2, "22222222-0000-4000-8000-000000000002", false),
                part(6, "66666666-0000-4000-8000-000000000006", false),
            ]
        } else {
            vec![part(1, OLD_ESP, true)]
        })
    }
    fn payload_root(&self) -> &Path {
        &self.root
    }
    fn sleep(&self, _d: Duration) {}
}

/// Partition GUIDs of the old OS's ESP and the flashed image's.
const OLD_ESP: &str = "01d0e5b0-0000-4000-8000-000000000001";
const NEW_ESP: &str = "aeaeaeae-0000-4000-8000-000000000001";

fn setup(content: &[u8], tweak: impl FnOnce(&mut Plan)) -> (tempfile::TempDir, Fake) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("payload")).unwrap();
    std::fs::write(d.path().join("payload/balena.img.gz"), content).unwrap();
    std::fs::write(
        d.path().join("payload/config.json"),
        br#"{"apiKey":"s3cret"}"#,
    )
    .unwrap();
    let mut plan = sample_plan();
    plan.modules = vec![
        "/lib/modules/virtio_blk.ko".into(),
        "/lib/modules/crct10dif_pclmul.ko".into(),
        "/lib/modules/virtio.ko".into(),
    ];
    plan.payload.push(crate::plan::PayloadFile {
        role: PayloadRole::Config,
        placement: crate::plan::Placement::Embedded {
            path: "/payload/config.json".into(),
        },
        size: 19,
        sha256: crate::payload::sha256_hex(&br#"{"apiKey":"s3cret"}"#[..]).unwrap(),
        compression: crate::plan::Compression::None,
    });
    plan.inject = vec![Injection {
        source: "/payload/config.json".into(),
        partition: InjectTarget::ResinBoot,
        path: "config.json".into(),
        mode: 0o600,
    }];
    plan.status = Some(StatusLocation {
        fs_uuid: "old-boot-uuid".into(),
        fstype: "ext4".into(),
        path: "/boot/migrd/status.json".into(),
    });
    tweak(&mut plan);
    let fake = Fake {
        plan: plan.to_json().unwrap(),
        root: d.path().to_path_buf(),
        disks: vec![
            Disk {
                name: "sdb".into(),
                serial: Some("USB-STICK".into()),
                ..Default::default()
            },
            Disk {
                name: "vda".into(),
                serial: Some("DISK1".into()),
                ..Default::default()
            },
        ],
        appear_after: Cell::new(3),
        needs: vec![("virtio_blk", "virtio")],
        loaded: vec![],
        flashed: false,
        flash_failures: 0,
        failures_write: true,
        failures_retry: true,
        reread: Ok(()),
        kernel_new: false,
        added: None,
        flash_calls: 0,
        geometry: Ok(TargetGeometry {
            size: 8 << 30,
            sector_size: 512,
        }),
        uefi: false,
        esp_typed: true,
    };
    (d, fake)
}

fn events(buf: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(buf)
        .lines()
        .map(|l| l.trim_matches('\r'))
        .filter(|l| l.starts_with("{\"migrd\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn steps(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["step"].as_str().unwrap(),
                e["status"].as_str().unwrap()
            )
        })
        .collect()
}

fn status_file(sys: &Fake) -> serde_json::Value {
    let p = sys.fs_dir("old-boot-uuid").join("boot/migrd/status.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

#[test]
fn a_good_payload_is_flashed_then_config_and_log_injected() {
    let (_d, mut sys) = setup(b"abc", |_| {});
    let mut buf = Vec::new();
    let exit = run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default());
    assert_eq!(exit, Exit::Migrated);
    assert_eq!(
        sys.loaded,
        ["virtio", "virtio_blk"],
        "dependency retried first"
    );
    let ev = events(&buf);
    assert_eq!(
        steps(&ev),
        [
            "start/begin",
            "setup/ok",
            "plan/ok",
            "modules/ok",
            "watchdog/skip",
            "disarm/skip",
            "status/begin",
            "status/ok",
            "find-target/ok",
            "find-target/ok",
            "load-payload/ok",
            "verify/ok",
            "verify/ok",
            "point-of-no-return/ok",
            "point-of-no-return/ok",
            "flash/begin",
            "flash/ok",
            "reread-partitions/ok",
            "inject/ok",
            "done/ok"
        ]
    );
    assert_eq!(ev[3]["data"]["no_device"], json!(["crct10dif_pclmul"]));
    let boot = sys.fs_dir("AAAA-0001");
    let cfg = boot.join("config.json");
    assert_eq!(std::fs::read(&cfg).unwrap(), br#"{"apiKey":"s3cret"}"#);
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = std::fs::read_to_string(sys.fs_dir("r-d").join(crate::inject::LOG_PATH)).unwrap();
    assert!(
        log.contains("\"point-of-no-return\"") && log.contains("\"flash\""),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "the API key leaked into the log");
    assert!(!String::from_utf8_lossy(&buf).contains("s3cret"));
    // The old OS got only the first word (the flash then overwrites it
    // on a real disk; the fake keeps it).
    assert_eq!(status_file(&sys)["outcome"], "started");
}

#[test]
fn a_flipped_byte_falls_back_before_writing_and_says_why_to_the_old_os() {
    let (_d, mut sys) = setup(b"abd", |_| {});
    let mut buf = Vec::new();
    match run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()) {
        Exit::Fallback {
            step: Step::Verify,
            reason,
        } => assert!(reason.contains("sha256"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sys.flash_calls, 0,
        "nothing may be written after a failed verify"
    );
    let st = status_file(&sys);
    assert_eq!(
        (st["outcome"].as_str(), st["step"].as_str()),
        (Some("fallback"), Some("verify"))
    );
    assert!(st["reason"]
        .as_str()
        .unwrap()
        .contains("/payload/balena.img.gz"));
    assert!(steps(&events(&buf)).contains(&"status/ok".to_string()));
}

#[test]
fn the_log_device_gets_the_whole_log_whatever_the_outcome() {
    for content in [&b"abc"[..], &b"abd"[..]] {
        let (_d, mut sys) = setup(content, |p| {
            p.log.device = Some(StatusLocation {
                fs_uuid: "10G-0001".into(),
                fstype: "vfat".into(),
                path: String::new(),
            })
        });
        let mut buf = Vec::new();
        let exit = run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default());
        let log =
            std::fs::read_to_string(sys.fs_dir("10G-0001").join(crate::oldos::DEVICE_LOG_PATH))
                .unwrap();
        assert!(log.contains("\"verify\""), "{exit:?}: {log}");
        assert!(!log.contains("s3cret"));
    }
}

#[test]
fn pretend_runs_up_to_the_point_of_no_return_and_goes_back() {
    let (_d, mut sys) = setup(b"abc", |p| p.pretend = true);
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::PretendDone
    );
    assert_eq!(sys.flash_calls, 0);
    assert_eq!(status_file(&sys)["outcome"], "pretend-ok");
    assert!(!steps(&events(&buf))
        .iter()
        .any(|s| s.starts_with("point-of-no-return")));
}

#[test]
fn flashing_is_retried_and_gives_up_without_booting_garbage() {
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.flash_failures = FLASH_ATTEMPTS - 1;
    assert_eq!(
        run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default()
        ),
        Exit::Migrated
    );
    assert_eq!(sys.flash_calls, FLASH_ATTEMPTS);
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.flash_failures = FLASH_ATTEMPTS;
    assert!(matches!(
        run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default()
        ),
        Exit::FlashFailed { .. }
    ));
}

/// A target whose size cannot be read (the armv7 BLKGETSIZE64 bug) or
/// that reports 0 bytes is found before the point of no return: back to
/// the old OS, with its status, and the flash never runs.
#[test]
fn a_target_that_cannot_be_opened_or_sized_falls_back_before_writing() {
    for (geometry, want) in [
        (
            Err("reading the size of /dev/vda failed: Inappropriate ioctl for device".to_string()),
            "Inappropriate ioctl",
        ),
        (
            Ok(TargetGeometry {
                size: 0,
                sector_size: 512,
            }),
            "size of 0 bytes",
        ),
    ] {
        let (_d, mut sys) = setup(b"abc", |_| {});
        sys.geometry = geometry;
        match run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default(),
        ) {
            Exit::Fallback {
                step: Step::FindTarget,
                reason,
            } => assert!(
                reason.contains(want) && reason.contains("nothing was written"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(sys.flash_calls, 0);
        let st = status_file(&sys);
        assert_eq!(
            (st["outcome"].as_str(), st["step"].as_str()),
            (Some("fallback"), Some("find-target"))
        );
    }
}

/// A flash that fails before its first write leaves the old OS whole:
/// no retry, back to it with its status, never a power-off.
#[test]
fn a_flash_that_wrote_nothing_goes_back_to_the_old_os() {
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.flash_failures = FLASH_ATTEMPTS;
    sys.failures_write = false;
    match run(
        &mut sys,
        &mut EventLog::new(&mut Vec::new()),
        &Recorder::default(),
    ) {
        Exit::Fallback {
            step: Step::Flash,
            reason,
        } => assert!(reason.contains("old OS is whole"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sys.flash_calls, 1);
    let st = status_file(&sys);
    assert_eq!(
        (st["outcome"].as_str(), st["step"].as_str()),
        (Some("fallback"), Some("flash"))
    );
}

#[test]
fn the_test_hook_exits_pid_one_after_the_named_step() {
    let (_d, mut sys) = setup(b"abc", |p| {
        p.test = TestHooks {
            exit_after: Some("plan".into()),
            ..Default::default()
        }
    });
    assert_eq!(
        run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default()
        ),
        Exit::TestExit
    );
    assert!(sys.loaded.is_empty());
}

#[test]
fn short_payload_missing_disk_and_bad_plans_fall_back() {
    let (_d, mut sys) = setup(b"ab", |_| {});
    assert!(matches!(
        run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default()
        ),
        Exit::Fallback {
            step: Step::LoadPayload,
            ..
        }
    ));
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.disks[1].serial = Some("SOMETHING-ELSE".into());
    let mut buf = Vec::new();
    assert!(matches!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::Fallback {
            step: Step::FindTarget,
            ..
        }
    ));
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.plan = sys
        .plan
        .replace(&format!("\"version\": {PLAN_VERSION}"), "\"version\": 77");
    match run(
        &mut sys,
        &mut EventLog::new(&mut Vec::new()),
        &Recorder::default(),
    ) {
        Exit::Fallback {
            step: Step::Plan,
            reason,
        } => assert!(reason.contains("77"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unloadable_module_set_is_reported_by_name() {
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.needs = vec![("virtio_blk", "virtio_ring")];
    match run(
        &mut sys,
        &mut EventLog::new(&mut Vec::new()),
        &Recorder::default(),
    ) {
        Exit::Fallback {
            step: Step::Modules,
            reason,
        } => assert!(reason.contains("virtio_blk"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// A plan armed through the config.txt edit: the original rides in the
/// ramdisk, the armed file is on the old boot partition (vda1).
fn config_txt_setup(
    content: &[u8],
    partuuid: &str,
    tweak: impl FnOnce(&mut Plan),
) -> (tempfile::TempDir, Fake) {
    let (d, sys) = setup(content, |p| {
        p.boot = crate::plan::BootPlan {
            strategy: crate::plan::BootStrategy::RpiConfig,
            disarm: vec![crate::plan::DisarmAction::RestoreFile {
                partuuid: partuuid.into(),
                fstype: "ext4".into(),
                path: "config.txt".into(),
                original: "/migrd/rpi/config.txt".into(),
            }],
        };
        tweak(p);
    });
    std::fs::create_dir_all(d.path().join("migrd/rpi")).unwrap();
    std::fs::write(d.path().join("migrd/rpi/config.txt"), b"arm_boost=1\n").unwrap();
    let boot = sys.fs_dir("old-boot-uuid");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(
        boot.join("config.txt"),
        b"arm_boost=1\ninitramfs migrd-initrd.img followkernel\n",
    )
    .unwrap();
    (d, sys)
}

fn config_txt(sys: &Fake) -> String {
    std::fs::read_to_string(sys.fs_dir("old-boot-uuid").join("config.txt")).unwrap()
}

#[test]
fn config_txt_is_restored_by_partuuid_before_the_target_is_looked_for() {
    // Upper case in the plan: PARTUUIDs compare without case.
    let (_d, mut sys) = config_txt_setup(b"abd", "0000BEEF-01", |_| {});
    let mut buf = Vec::new();
    let exit = run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default());
    assert_eq!(config_txt(&sys), "arm_boost=1\n");
    // Restored, so a later failure falls back as usual: the old OS boots.
    assert!(
        matches!(
            exit,
            Exit::Fallback {
                step: Step::Verify,
                ..
            }
        ),
        "{exit:?}"
    );
    let ev = events(&buf);
    let st = steps(&ev);
    let disarm = st.iter().position(|s| s == "disarm/ok").unwrap();
    let find = st.iter().position(|s| s == "find-target/ok").unwrap();
    assert!(disarm < find, "{st:?}");
    assert!(
        ev[disarm]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("/dev/vda1")
            || ev[disarm].to_string().contains("vda1"),
        "{}",
        ev[disarm]
    );
    let leftovers: Vec<_> = std::fs::read_dir(sys.fs_dir("old-boot-uuid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("migrd-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_unrestorable_config_txt_goes_on_with_the_migration() {
    // No partition has this PARTUUID: going back would boot the ramdisk
    // again, so a good payload is flashed anyway.
    let (_d, mut sys) = config_txt_setup(b"abc", "0000beef-09", |_| {});
    let mut buf = Vec::new();
    let exit = run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default());
    assert_eq!(exit, Exit::Migrated);
    assert!(sys.flashed);
    let st = steps(&events(&buf));
    assert!(st.contains(&"disarm/fail".to_string()), "{st:?}");
    assert!(String::from_utf8_lossy(&buf).contains("0000beef-09"));
}

#[test]
fn an_unrestorable_config_txt_then_a_failure_powers_off_instead_of_looping() {
    for pretend in [false, true] {
        let content: &[u8] = if pretend { b"abc" } else { b"abd" };
        let (_d, mut sys) = config_txt_setup(content, "0000beef-09", |p| p.pretend = pretend);
        let mut buf = Vec::new();
        match run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()) {
            Exit::Stranded { reason, .. } => {
                assert!(reason.contains("0000beef-09"), "{reason}");
            }
            other => panic!("pretend={pretend}: {other:?}"),
        }
        assert_eq!(sys.flash_calls, 0);
        assert!(config_txt(&sys).contains("migrd-initrd.img"));
    }
}

#[test]
fn a_failed_restore_on_a_self_clearing_boot_falls_back() {
    // Same failure with a boot that clears itself: the old OS boots.
    let (_d, mut sys) = config_txt_setup(b"abc", "0000beef-09", |p| {
        p.boot.strategy = crate::plan::BootStrategy::Grub;
    });
    let mut buf = Vec::new();
    match run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()) {
        Exit::Fallback {
            step: Step::Disarm,
            reason,
        } => assert!(reason.contains("PARTUUID 0000beef-09"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!sys.flashed);
}

/// A plan armed through the U-Boot restore-first mode: the BeagleBoard
/// uEnv.txt in /boot of the old root partition (vda1, ext4) was edited.
fn uenv_setup(content: &[u8], partuuid: &str) -> (tempfile::TempDir, Fake) {
    let (d, sys) = setup(content, |p| {
        p.boot = crate::plan::BootPlan {
            strategy: crate::plan::BootStrategy::UbootRestoreFirst,
            disarm: vec![crate::plan::DisarmAction::RestoreFile {
                partuuid: partuuid.into(),
                fstype: "ext4".into(),
                path: "boot/uEnv.txt".into(),
                original: "/migrd/uboot/original".into(),
            }],
        };
    });
    std::fs::create_dir_all(d.path().join("migrd/uboot")).unwrap();
    std::fs::write(d.path().join("migrd/uboot/original"), b"uname_r=5.10\n").unwrap();
    let boot = sys.fs_dir("old-boot-uuid").join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("uEnv.txt"), b"uname_r=migrd\ncmdline=panic=10\n").unwrap();
    (d, sys)
}

fn uenv(sys: &Fake) -> String {
    std::fs::read_to_string(sys.fs_dir("old-boot-uuid").join("boot/uEnv.txt")).unwrap()
}

#[test]
fn uboot_restore_first_puts_uenv_back_before_any_other_step() {
    let (_d, mut sys) = uenv_setup(b"abd", "0000beef-01");
    let mut buf = Vec::new();
    let exit = run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default());
    assert_eq!(uenv(&sys), "uname_r=5.10\n");
    // Restored, so the flipped byte found later falls back to the old OS.
    assert!(
        matches!(
            exit,
            Exit::Fallback {
                step: Step::Verify,
                ..
            }
        ),
        "{exit:?}"
    );
    let st = steps(&events(&buf));
    let disarm = st.iter().position(|s| s == "disarm/ok").unwrap();
    // Only mounting the kernel filesystems, reading the plan and loading
    // the modules (the disk's driver and ext4) come before it.
    assert_eq!(
        st[..disarm],
        [
            "start/begin",
            "setup/ok",
            "plan/ok",
            "modules/ok",
            "watchdog/skip"
        ],
        "{st:?}"
    );
    assert!(
        st[disarm + 1..]
            .iter()
            .any(|s| s.starts_with("find-target")),
        "{st:?}"
    );
}

#[test]
fn uboot_restore_first_that_cannot_restore_powers_off_after_a_failure() {
    // The edit does not clear itself: going back would boot the ramdisk
    // again, so a later failure powers off instead.
    let (_d, mut sys) = uenv_setup(b"abd", "0000beef-09");
    let mut buf = Vec::new();
    match run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()) {
        Exit::Stranded { reason, .. } => assert!(reason.contains("0000beef-09"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sys.flash_calls, 0);
    assert!(uenv(&sys).contains("uname_r=migrd"));
}

/// A UEFI machine as stage 1 left it for BootNext: the old Debian entry
/// (Boot0001, on the old ESP), an unrelated network entry (Boot0002), the
/// ramdisk's entry (Boot0003), BootOrder 0001,0002.
fn uefi_setup(tweak: impl FnOnce(&mut Plan)) -> (tempfile::TempDir, Fake) {
    let (d, mut sys) = setup(b"abc", |p| {
        p.boot.strategy = crate::plan::BootStrategy::Efi;
        p.boot.disarm = vec![crate::plan::DisarmAction::DeleteEfiVar { name: boot_var(3) }];
        p.efi_setup = Some(crate::plan::EfiSetup {
            old_partuuids: vec![OLD_ESP.to_uppercase()],
        });
        tweak(p);
    });
    sys.uefi = true;
    let v = EfiVars::new(sys.efivarfs().unwrap());
    let hd = |guid: &str| HardDrive {
        partition: 1,
        start: 2048,
        size: 2048,
        signature: PartSignature::Gpt(guid.parse().unwrap()),
    };
    let debian = LoadOption::new("debian", hd(OLD_ESP), r"\EFI\debian\shimx64.efi", None);
    let mut net = debian.clone();
    net.description = "UEFI PXEv4".into();
    net.path = vec![crate::efi::load_option::Node::Raw {
        kind: 3,
        subtype: 12,
        data: vec![0; 23],
    }];
    let ramdisk = LoadOption::new(
        crate::efi::ONESHOT_DESCRIPTION,
        hd(OLD_ESP),
        r"\EFI\migrd\vmlinuz.efi",
        Some("initrd=x"),
    );
    v.write(&boot_var(1), 7, &debian.encode()).unwrap();
    v.write(&boot_var(2), 7, &net.encode()).unwrap();
    v.write(&boot_var(3), 7, &ramdisk.encode()).unwrap();
    v.set_boot_order(&[1, 2]).unwrap();
    // The flashed image's boot partition carries the removable-media loader.
    let boot = sys.fs_dir("AAAA-0001").join("EFI/BOOT");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("bootx64.efi"), b"MZ").unwrap();
    (d, sys)
}

fn efivars(sys: &mut Fake) -> EfiVars {
    EfiVars::new(sys.efivarfs().unwrap())
}

#[test]
fn disarm_deletes_the_ramdisk_entry_before_anything_can_fail() {
    let (_d, mut sys) = uefi_setup(|p| p.pretend = true);
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::PretendDone
    );
    let v = efivars(&mut sys);
    assert_eq!(v.boot_numbers().unwrap(), [1, 2]);
    assert_eq!(v.boot_order().unwrap(), [1, 2]);
    let ev = events(&buf);
    let d = ev.iter().find(|e| e["step"] == "disarm").unwrap();
    assert_eq!(d["status"], "ok");
    assert!(
        d["msg"]
            .as_str()
            .unwrap()
            .contains("deleted EFI variable Boot0003"),
        "{d}"
    );
    // Pretend stops before the point of no return: no new entry.
    assert!(!steps(&ev).iter().any(|s| s.starts_with("efi-setup")));
}

#[test]
fn an_already_deleted_entry_is_fine_but_no_efivarfs_falls_back() {
    let (_d, mut sys) = uefi_setup(|p| p.pretend = true);
    std::fs::remove_file(sys.root.join("efivars").join(boot_var(3))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::PretendDone
    );
    assert!(String::from_utf8_lossy(&buf).contains("was already gone"));

    let (_d, mut sys) = uefi_setup(|_| {});
    sys.uefi = false;
    let mut buf = Vec::new();
    match run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()) {
        Exit::Fallback {
            step: Step::Disarm,
            reason,
        } => assert!(
            reason.contains("Boot0003") && reason.contains("UEFI"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!sys.flashed);
}

#[test]
fn after_flashing_the_new_entry_goes_first_and_stale_entries_go() {
    let (_d, mut sys) = uefi_setup(|_| {});
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::Migrated
    );
    let v = efivars(&mut sys);
    // Boot0001 (debian, old ESP) and Boot0003 (ramdisk) are gone; the new
    // entry took the lowest free number, 0000, and leads BootOrder.
    assert_eq!(v.boot_numbers().unwrap(), [0, 2]);
    assert_eq!(v.boot_order().unwrap(), [0, 2]);
    let o = LoadOption::decode(&v.read(&boot_var(0)).unwrap().unwrap().data).unwrap();
    assert_eq!(o.description, "balenaOS");
    assert_eq!(
        o.path_string(),
        format!(r"HD(1,GPT,{NEW_ESP},0x800,0x800)/File(\EFI\BOOT\bootx64.efi)")
    );
    let ev = events(&buf);
    let st = steps(&ev);
    let at = |s: &str| st.iter().position(|x| x == s).unwrap();
    assert!(
        at("reread-partitions/ok") < at("efi-setup/ok") && at("efi-setup/ok") < at("inject/ok"),
        "{st:?}"
    );
}

#[test]
fn without_the_esp_type_the_fat_partition_with_the_loader_is_used() {
    let (_d, mut sys) = uefi_setup(|_| {});
    sys.esp_typed = false;
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::Migrated
    );
    let v = efivars(&mut sys);
    let o = LoadOption::decode(&v.read(&boot_var(0)).unwrap().unwrap().data).unwrap();
    assert_eq!(o.hard_drive().unwrap().partuuid(), NEW_ESP);
    // The boot partition was unmounted again (the fake's mount is a symlink).
    assert!(!sys.root.join("mnt/esp").exists());
}

#[test]
fn a_failed_efi_setup_is_logged_and_the_migration_completes() {
    let (_d, mut sys) = uefi_setup(|_| {});
    sys.esp_typed = false;
    std::fs::remove_dir_all(sys.fs_dir("AAAA-0001").join("EFI")).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::Migrated
    );
    let ev = events(&buf);
    let f = ev.iter().find(|e| e["step"] == "efi-setup").unwrap();
    assert_eq!(f["status"], "fail");
    assert!(f["msg"].as_str().unwrap().contains("bootx64.efi"), "{f}");
    assert!(steps(&ev).contains(&"inject/ok".to_string()));
    // Nothing deleted when no new entry could be made.
    assert_eq!(efivars(&mut sys).boot_numbers().unwrap(), [1, 2]);
}

#[test]
fn no_efi_setup_leaves_the_firmware_entries_alone() {
    let (_d, mut sys) = uefi_setup(|p| p.efi_setup = None);
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::Migrated
    );
    let v = efivars(&mut sys);
    // Only the disarm step touched them (the ramdisk's own entry).
    assert_eq!(v.boot_numbers().unwrap(), [1, 2]);
    assert_eq!(v.boot_order().unwrap(), [1, 2]);
    assert!(!steps(&events(&buf))
        .iter()
        .any(|s| s.starts_with("efi-setup")));
}

/// A flash that wrote and then failed on the input itself (a decode error)
/// is not retried: the same bytes fail the same way.
#[test]
fn a_decode_error_after_writing_is_not_retried() {
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.flash_failures = FLASH_ATTEMPTS;
    sys.failures_retry = false;
    match run(
        &mut sys,
        &mut EventLog::new(&mut Vec::new()),
        &Recorder::default(),
    ) {
        Exit::FlashFailed { reason } => {
            assert!(reason.contains("retrying cannot help"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sys.flash_calls, 1);
}

/// Written and read back, but the kernel keeps the old table: the new
/// partitions are added from the table just written, config.json still
/// goes in, and balenaOS boots. Without the adding, injection fails but
/// the run still ends on balenaOS.
#[test]
fn a_kept_table_gets_the_new_partitions_and_injection_still_runs() {
    let (d, mut sys) = setup(b"abc", |_| {});
    sys.reread = Err("BLKRRPART: Device or resource busy".into());
    let mut buf = Vec::new();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut buf), &Recorder::default()),
        Exit::Migrated
    );
    let added: Vec<u32> = sys.added.iter().flatten().map(|p| p.hd.partition).collect();
    assert_eq!(added, [1, 2, 6]);
    let st = steps(&events(&buf));
    let at = |s: &str| st.iter().position(|x| x == s).unwrap_or(usize::MAX);
    assert!(
        at("reread-partitions/fail") < at("reread-partitions/ok"),
        "{st:?}"
    );
    assert!(at("reread-partitions/ok") < at("inject/ok"), "{st:?}");
    assert!(st.contains(&"done/ok".to_string()), "{st:?}");
    assert!(d.path().join("fs/AAAA-0001/config.json").is_file());
}

/// A module set that cannot load leaves its reason for the old OS too.
#[test]
fn a_module_failure_is_recorded_for_the_old_os() {
    let (_d, mut sys) = setup(b"abc", |_| {});
    sys.needs = vec![("virtio_blk", "virtio_ring")];
    assert!(matches!(
        run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default()
        ),
        Exit::Fallback {
            step: Step::Modules,
            ..
        }
    ));
    let st = status_file(&sys);
    assert_eq!(
        (st["outcome"].as_str(), st["step"].as_str()),
        (Some("fallback"), Some("modules"))
    );
}

/// The table: every step before the point of no return comes first, the
/// gate is the last of them, names are unique, and every step before it
/// has a finite budget.
#[test]
fn the_step_table_keeps_the_point_of_no_return_a_gate() {
    let table = steps_table();
    let first_after = table
        .iter()
        .position(|d| d.phase == Phase::Flashing)
        .unwrap_or(table.len());
    assert_eq!(table[first_after].step, Step::Flash);
    assert!(table[first_after + 1..]
        .iter()
        .all(|d| d.phase == Phase::Flashed));
    assert_eq!(table[first_after - 1].step, Step::PointOfNoReturn);
    let mut names: Vec<String> = table.iter().map(|d| d.step.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), table.len());
    let plan = sample_plan();
    for d in &table[..first_after] {
        assert!(d.budget.limit(Some(&plan)).is_some(), "{:?}", d.step);
    }
}

fn steps_table() -> Vec<StepDef<Fake, Vec<u8>>> {
    super::steps::<Fake, Vec<u8>>()
}

/// The exit hook works after any step by its event name.
#[test]
fn the_exit_hook_names_any_step() {
    let (_d, mut sys) = setup(b"abc", |p| p.test.exit_after = Some("find-target".into()));
    assert_eq!(
        run(
            &mut sys,
            &mut EventLog::new(&mut Vec::new()),
            &Recorder::default()
        ),
        Exit::TestExit
    );
    assert!(!sys.loaded.is_empty());
    assert_eq!(sys.flash_calls, 0);
}

/// The guard hears of every step with its phase and budget, of the
/// flash's progress, and of the end of the run.
#[test]
fn the_guard_hears_each_step_its_budget_and_the_flash_progress() {
    let (_d, mut sys) = setup(b"abc", |p| {
        p.target.wait_secs = 20;
        p.deadlines = crate::plan::Deadlines::for_target_wait(20);
    });
    let g = Recorder::default();
    assert_eq!(
        run(&mut sys, &mut EventLog::new(&mut Vec::new()), &g),
        Exit::Migrated
    );
    let entered = g.entered.lock().unwrap().clone();
    let names: Vec<String> = entered.iter().map(|(s, _, _)| s.name()).collect();
    assert_eq!(
        names,
        [
            "setup",
            "plan",
            "modules",
            "watchdog",
            "disarm",
            "status",
            "find-target",
            "load-payload",
            "verify",
            "point-of-no-return",
            "flash",
            "reread-partitions",
            "efi-setup",
            "inject",
            "done"
        ]
    );
    let find = entered
        .iter()
        .find(|(s, _, _)| *s == Step::FindTarget)
        .unwrap();
    assert_eq!(
        (find.1, find.2),
        (Phase::Before, Some(Duration::from_secs(80)))
    );
    let flash = entered.iter().find(|(s, _, _)| *s == Step::Flash).unwrap();
    assert_eq!((flash.1, flash.2), (Phase::Flashing, None));
    assert!(g.progress.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(
        *g.finished.lock().unwrap(),
        Some(crate::guard::Leaving::Reboot)
    );
}

#[test]
fn stop_hooks_pick_the_named_step_and_a_wedge_wins() {
    let hooks = |hang: Option<&str>, wedge: Option<&str>| crate::plan::TestHooks {
        hang_at: hang.map(str::to_string),
        wedge_at: wedge.map(str::to_string),
        ..Default::default()
    };
    let h = hooks(Some("verify"), None);
    assert_eq!(super::stop_hook(&h, Step::Verify), Some(super::Stop::Hang));
    assert_eq!(super::stop_hook(&h, Step::Flash), None);
    let w = hooks(Some("verify"), Some("verify"));
    assert_eq!(super::stop_hook(&w, Step::Verify), Some(super::Stop::Wedge));
    assert!(!w.is_empty());
    assert!(hooks(None, None).is_empty());
    assert_eq!(super::stop_hook(&hooks(None, None), Step::Verify), None);
}
