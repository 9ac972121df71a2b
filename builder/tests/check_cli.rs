//! `migrd check --root FIXTURE --json` on every fixture tree, and one test
//! per takeover flag showing its effect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use support::api_emulator::{Behaviour, Emulator};
use support::{fixture, image, migrd};

fn check(root: &Path, args: &[&str]) -> (bool, Value, String) {
    let mut c = migrd();
    c.arg("check").arg("--root").arg(root).arg("--json");
    c.args(args);
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (out.status.success(), v, stdout + &stderr)
}

fn offline(name: &str) -> Vec<String> {
    let cfg = fixture(name).join("config.json");
    vec![
        "-c".into(),
        cfg.display().to_string(),
        "--no-api-check".into(),
        "--no-vpn-check".into(),
    ]
}

fn status<'a>(v: &'a Value, name: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("missing")
}

fn message(v: &Value, name: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["message"].as_str())
        .unwrap_or("")
        .to_string()
}

fn run(name: &str, extra: &[&str]) -> (bool, Value, String) {
    let mut a = offline(name);
    a.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    check(&fixture(name), &a)
}

#[test]
fn raspberry_pi_4_bookworm() {
    let (ok, v, out) = run("rpi4-bookworm", &[]);
    assert!(ok, "{out}");
    assert_eq!(v["device"]["model"], "Raspberry Pi 4 Model B Rev 1.4");
    assert_eq!(v["device"]["slugs"][0], "raspberrypi4-64");
    assert_eq!(v["os"]["id"], "debian");
    assert_eq!(v["os"]["version_id"], "12");
    assert_eq!(v["boot"]["firmware"], "rpi");
    assert_eq!(v["boot"]["strategy"], "rpi-tryboot");
    assert_eq!(v["disks"]["target"]["name"], "mmcblk0");
    let nets = v["networks"].as_array().unwrap();
    let wifi = nets.iter().find(|n| n["kind"] == "wifi").unwrap();
    assert_eq!(wifi["ssid"], "Shop Floor");
    assert_eq!(wifi["security"], "wpa-psk");
    assert_eq!(wifi["id"], "migrd-wifi-01");
    assert!(nets
        .iter()
        .any(|n| n["kind"] == "ethernet" && n["migrated"] == true));
    assert!(nets
        .iter()
        .any(|n| n["kind"] == "other" && n["migrated"] == false));
    assert!(
        !out.contains("fixture-psk") && !out.contains("FIXTUREKEY"),
        "no secrets in output"
    );
}

#[test]
fn raspberry_pi_3b_plus_bookworm_32bit_migrates_all_wifis() {
    let (ok, v, out) = run("rpi3bplus-bookworm", &[]);
    assert!(ok, "{out}");
    assert_eq!(v["device"]["slugs"][0], "raspberrypi3");
    assert_eq!(v["os"]["id"], "raspbian");
    assert_eq!(v["boot"]["strategy"], "rpi-config");
    assert_eq!(status(&v, "boot-strategy"), "warn");
    let ids: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["migrd-wifi-01", "migrd-wifi-02"],
        "both Wi-Fis, unlike takeover"
    );
}

#[test]
fn raspbian_buster_pi3_wpa_supplicant() {
    let (ok, v, out) = run("rpi3-buster", &[]);
    assert!(ok, "{out}");
    assert_eq!(v["os"]["version_id"], "10");
    let nets = v["networks"].as_array().unwrap();
    let ssids: Vec<&str> = nets
        .iter()
        .filter(|n| n["migrated"] == true)
        .filter_map(|n| n["ssid"].as_str())
        .collect();
    assert_eq!(ssids, ["Warehouse North", "Warehouse-South", "Guest"]);
    let corp = nets.iter().find(|n| n["ssid"] == "Corp").unwrap();
    assert_eq!(corp["security"], "eap");
    assert_eq!(corp["migrated"], false);
    assert!(!out.contains("fixture-eap-password"));
}

