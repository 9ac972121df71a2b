//! `migrd download` end to end against the emulator: -w, -v, --change-dt-to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::api_emulator::{Behaviour, Emulator};
use support::{image, migrd};

#[test]
fn downloads_into_the_work_dir_and_checks_the_image() {
    let img = image::gz(&image::Spec {
        slug: "raspberrypi400-64",
        ..Default::default()
    });
    let e = Emulator::start(Behaviour {
        image: img.clone(),
        ..Behaviour::default()
    });
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.json");
    std::fs::write(
        &cfg,
        e.config_json("raspberrypi4-64", "FIXTUREKEYdoNotUse0123456789"),
    )
    .unwrap();
    let w = d.path().join("work");
    let out = migrd()
        .args([
            "download",
            "-c",
            cfg.to_str().unwrap(),
            "-w",
            w.to_str().unwrap(),
            "-v",
            "^5",
            "--change-dt-to",
            "raspberrypi400-64",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = w.join("balena-cloud-raspberrypi400-64-5.1.20+rev3.img.gz");
    assert_eq!(std::fs::read(&p).unwrap(), img);
    let body = e
        .requests()
        .into_iter()
        .find(|r| r.path == "/download")
        .unwrap()
        .body;
    assert!(body.contains("\"deviceType\":\"raspberrypi400-64\"") && body.contains("5.1.20+rev3"));
    assert!(!body.contains("imageType"), "not a flasher type");
}

#[test]
fn refuses_a_non_image_and_names_missing_versions() {
    let e = Emulator::start(Behaviour::default()); // serves 10 bytes of gzip header only
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.json");
    std::fs::write(
        &cfg,
        e.config_json("raspberrypi4-64", "FIXTUREKEYdoNotUse0123456789"),
    )
    .unwrap();
    let out = migrd()
        .args([
            "download",
            "-c",
            cfg.to_str().unwrap(),
            "-w",
            d.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = migrd()
        .args([
            "download",
            "-c",
            cfg.to_str().unwrap(),
            "-w",
            d.path().to_str().unwrap(),
            "-v",
            "9.9.9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no published balenaOS version"));
    let out = migrd()
        .args(["download", "-w", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("-c"));
}
