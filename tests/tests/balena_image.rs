//! The synthetic balenaOS image (stand-in for the real one, which cannot be
//! downloaded here): booted as the only disk through SeaBIOS and its own
//! GRUB, its balena-reporter must print one report naming the six
//! partitions (five labelled filesystems and the extended one), find no config (fresh image) and power off.
//!
//! `#[ignore]`d for a plain `cargo test`: needs QEMU, the lab kernel and a
//! static balena-reporter (tests/lab/test.sh builds and runs it).

use anyhow::{ensure, Context, Result};
use migrd_lab::images::balena;
use migrd_lab::paths;
use migrd_lab::qemu::{Ended, Qemu};
use migrd_lab::report;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
#[ignore = "lab: needs QEMU, the lab kernel and balena-reporter (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn fresh_synthetic_image_boots_and_reports_its_layout() -> Result<()> {
    let logs = paths::log_dir("balena-image-fresh")?;
    let t0 = Instant::now();
    let img = balena::image(&logs)?;
    eprintln!(
        "built {} in {:.1}s ({} bytes gz)",
        img.raw.display(),
        t0.elapsed().as_secs_f64(),
        std::fs::metadata(&img.gz)?.len()
    );
    // migrd itself takes it for a balenaOS image of the lab's device type.
    let info = migrd::inputs::image_check::inspect(&img.gz)?;
    ensure!(info.is_balena() && !info.flasher, "{info:?}");
    ensure!(info.device_type.as_deref() == Some(balena::DEVICE_TYPE));
    ensure!(info.os_version.as_deref() == Some(balena::OS_VERSION));
    ensure!(info.table == "mbr" && info.decoded_size == balena::DISK_MIB << 20);
    let ids: Vec<(u32, Option<&str>)> = info.partitions.iter().map(|p| (p.index, p.id())).collect();
    let want: Vec<(u32, Option<&str>)> = balena::LAYOUT
        .iter()
        .map(|p| (p.index, Some(p.label)))
        .collect();
    ensure!(ids == want, "partitions as migrd reads them: {ids:?}");

    let run = Qemu::x86_64(&logs)
        .disk(&img.raw, Some("BALENA0001"))
        .run(Duration::from_secs(180), None)?;
    eprintln!("{:?} after {:.1}s", run.ended, run.elapsed.as_secs_f64());
    let r = report::parse(&run.serial)
        .with_context(|| format!("no BALENA-REPORT line in {}", run.log.display()))?;
    eprintln!("report: {r}");
    ensure!(run.ended == Ended::Exited(Some(0)), "{:?}", run.ended);
    let labels: Vec<&str> = balena::LAYOUT.iter().map(|p| p.label).collect();
    let mut want = labels.clone();
    want.sort();
    ensure!(
        r["partitions"] == json!(want),
        "partitions {}",
        r["partitions"]
    );
    ensure!(
        r["disk_partitions"] == json!(["vda1", "vda2", "vda3", "vda4", "vda5", "vda6"]),
        "partition table {}",
        r["disk_partitions"]
    );
    ensure!(r["devices"]["resin-boot"] == "/dev/vda1");
    ensure!(r["devices"]["resin-data"] == "/dev/vda6");
    ensure!(r["config_json"].is_null() && r["hostname"].is_null());
    ensure!(r["has_api_key"] == false);
    ensure!(r["system_connections"] == json!([{"name": "resin-sample.ignore", "mode": "0755"}]));
    ensure!(r["backup"].is_null(), "backup {}", r["backup"]);
    ensure!(r["migration_log"]["present"] == false);
    ensure!(r["errors"] == json!([]), "errors {}", r["errors"]);
    Ok(())
}

/// What a migration leaves (config.json with keys, a NetworkManager
/// keyfile, backup.tgz, the migration log), written into the image from
/// the host (mtools, debugfs): the reporter must show all of it and never
/// the API key.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and balena-reporter (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn report_shows_what_a_migration_leaves() -> Result<()> {
    let logs = paths::log_dir("balena-image-migrated")?;
    let img = balena::image(&logs)?;
    let part = |label: &str| {
        balena::LAYOUT
            .iter()
            .find(|p| p.label == label)
            .map(|p| p.start_mib << 20)
            .context("layout")
    };
    let files = logs.join("inject");
    std::fs::create_dir_all(&files)?;
    std::fs::write(
        files.join("config.json"),
        r#"{"deviceType":"genericx86-64-ext","hostname":"vmlab-legacy","apiKey":"lab-secret-key"}"#,
    )?;
    std::fs::write(files.join("wifi-home"), "[connection]\nid=home\n")?;
    std::fs::write(files.join("migrd.log"), "{\"migrd\":1,\"step\":\"done\"}\n")?;
    let mut tb = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(files.join("backup.tgz"))?,
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tb.append_data(&mut h, "app-data/state.db", &b"hello"[..])?;
    tb.into_inner()?.finish()?;

    let boot = format!("{}@@{}", img.raw.display(), part("resin-boot")?);
    let sh = |cmd: &mut Command| -> Result<()> {
        let out = cmd.output()?;
        ensure!(
            out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("rror"),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    sh(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &boot])
        .arg(files.join("config.json"))
        .arg("::/config.json"))?;
    sh(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &boot])
        .arg(files.join("wifi-home"))
        .arg("::/system-connections/wifi-home"))?;
    let data = format!("{}?offset={}", img.raw.display(), part("resin-data")?);
    for req in [
        format!("write {} backup.tgz", files.join("backup.tgz").display()),
        "mkdir migrd".to_string(),
        format!(
            "write {} migrd/migrd.log",
            files.join("migrd.log").display()
        ),
    ] {
        sh(Command::new("debugfs").args(["-w", "-R", &req, &data]))?;
    }

    let run = Qemu::x86_64(&logs)
        .disk(&img.raw, None)
        .run(Duration::from_secs(180), None)?;
    let r = report::parse(&run.serial)
        .with_context(|| format!("no BALENA-REPORT line in {}", run.log.display()))?;
    eprintln!(
        "{:?} after {:.1}s; report: {r}",
        run.ended,
        run.elapsed.as_secs_f64()
    );
    ensure!(run.ended == Ended::Exited(Some(0)), "{:?}", run.ended);
    ensure!(
        !run.serial.contains("lab-secret-key"),
        "API key on the console"
    );
    ensure!(r["errors"] == json!([]), "errors {}", r["errors"]);
    ensure!(r["hostname"] == "vmlab-legacy" && r["has_api_key"] == true);
    ensure!(r["config_json"]["apiKey"] == "<redacted>");
    ensure!(r["config_json"]["deviceType"] == balena::DEVICE_TYPE);
    let conns: Vec<&str> = r["system_connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(conns == ["resin-sample.ignore", "wifi-home"], "{conns:?}");
    ensure!(
        r["backup"] == json!(["app-data/state.db"]),
        "backup {}",
        r["backup"]
    );
    ensure!(r["migration_log"]["present"] == true);
    let size = std::fs::metadata(files.join("migrd.log"))?.len();
    ensure!(r["migration_log"]["files"] == json!([{"path": "migrd/migrd.log", "size": size}]));
    Ok(())
}
