//! balena API client against the emulator: version selection, flasher
//! types, HTTP errors, bad key, dropped connection with resume.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use migrd::balena_api::{download, versions, ApiError, Client};
use migrd::inputs::config_json::ConfigJson;
use std::path::Path;
use std::time::Duration;
use support::api_emulator::{Behaviour, Emulator};
use support::image;

fn client(e: &Emulator, key: &str) -> Client {
    let c = ConfigJson::parse(
        &e.config_json("raspberrypi4-64", key),
        Path::new("config.json"),
    )
    .unwrap();
    Client::new(&c.api_endpoint, c.api_key, Duration::from_secs(5)).unwrap()
}

const KEY: &str = "FIXTUREKEYdoNotUse0123456789";

fn fast() -> download::Options {
    download::Options {
        retries: 3,
        backoff: Duration::from_millis(10),
        progress: false,
        read_timeout: Duration::from_secs(5),
    }
}

#[test]
fn ping_and_versions_with_selection() {
    let e = Emulator::start(Behaviour::default());
    let c = client(&e, KEY);
    c.ping().unwrap();
    let list = c.versions("raspberrypi4-64").unwrap();
    assert_eq!(versions::select(&list, "default", "x").unwrap(), "6.0.13");
    assert_eq!(
        versions::select(&list, "5.1.20+rev1", "x").unwrap(),
        "5.1.20+rev1"
    );
    assert_eq!(versions::select(&list, "~5.1", "x").unwrap(), "5.1.20+rev3");
    assert_eq!(versions::select(&list, "^5", "x").unwrap(), "5.1.20+rev3");
    let r = e
        .requests()
        .into_iter()
        .find(|r| r.path == "/v6/release")
        .unwrap();
    assert!(
        r.query
            .contains("is_for__device_type/any(iodt:iodt/slug eq 'raspberrypi4-64')"),
        "{}",
        r.query
    );
    assert_eq!(
        r.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[test]
fn bad_api_key_is_named() {
    let e = Emulator::start(Behaviour::default());
    let err = client(&e, "wrong").versions("raspberrypi4-64").unwrap_err();
    assert!(matches!(err, ApiError::Auth { status: 401, .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("rejected the key") && !msg.contains("wrong"),
        "{msg}"
    );
}

#[test]
fn ping_with_wrong_body_fails() {
    let e = Emulator::start(Behaviour {
        ping_body: "maintenance".into(),
        ..Behaviour::default()
    });
    assert!(client(&e, KEY)
        .ping()
        .unwrap_err()
        .to_string()
        .contains("not \"OK\""));
}

#[test]
fn flasher_types_ask_for_the_raw_image() {
    let img = image::gz(&image::Spec {
        slug: "generic-amd64",
        arch: "amd64",
        ..Default::default()
    });
    let e = Emulator::start(Behaviour {
        image: img.clone(),
        ..Behaviour::default()
    });
    let c = client(&e, KEY);
    assert!(c.is_flasher("generic-amd64").unwrap());
    assert!(!c.is_flasher("raspberrypi4-64").unwrap());
    let d = tempfile::tempdir().unwrap();
    let req = download::Request {
        slug: "generic-amd64".into(),
        version: "6.0.13".into(),
        raw: true,
    };
    let p = download::download(&c, &req, d.path(), &fast()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), img);
    let body = e
        .requests()
        .into_iter()
        .find(|r| r.path == "/download")
        .unwrap()
        .body;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["imageType"], "raw");
    assert_eq!(v["deviceType"], "generic-amd64");
    assert_eq!(v["fileType"], ".gz");
}

#[test]
fn http_errors_are_reported_and_leave_no_file() {
    let e = Emulator::start(Behaviour {
        download_status: Some(500),
        ..Behaviour::default()
    });
    let d = tempfile::tempdir().unwrap();
    let req = download::Request {
        slug: "raspberrypi4-64".into(),
        version: "6.0.13".into(),
        raw: false,
    };
    let err = download::download(&client(&e, KEY), &req, d.path(), &fast())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 500") && err.contains("image not available"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn dropped_connection_resumes_with_range() {
    let img = image::gz(&image::Spec::default());
    let e = Emulator::start(Behaviour {
        image: img.clone(),
        drop_after: Some((4000, 2)),
        ..Behaviour::default()
    });
    let d = tempfile::tempdir().unwrap();
    let req = download::Request {
        slug: "raspberrypi4-64".into(),
        version: "6.0.13".into(),
        raw: false,
    };
    let p = download::download(&client(&e, KEY), &req, d.path(), &fast()).unwrap();
    assert_eq!(
        std::fs::read(&p).unwrap(),
        img,
        "resumed file is byte-identical"
    );
    let ranges: Vec<String> = e
        .requests()
        .iter()
        .filter(|r| r.path == "/download")
        .filter_map(|r| r.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges, ["bytes=4000-", "bytes=8000-"]);
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let img = image::gz(&image::Spec::default());
    let e = Emulator::start(Behaviour {
        image: img.clone(),
        drop_after: Some((3000, 1)),
        honour_range: false,
        ..Behaviour::default()
    });
    let d = tempfile::tempdir().unwrap();
    let req = download::Request {
        slug: "raspberrypi4-64".into(),
        version: "6.0.13".into(),
        raw: false,
    };
    let p = download::download(&client(&e, KEY), &req, d.path(), &fast()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), img);
}

#[test]
fn gives_up_after_the_retries() {
    let img = image::gz(&image::Spec::default());
    let e = Emulator::start(Behaviour {
        image: img,
        drop_after: Some((100, 99)),
        honour_range: false,
        ..Behaviour::default()
    });
    let d = tempfile::tempdir().unwrap();
    let req = download::Request {
        slug: "raspberrypi4-64".into(),
        version: "6.0.13".into(),
        raw: false,
    };
    let err = download::download(&client(&e, KEY), &req, d.path(), &fast()).unwrap_err();
    assert!(matches!(err, ApiError::Network { .. }), "{err}");
    assert_eq!(
        e.requests()
            .iter()
            .filter(|r| r.path == "/download")
            .count(),
        4
    );
}

#[test]
fn change_device_type_patches_the_device() {
    let e = Emulator::start(Behaviour::default());
    client(&e, KEY)
        .change_device_type("abc123", "raspberrypi400-64")
        .unwrap();
    let p = e
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(p.path, "/v6/device(uuid='abc123')");
    assert!(p.body.contains("\"is_of__device_type\":58"));
}
