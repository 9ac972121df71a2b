//! arm64 U-Boot boards: a small Linux on QEMU's `virt` machine, booted by
//! Debian's real U-Boot (`u-boot-qemu`, distro boot running the board's
//! `boot.scr`), runs the aarch64 `migrd`; U-Boot then runs migrd's one-shot
//! script, which clears its own flag with `fatwrite` before it boots the
//! ramdisk; the ramdisk flashes the synthetic arm64 balenaOS (bootable by
//! the same U-Boot), which reports. And the fallback: a corrupted payload
//! stops the ramdisk at verify, and the next boot is the old OS again.
//!
//! Every guest reboot ends QEMU (`-no-reboot`); each boot has its own
//! serial log in `target/lab/logs/<scenario>/`.
//!
//! `#[ignore]`d for a plain `cargo test`; tests/lab/test.sh runs them.

use anyhow::{ensure, Context, Result};
use migrd_lab::images::{arm64_legacy, balena};
use migrd_lab::scenario::{
    check_balena_reports, check_ramdisk_migrated, check_ramdisk_stopped_at_verify, corrupt_cmd,
    OFFLINE, STEP,
};
use migrd_lab::scenario_uboot::{lab, UbootLab};
use std::time::Duration;

fn done(lab: &UbootLab, name: &str) {
    eprintln!(
        "{name}: passed in {:.1}s (logs {})",
        lab.t0.elapsed().as_secs_f64(),
        lab.logs.display()
    );
}

const MIGRATE: &str = "/mnt/migrd migrate -c /mnt/config.json -i /mnt/balena.img.gz --no-ack";

/// Scenario 1: the old OS → `migrd migrate` (U-Boot chosen by itself) →
/// U-Boot runs migrd's script once → ramdisk flashes → balenaOS boots
/// through U-Boot and reports config.json, hostname and the log.
#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_1_migrate_arm64_to_balenaos() -> Result<()> {
    let lab = lab("uboot-1-migrate")?;
    let mut g = lab.old_os("1-old-os")?;
    let check = g.run("/mnt/migrd check --json 2>/dev/null", STEP)?;
    let report: serde_json::Value = serde_json::from_str(&check.text)
        .with_context(|| format!("check --json: {}", check.text))?;
    ensure!(report["boot"]["firmware"] == "uboot", "{}", report["boot"]);
    ensure!(report["boot"]["strategy"] == "uboot", "{}", report["boot"]);
    ensure!(
        report["device"]["slugs"][0] == balena::DEVICE_TYPE_ARM64,
        "{}",
        report["device"]
    );

    // The real command: it arms and reboots by itself.
    g.send_line(&format!("cd /root && {MIGRATE} {OFFLINE}"))?;
    g.wait_exit(STEP)
        .context("migrd migrate did not reboot the guest")?;
    let stage1 = g.serial();
    ensure!(
        stage1.contains("armed: next boot runs the migration ramdisk once"),
        "stage 1 output: see {}",
        g.log().display()
    );

    let serial = lab.unattended("2-ramdisk")?;
    ensure!(
        serial.contains("migrd: one-shot flag cleared; booting the migration ramdisk"),
        "U-Boot did not run migrd's one-shot script: see the 2-ramdisk log"
    );
    check_ramdisk_migrated(&serial)?;

    let serial = lab.unattended("3-balenaos")?;
    ensure!(
        serial.contains("Booting the synthetic balenaOS"),
        "U-Boot did not run balenaOS's boot.scr"
    );
    check_balena_reports(&serial, balena::DEVICE_TYPE_ARM64, arm64_legacy::HOSTNAME)?;
    done(&lab, "uboot 1");
    Ok(())
}

/// Scenario 2: fallback. The ramdisk copy on the boot partition is
/// corrupted after arming → U-Boot clears the flag and boots it → verify
/// fails before the point of no return → reset → U-Boot runs the board's
/// own script → the old OS, canary intact, flag 0, `migrd status` says why.
#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_2_corrupt_payload_falls_back_to_old_os() -> Result<()> {
    let lab = lab("uboot-2-fallback")?;
    let mut g = lab.old_os("1-old-os")?;
    let out = g.run(
        &format!("cd /root && {MIGRATE} {OFFLINE} --no-reboot 2>&1"),
        STEP,
    )?;
    ensure!(out.code == 0, "migrd migrate failed:\n{}", out.text);
    let flag = g.run_ok(
        &format!("cat {}", arm64_legacy::ONESHOT_FLAG),
        Duration::from_secs(30),
    )?;
    ensure!(flag.trim() == "migrd_oneshot=1", "flag: {flag:?}");
    let flipped = g.run_ok(
        &corrupt_cmd("/boot/firmware/migrd/initramfs"),
        Duration::from_secs(120),
    )?;
    eprintln!("{flipped}");
    g.send_line("reboot")?;
    g.wait_exit(STEP)?;

    let serial = lab.unattended("2-ramdisk")?;
    ensure!(
        serial.contains("migrd: one-shot flag cleared; booting the migration ramdisk"),
        "U-Boot did not run migrd's one-shot script"
    );
    check_ramdisk_stopped_at_verify(&serial)?;

    let status = lab.check_back_in_old_os("3-old-os")?;
    eprintln!("migrd status:\n{status}");
    ensure!(
        status.contains("FAILED at step 'verify'") && status.contains("sha256"),
        "{status}"
    );
    done(&lab, "uboot 2");
    Ok(())
}
