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
