//! The README's demo: lab scenario 1 with commentary. A virtual x86_64
//! device runs Debian bookworm (real SeaBIOS, GRUB, kernel, systemd under
//! QEMU); `migrd migrate` runs inside it, the device reboots once into the
//! migration ramdisk, which flashes balenaOS and carries the device's
//! identity over; then the new OS boots and reports what it found.
//!
//! The balenaOS image is the lab's synthetic one (the real partition
//! layout; its "OS" prints a report), because the real one cannot be
//! downloaded here.

use anyhow::{ensure, Context, Result};
use migrd_lab::events;
use migrd_lab::report;
use migrd_lab::scenario::{lab, stage2_events, OFFLINE, STEP};
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let t0 = Instant::now();
    println!("== preparing the virtual device (first run builds a Debian image: a few minutes)");
    let lab = lab("demo")?;

    println!("== boot 1: the old OS");
    let mut g = lab.debian("1-debian")?;
    let os = g.run_ok(
        ". /etc/os-release; echo \"$PRETTY_NAME\"",
        Duration::from_secs(30),
    )?;
    let kernel = g.run_ok("uname -r", Duration::from_secs(30))?;
    let host = g.run_ok("hostname", Duration::from_secs(30))?;
    println!("   {os}, kernel {kernel}, hostname {host}");
    let cmd =
        format!("/mnt/migrd migrate -c /mnt/config.json -i /mnt/balena.img.gz --no-ack {OFFLINE}");
    println!("   running: {cmd}");
    g.send_line(&format!("cd /root && {cmd}"))?;
    g.wait_exit(STEP)
        .context("migrd migrate did not reboot the device")?;
    for line in g.serial().lines().map(|l| l.trim_end_matches('\r')) {
        if [
            "PASS ",
            "WARN ",
            "FAIL ",
            "armed:",
            "migrd will",
            "Carried over",
        ]
        .iter()
        .any(|p| line.starts_with(p))
        {
            println!("   | {line}");
        }
    }

    println!("== boot 2: GRUB boots the migration ramdisk once");
    let serial = lab.unattended("2-ramdisk")?;
    let ev = stage2_events(&serial);
    for e in &ev {
        if e["status"] == "progress" {
            continue;
        }
        println!(
            "   {:>6} ms  {:<19} {:<5} {}",
            e["t_ms"].as_u64().unwrap_or(0),
            e["step"].as_str().unwrap_or("?"),
            e["status"].as_str().unwrap_or("?"),
            e["msg"].as_str().unwrap_or("")
        );
    }
    ensure!(
        events::find(&ev, "done", "ok").is_some(),
        "the ramdisk did not finish; see {}",
        lab.logs.display()
    );

    println!("== boot 3: the new OS");
    let serial = lab.unattended("3-balenaos")?;
    let r = report::parse(&serial).context("the new OS printed no report")?;
    let inject = events::find(&ev, "inject", "ok")
        .map(|e| e["data"]["written"].clone())
        .unwrap_or_default();

    println!("\nSummary ({:.0} s in all)", t0.elapsed().as_secs_f64());
    println!("  old OS:        {os} on BIOS + GRUB, hostname {host}");
    println!("  carried over:  {inject} (the API key travelled but was never printed)");
    println!(
        "  new OS found:  partitions {}; config.json for fleet {} ({}), hostname {}, API key present: {}; migration log: {} bytes",
        r["partitions"],
        r["config_json"]["applicationId"],
        r["config_json"]["deviceType"],
        r["hostname"],
        r["has_api_key"],
        r["migration_log"]["size"]
    );
    println!("  logs:          {}", lab.logs.display());
    Ok(())
}
