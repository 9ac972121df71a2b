//! The README's demo: build a migration ramdisk for a virtual x86_64 device
//! with `migrd build`, boot it under QEMU with Debian's kernel, and tell what
//! stage 2 did, step by step.
//!
//! Until the full migration lab lands, the device is a bare virtual disk and
//! the "image" a stand-in payload; everything else (kernel, modules, init,
//! ramdisk layout, verification) is the real thing.

use anyhow::{ensure, Context, Result};
use migrd_lab::events::{self, find};
use migrd_lab::paths;
use migrd_lab::qemu::{Ended, Qemu};
use std::io::Write;
use std::process::Command;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let k = paths::kernel("amd64")?;
    let logs = paths::log_dir("demo")?;
    let img = logs.join("balena.img.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&img)?, flate2::Compression::fast());
    for i in 0..(4u32 << 20) / 4 {
        enc.write_all(&i.wrapping_mul(2_654_435_761).to_le_bytes())?;
    }
    enc.finish()?;
    let cfg = logs.join("config.json");
    std::fs::write(
        &cfg,
        br#"{"deviceType":"genericx86-64-ext","applicationId":1,"apiKey":"demo"}"#,
    )?;
    let disk = logs.join("device-disk.img");
    std::fs::File::create(&disk)?.set_len(256 << 20)?;

    println!(
        "1. migrd build: ramdisk for Debian kernel {} (x86_64)",
        k.release
    );
    let out = logs.join("ramdisk");
    let st = Command::new(paths::migrd_bin()?)
        .args(["build", "--arch", "x86_64", "--kernel-release", &k.release])
        .arg("--modules-dir")
        .arg(&k.modules_dir)
        .arg("-i")
        .arg(&img)
        .arg("-c")
        .arg(&cfg)
        .arg("--init")
        .arg(paths::init_bin("x86_64-unknown-linux-musl")?)
        .args(["--target", "serial=DEMO-DISK-1", "--pretend", "-o"])
        .arg(&out)
        .status()?;
    ensure!(st.success(), "migrd build failed");

    println!("\n2. booting the virtual device (QEMU, TCG) into the ramdisk...");
    let cmdline = format!(
        "{} console=ttyS0 quiet",
        std::fs::read_to_string(out.join("cmdline.txt"))?.trim()
    );
    let r = Qemu::x86_64(&logs)
        .kernel(&k.image, &out.join("initramfs.img"), &cmdline)
        .disk(&disk, Some("DEMO-DISK-1"))
        .run(Duration::from_secs(180), None)?;
    let ev = events::parse(&r.serial);
    println!(
        "   QEMU ended: {:?} after {:.1} s (serial log: {})",
        r.ended,
        r.elapsed.as_secs_f64(),
        r.log.display()
    );

    println!("\n3. what migrd-init (PID 1) reported:");
    for e in &ev {
        let msg = e["msg"].as_str().unwrap_or("");
        let extra = match e["step"].as_str() {
            Some("modules") => format!(
                "{} modules loaded",
                e["data"]["loaded"].as_array().map(Vec::len).unwrap_or(0)
            ),
            Some("verify") => format!(
                "{} ({} bytes)",
                e["data"]["path"].as_str().unwrap_or(""),
                e["data"]["size"]
            ),
            _ => String::new(),
        };
        println!(
            "   {:>6} ms  {:<13} {:<5} {msg} {extra}",
            e["t_ms"].as_u64().unwrap_or(0),
            e["step"].as_str().unwrap_or("?"),
            e["status"].as_str().unwrap_or("?")
        );
    }
    let done = find(&ev, "done", "ok").is_some();
    ensure!(
        r.ended == Ended::Exited(Some(0)) && done,
        "stage 2 did not complete; see {}",
        r.log.display()
    );
    let t = find(&ev, "find-target", "ok").context("no target")?;
    println!(
        "\nSummary: the ramdisk booted, found the target disk /dev/{} by its serial, verified every payload \
         file by SHA-256 and, being a pretend run, went back without writing anything.",
        t["data"]["disk"]["name"].as_str().unwrap_or("?")
    );
    Ok(())
}