#[test]
fn ubuntu_uefi_root_on_lvm() {
    let (ok, v, out) = run("ubuntu2204-uefi-lvm", &[]);
    assert!(ok, "{out}");
    assert_eq!(v["boot"]["firmware"], "uefi");
    assert_eq!(v["boot"]["secure_boot"], false);
    // /boot is a plain ext4 partition, so GRUB can clear next_entry: on
    // UEFI GRUB comes first, BootNext is the usable alternative.
    assert_eq!(v["boot"]["strategy"], "grub");
    let efi = v["boot"]["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["strategy"] == "efi")
        .unwrap();
    assert_eq!(efi["usable"], true, "{efi}");
    let layers: Vec<&str> = v["disks"]["root"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        ["lvm", "partition", "disk"],
        "takeover #106: root on dm"
    );
    assert_eq!(v["disks"]["target"]["name"], "nvme0n1");
    assert_eq!(v["disks"]["target"]["serial"], "S4EWNX0R123456");
    let grub = v["boot"]["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["strategy"] == "grub")
        .unwrap();
    assert_eq!(grub["usable"], true, "/boot is a plain ext4 partition");
    assert_eq!(status(&v, "network"), "pass", "wired default route");
}

#[test]
fn debian_bios_grub() {
    let (_, v, _) = run("debian12-bios", &["--no-nwmgr-check"]);
    assert_eq!(v["boot"]["firmware"], "bios");
    assert_eq!(v["boot"]["strategy"], "grub");
    assert_eq!(v["disks"]["target"]["name"], "sda");
}

#[test]
fn beaglebone_connman_and_uboot() {
    // Only /boot/uEnv.txt: no self-clearing path, so U-Boot needs the
    // restore-first mode (see tests/uboot_restore_first.rs) and this
    // kernel has no kexec: nothing is usable without the flag.
    let (ok, v, _) = run("beaglebone-debian", &[]);
    assert!(!ok);
    assert_eq!(v["boot"]["strategy"], Value::Null);
    assert!(message(&v, "boot-strategy").contains("--uboot-restore-first"));
    let (ok, v, out) = run("beaglebone-debian", &["--uboot-restore-first"]);
    assert!(ok, "{out}");
    assert_eq!(v["device"]["slugs"][0], "beaglebone-black");
    assert_eq!(v["boot"]["firmware"], "uboot");
    assert_eq!(v["boot"]["strategy"], "uboot");
    assert_eq!(status(&v, "boot-strategy"), "warn");
    let kinds: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ethernet", "wifi"]);
}

/// The BeagleBone's eMMC sits behind omap_hsmmc, a controller migrd's
/// default list does not carry: `check` finds it in sysfs, with the card
/// driver and the watchdog's, and fails naming it when the running kernel
/// cannot provide it.
#[test]
fn disk_controller_outside_the_defaults_is_found_and_required() {
    let (ok, v, out) = run("beaglebone-debian", &["--uboot-restore-first"]);
    assert!(ok, "{out}");
    assert_eq!(status(&v, "ramdisk-drivers"), "pass");
    assert_eq!(
        message(&v, "ramdisk-drivers"),
        "packs omap_hsmmc, omap_wdt; /dev/mmcblk1 through mmcblk (built in)"
    );
    let drivers: Vec<&str> = v["disks"]["target"]["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["driver"].as_str().unwrap())
        .collect();
    assert_eq!(drivers, ["mmcblk", "omap_hsmmc"]);

    // The same device whose kernel lacks the controller's module.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("bb");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture("beaglebone-debian"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(cp.success());
    let dep = root.join("lib/modules/5.10.168-ti-r71/modules.dep");
    std::fs::write(&dep, "kernel/drivers/watchdog/omap_wdt.ko.xz:\n").unwrap();
    let mut a = offline("beaglebone-debian");
    a.push("--uboot-restore-first".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, v, out) = check(&root, &a);
    assert!(!ok, "{out}");
    assert_eq!(status(&v, "ramdisk-drivers"), "fail");
    let m = message(&v, "ramdisk-drivers");
    assert!(
        m.contains("omap_hsmmc (driver omap_hsmmc of /dev/mmcblk1 (/sys/devices/platform/ocp/")
            && m.contains("5.10.168-ti-r71")
            && !m.contains("omap_wdt"),
        "{m}"
    );
}

/// Every Raspberry Pi restarts through bcm2835_wdt: the check names it
/// (built into Raspberry Pi OS's kernels) whatever the Pi.
#[test]
fn raspberry_pis_need_their_restart_driver() {
    for f in ["rpi4-bookworm", "rpi3bplus-bookworm", "rpi3-buster"] {
        let (_, v, out) = run(f, &[]);
        assert_eq!(status(&v, "ramdisk-drivers"), "pass", "{f}: {out}");
        assert!(
            message(&v, "ramdisk-drivers")
                == "packs nothing extra; built in: bcm2835_wdt; \
                    /dev/mmcblk0 through mmcblk, sdhci-iproc (built in)",
            "{f}: {}",
            message(&v, "ramdisk-drivers")
        );
    }
}

// ---- one test per takeover flag ----

#[test]
fn flag_c_config_missing_or_bad() {
    let (ok, v, _) = check(
        &fixture("rpi4-bookworm"),
        &["--no-api-check", "--no-vpn-check"],
    );
    assert!(!ok);
    assert_eq!(status(&v, "config"), "fail");
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("c.json");
    std::fs::write(&bad, "{\"deviceType\":\"raspberrypi4-64\"}").unwrap();
    let (ok, v, _) = check(
        &fixture("rpi4-bookworm"),
        &[
            "-c",
            bad.to_str().unwrap(),
            "--no-api-check",
            "--no-vpn-check",
        ],
    );
    assert!(!ok);
    assert!(message(&v, "config").contains("applicationId is missing"));
}

#[test]
fn flag_no_os_check() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/os-release"),
        "ID=arch\nPRETTY_NAME=\"Arch Linux\"\n",
    )
    .unwrap();
    let cfg = fixture("rpi4-bookworm").join("config.json");
    let base = [
        "-c",
        cfg.to_str().unwrap(),
        "--no-api-check",
        "--no-vpn-check",
    ];
    let (_, v, _) = check(d.path(), &base);
    assert_eq!(status(&v, "os"), "fail");
    let mut a = base.to_vec();
    a.push("--no-os-check");
    let (_, v, _) = check(d.path(), &a);
    assert_eq!(status(&v, "os"), "warn");
}

#[test]
fn flag_no_dt_check_and_change_dt_to() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.json");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(fixture("rpi4-bookworm").join("config.json"))
            .unwrap()
            .replace("raspberrypi4-64", "raspberrypi3"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let root = fixture("rpi4-bookworm");
    let (ok, v, _) = check(&root, &["-c", c, "--no-api-check", "--no-vpn-check"]);
    assert!(!ok);
    assert_eq!(status(&v, "device-type"), "fail");
    assert!(message(&v, "device-type").contains("raspberrypi4-64"));
    let (ok, v, _) = check(
        &root,
        &["-c", c, "--no-api-check", "--no-vpn-check", "--no-dt-check"],
    );
    assert!(ok);
    assert_eq!(status(&v, "device-type"), "skip");
    let (ok, v, _) = check(
        &root,
        &[
            "-c",
            c,
            "--no-api-check",
            "--no-vpn-check",
            "--change-dt-to",
            "raspberrypi4-64",
        ],
    );
    assert!(ok);
    assert_eq!(v["target_device_type"], "raspberrypi4-64");
    assert_eq!(v["config"]["device_type"], "raspberrypi4-64");
}

#[test]
fn flags_api_vpn_and_check_timeout() {
    let e = Emulator::start(Behaviour::default());
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.json");
    std::fs::write(
        &cfg,
        e.config_json("raspberrypi4-64", "FIXTUREKEYdoNotUse0123456789"),
    )
    .unwrap();
    let root = fixture("rpi4-bookworm");
    let c = cfg.to_str().unwrap();
    let (ok, v, out) = check(&root, &["-c", c, "--check-timeout", "2"]);
    assert!(ok, "{out}");
    assert_eq!(status(&v, "api"), "pass");
    assert_eq!(status(&v, "vpn"), "pass");
    assert_eq!(status(&v, "version"), "pass");
    assert!(message(&v, "version").contains("6.0.13"));
    let (_, v, _) = check(&root, &["-c", c, "-v", "~5.1"]);
    assert!(message(&v, "version").contains("5.1.20+rev3"));
    // Nothing listens here: the checks fail, within the timeout.
    let dead = d.path().join("dead.json");
    std::fs::write(
        &dead,
        e.config_json("raspberrypi4-64", "k")
            .replace(&e.url, "http://127.0.0.1:9")
            .replace(&format!(":{}", e.vpn_port), ":9"),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let (ok, v, _) = check(
        &root,
        &["-c", dead.to_str().unwrap(), "--check-timeout", "1"],
    );
    assert!(!ok && t.elapsed().as_secs() < 20);
    assert_eq!(status(&v, "api"), "fail");
    assert_eq!(status(&v, "vpn"), "fail");
    assert!(message(&v, "vpn").contains("1s"));
    let (_, v, _) = check(
        &root,
        &[
            "-c",
            dead.to_str().unwrap(),
            "--no-api-check",
            "--no-vpn-check",
        ],
    );
    assert_eq!(status(&v, "api"), "skip");
    assert_eq!(status(&v, "vpn"), "skip");
    // A revoked key: the API check passes (/ping is public) but listing versions fails, naming the key.
    let badkey = d.path().join("badkey.json");
    std::fs::write(&badkey, e.config_json("raspberrypi4-64", "revoked")).unwrap();
    let (ok, v, _) = check(&root, &["-c", badkey.to_str().unwrap()]);
    assert!(!ok);
    assert!(message(&v, "version").contains("rejected the key"));
}

#[test]
fn flag_no_nwmgr_check_and_network_selection() {
    let (ok, v, _) = run("debian12-bios", &[]);
    assert!(!ok, "static /etc/network/interfaces, no profile");
    assert_eq!(status(&v, "network"), "fail");
    let (_, v, _) = run("debian12-bios", &["--no-nwmgr-check"]);
    assert_eq!(status(&v, "network"), "warn");
    // --no-wifis: the Wi-Fi is not migrated, the static Ethernet still is.
    let (_, v, _) = run("rpi4-bookworm", &["--no-wifis"]);
    let wifi = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "wifi")
        .unwrap()
        .clone();
    assert_eq!(wifi["migrated"], false);
    // --wifi SSID: only that one.
    let (_, v, _) = run("rpi3-buster", &["--wifi", "Guest"]);
    let m: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["migrated"] == true)
        .filter_map(|n| n["ssid"].as_str())
        .collect();
    assert_eq!(m, ["Guest"]);
    // --nwmgr-cfg FILE (repeatable) makes the network check pass.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("office-eth");
    std::fs::write(&f, "[connection]\nid=office\ntype=ethernet\n[ipv4]\nmethod=manual\naddress1=10.20.30.40/24,10.20.30.1\n").unwrap();
    let (ok, v, out) = run("debian12-bios", &["--nwmgr-cfg", f.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(v["networks"][0]["id"], "office-eth");
    let bad = d.path().join("bad");
    std::fs::write(&bad, "not a keyfile").unwrap();
    let (ok, v, _) = run("debian12-bios", &["--nwmgr-cfg", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(message(&v, "network").contains("--nwmgr-cfg"));
}

#[test]
fn flags_log_to_and_flash_to() {
    let (_, v, _) = run("debian12-bios", &["--no-nwmgr-check", "-l", "/dev/sdb1"]);
    assert_eq!(
        status(&v, "log-device"),
        "pass",
        "{}",
        message(&v, "log-device")
    );
    assert!(message(&v, "log-device").contains("vfat"));
    let (ok, v, _) = run("debian12-bios", &["--no-nwmgr-check", "-l", "/dev/sda1"]);
    assert!(!ok);
    assert!(message(&v, "log-device").contains("being flashed"));
    let (_, v, _) = run("debian12-bios", &["--no-nwmgr-check", "-l", "/dev/nope1"]);
    assert_eq!(status(&v, "log-device"), "fail");
    let (_, v, _) = run("debian12-bios", &["--no-nwmgr-check", "-f", "/dev/sdb"]);
    assert_eq!(v["disks"]["target"]["name"], "sdb");
    assert_eq!(status(&v, "target-disk"), "warn");
    let (ok, v, _) = run("debian12-bios", &["--no-nwmgr-check", "-f", "/dev/sdz"]);
    assert!(!ok);
    assert!(message(&v, "target-disk").contains("sdz"));
}

#[test]
fn flag_boot_via() {
    let (ok, v, _) = run("ubuntu2204-uefi-lvm", &["--boot-via", "grub"]);
    assert!(ok);
    assert_eq!(v["boot"]["strategy"], "grub");
    let (ok, v, _) = run("ubuntu2204-uefi-lvm", &["--boot-via", "rpi-tryboot"]);
    assert!(!ok);
    assert!(message(&v, "boot-strategy").contains("not a Raspberry Pi"));
    let out = migrd()
        .args(["check", "--boot-via", "lilo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lilo"));
}

#[test]
fn flag_image_checks_the_local_image() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("pi4.img.gz");
    std::fs::write(&good, image::gz(&image::Spec::default())).unwrap();
    let (ok, v, out) = run("rpi4-bookworm", &["-i", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(status(&v, "image"), "pass");
    assert_eq!(v["image"]["device_type"], "raspberrypi4-64");
    assert_eq!(status(&v, "memory"), "pass");
    assert_eq!(status(&v, "version"), "skip");
    let x86 = d.path().join("x86.img.gz");
    std::fs::write(
        &x86,
        image::gz(&image::Spec {
            slug: "generic-amd64",
            arch: "amd64",
            ..Default::default()
        }),
    )
    .unwrap();
    let (ok, v, _) = run("rpi4-bookworm", &["-i", x86.to_str().unwrap()]);
    assert!(!ok);
    assert!(message(&v, "image").contains("amd64"));
    let flasher = d.path().join("f.img.gz");
    std::fs::write(
        &flasher,
        image::gz(&image::Spec {
            flasher: true,
            labels_prefix: "flash",
            ..Default::default()
        }),
    )
    .unwrap();
    let (_, v, _) = run("rpi4-bookworm", &["-i", flasher.to_str().unwrap()]);
    assert!(message(&v, "image").contains("flasher"));
    let junk = d.path().join("junk.img");
    std::fs::write(&junk, b"hello").unwrap();
    let (_, v, _) = run("rpi4-bookworm", &["-i", junk.to_str().unwrap()]);
    assert_eq!(status(&v, "image"), "fail");
}

#[test]
fn flag_backup_cfg() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("data")).unwrap();
    std::fs::write(d.path().join("data/x.db"), vec![1u8; 5000]).unwrap();
    let y = d.path().join("backup.yml");
    std::fs::write(
        &y,
        format!(
            "- volume: appdata\n  items:\n  - source: {}/data\n",
            d.path().display()
        ),
    )
    .unwrap();
    let (ok, v, _) = run("rpi4-bookworm", &["--backup-cfg", y.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(status(&v, "backup"), "pass");
    std::fs::write(
        &y,
        "- volume: appdata\n  items:\n  - source: /nonexistent/dir\n",
    )
    .unwrap();
    let (ok, v, _) = run("rpi4-bookworm", &["--backup-cfg", y.to_str().unwrap()]);
    assert!(!ok);
    assert!(message(&v, "backup").contains("/nonexistent/dir"));
}

#[test]
fn flags_keep_name_and_ignored_internal_flags() {
    let (_, v, _) = run("rpi4-bookworm", &["--stage2", "--tar-internal"]);
    let notes = v["notes"].to_string();
    assert!(notes.contains("--stage2") && notes.contains("--tar-internal"));
    // --no-keep-name: the hostname is not written into config.json.
    use migrd::inputs::gather::{gather, Request};
    let f = migrd::probe::probe(&fixture("rpi4-bookworm"));
    let cfg = Some(fixture("rpi4-bookworm").join("config.json"));
    let keep = gather(
        &f,
        &Request {
            config: cfg.clone(),
            ..Request::default()
        },
    );
    let c = keep.config.unwrap().unwrap();
    assert_eq!(c.get("hostname").and_then(|h| h.as_str()), Some("kiosk-4"));
    let nokeep = gather(
        &f,
        &Request {
            config: cfg,
            no_keep_name: true,
            ..Request::default()
        },
    );
    assert!(nokeep.config.unwrap().unwrap().get("hostname").is_none());
}

#[test]
fn flags_log_file_and_log_level() {
    let d = tempfile::tempdir().unwrap();
    let lf = d.path().join("stage1.log");
    let (_, _, _) = run("rpi4-bookworm", &["--log-file", lf.to_str().unwrap()]);
    let text = std::fs::read_to_string(&lf).unwrap();
    assert!(text.contains("\"checks\"") && !text.contains("FIXTUREKEY"));
    // --log-level error silences download's info line.
    let e = Emulator::start(Behaviour {
        image: image::gz(&image::Spec::default()),
        ..Behaviour::default()
    });
    let cfg = d.path().join("config.json");
    std::fs::write(
        &cfg,
        e.config_json("raspberrypi4-64", "FIXTUREKEYdoNotUse0123456789"),
    )
    .unwrap();
    let dl = |level: &str| {
        let o = migrd()
            .env("RUST_LOG", "info")
            .args([
                "download",
                "--json",
                "-c",
                cfg.to_str().unwrap(),
                "-w",
                d.path().to_str().unwrap(),
                "--log-level",
                level,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(dl("info").contains("downloading balenaOS"));
    assert!(!dl("error").contains("downloading balenaOS"));
}

#[test]
fn migrate_args_parse_every_takeover_flag() {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: migrd::commands::migrate_args::MigrateArgs,
    }
    let t = T::try_parse_from([
        "t",
        "-w",
        "/tmp/w",
        "-i",
        "img.gz",
        "-v",
        "^5",
        "-c",
        "c.json",
        "--log-level",
        "debug",
        "--log-file",
        "l.txt",
        "--backup-cfg",
        "b.yml",
        "--s2-log-level",
        "trace",
        "--no-ack",
        "--pretend",
        "--stage2",
        "--tar-internal",
        "--no-cleanup",
        "--no-os-check",
        "--no-dt-check",
        "--no-api-check",
        "--no-vpn-check",
        "--no-efi-setup",
        "--no-nwmgr-check",
        "--no-keep-name",
        "-d",
        "--check-timeout",
        "3",
        "-l",
        "/dev/sdb1",
        "-f",
        "/dev/sda",
        "--no-wifis",
        "--wifi",
        "A",
        "--wifi",
        "B",
        "--nwmgr-cfg",
        "x",
        "--nwmgr-cfg",
        "y",
        "--change-dt-to",
        "raspberrypi3-64",
        "--no-reboot",
        "--boot-via",
        "kexec",
        "--json",
    ])
    .unwrap();
    let a = t.a;
    assert_eq!(a.work_dir, PathBuf::from("/tmp/w"));
    assert_eq!(
        a.stage2_level(),
        migrd::commands::migrate_args::Level::Trace
    );
    assert!(
        a.no_ack
            && a.pretend
            && a.no_cleanup
            && a.no_efi_setup
            && a.download_only
            && a.no_reboot
            && a.json
    );
    assert_eq!(a.wifi, ["A", "B"]);
    assert_eq!(a.nwmgr_cfg.len(), 2);
    assert_eq!(a.check_options().timeout, std::time::Duration::from_secs(3));
    assert_eq!(a.boot_via.map(|k| k.name()), Some("kexec"));
    let d = T::try_parse_from(["t", "--log-level", "info"]).unwrap().a;
    assert_eq!(
        d.stage2_level(),
        migrd::commands::migrate_args::Level::Info,
        "s2 level defaults to --log-level"
    );
    assert_eq!(d.version, "default");
    assert_eq!(d.check_timeout, 10);
}

/// The `watchdog` check: the BeagleBone's omap_wdt is the one the ramdisk
/// arms (module packed, 60 s); the Debian BIOS VM has none, which warns
/// (without failing) saying what a hang then relies on.
#[test]
fn the_watchdog_is_reported_or_its_absence_warned() {
    let (ok, v, out) = run("beaglebone-debian", &["--uboot-restore-first"]);
    assert!(ok, "{out}");
    assert_eq!(status(&v, "watchdog"), "pass");
    let m = message(&v, "watchdog");
    assert!(
        m.starts_with("/dev/watchdog0 (")
            && m.contains("driver omap_wdt, module omap_wdt packed")
            && m.contains("60 s timeout"),
        "{m}"
    );

    let (_, v, out) = run("debian12-bios", &["--no-nwmgr-check"]);
    assert_eq!(status(&v, "watchdog"), "warn", "{out}");
    let m = message(&v, "watchdog");
    assert!(
        m.starts_with("no hardware watchdog") && m.contains("power-cycle"),
        "{m}"
    );
}
