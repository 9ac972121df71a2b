//! Raspberry Pi, booted for real in QEMU's `raspi3b` with what the firmware
//! model selects before each boot (QEMU cannot run the Pi's GPU firmware;
//! the model is an emulator of its file selection and of the tryboot flag,
//! see `migrd_lab::rpi_firmware`). The old OS runs the aarch64 `migrd`.
//!
//! - config.txt strategy on a Pi 3: migrd appends the ramdisk's
//!   `initramfs` and `cmdline` lines to config.txt; the model then picks
//!   the ramdisk, whose stage 2 restores config.txt first and flashes the
//!   SD card with the synthetic Pi balenaOS, whose boot files the model
//!   picks next. And the fallback: a corrupted payload, config.txt
//!   restored by the ramdisk, the old OS again; it also cuts the power
//!   right after arming and, on the Pi 3, as the ramdisk starts.
//! - tryboot strategy on a Pi 4 (the same raspi3b hardware presented as a
//!   Pi 4, see `arm64_legacy::Board::Pi4`): migrd writes only tryboot.txt
//!   and restarts with "0 tryboot"; the model sets its flag from that,
//!   clears it before reading tryboot.txt and boots the ramdisk. And the
//!   fallback: the flag is consumed, so after the failed verify the model
//!   reads the untouched config.txt and boots the old OS.
//!
//! `#[ignore]`d for a plain `cargo test`; tests/lab/test.sh runs them.

use anyhow::{ensure, Context, Result};
use migrd_lab::images::arm64_legacy::{self, Board};
use migrd_lab::images::balena;
use migrd_lab::power_cut::cut_when;
use migrd_lab::scenario::{
    check_balena_reports, check_ramdisk_migrated, check_ramdisk_stopped_at_verify, corrupt_cmd,
    OFFLINE, STEP,
};
use migrd_lab::scenario_rpi::{lab, RpiLab, TOOLS};
use std::time::Duration;

fn done(lab: &RpiLab, name: &str) {
    eprintln!(
        "{name}: passed in {:.1}s (logs {})",
        lab.t0.elapsed().as_secs_f64(),
        lab.logs.display()
    );
}

/// QEMU's raspi machines model the BCM2835 watchdog block as a reset
/// switch only: a write to its RSTC register that selects a full reset
/// resets the board at once, and WDOG never counts down (QEMU's
/// hw/misc/bcm2835_powermgt.c). Linux's `bcm2835_wdt` writes just that
/// when it starts the watchdog, so arming it resets the emulated board on
/// the spot, where a real Pi counts the timeout down. The lab's Pi
/// migrations therefore pass `--no-watchdog` (docs/lab.md); the watchdog
/// is armed in the lab on the x86 PC (`i6300esb`, migrate_bios).
const NO_WATCHDOG: &str = "--no-watchdog";

fn migrate_cmd() -> String {
    format!(
        "cd /root && {TOOLS}/migrd migrate -c {TOOLS}/config.json -i {TOOLS}/balena.img.gz --no-ack {OFFLINE} {NO_WATCHDOG}"
    )
}

/// The old OS's first boot picks what Raspberry Pi OS's config.txt says:
/// the 64-bit kernel and its initramfs, or the 32-bit ones on a Pi 2.
fn check_old_os_selection(sel: &migrd_lab::rpi_firmware::Selection, board: Board) -> Result<()> {
    let (kernel, initramfs) = match board {
        Board::Pi2 => ("kernel7.img", "initramfs7"),
        _ => ("kernel8.img", "initramfs8"),
    };
    ensure!(
        sel.config_file == "config.txt" && sel.kernel == kernel && sel.initramfs == [initramfs],
        "{sel:?}"
    );
    Ok(())
}

/// The boot after the flash: the model reads balenaOS's config.txt (no
/// tryboot) and picks its files; balenaOS reports as device type `slug`.
fn boot_balenaos(lab: &mut RpiLab, slug: &str) -> Result<()> {
    let (sel, serial) = lab.unattended("3-balenaos")?;
    ensure!(
        !sel.tryboot && sel.config_file == "config.txt" && sel.initramfs == ["balena-reporter.img"],
        "the model did not pick balenaOS's files: {sel:?}"
    );
    check_balena_reports(&serial, slug, lab.board.hostname())?;
    Ok(())
}

/// The boot after a ramdisk that stopped at verify: the model reads
/// config.txt and picks the old OS's files; canary intact, config.txt
/// equal to `config_txt`, and `migrd status` names the failed verify.
fn back_in_old_os_after_failed_verify(lab: &mut RpiLab, config_txt: &str) -> Result<()> {
    let (sel, _) = lab.select("3-selection")?;
    check_old_os_selection(&sel, lab.board)?;
    ensure!(!sel.tryboot, "{sel:?}");
    let status = lab.check_back_in_old_os("3-old-os", config_txt)?;
    eprintln!("migrd status:\n{status}");
    ensure!(
        status.contains("FAILED at step 'verify'") && status.contains("sha256"),
        "{status}"
    );
    Ok(())
}

/// config.txt migrate on a Pi `board` migrating to `slug`. The old OS →
/// `migrd migrate` (rpi-config chosen by itself: no tryboot) → the model
/// picks the ramdisk from the edited config.txt → stage 2 restores
/// config.txt, flashes → the model picks balenaOS's files → it reports.
fn config_txt_migrate(board: Board, scenario: &str, slug: &str) -> Result<()> {
    let mut lab = lab(scenario, board)?;
    let (sel, _) = lab.select("0-selection")?;
    check_old_os_selection(&sel, board)?;
    let mut g = lab.old_os("1-old-os")?;
    let report = check_report(&mut g)?;
    ensure!(report["boot"]["firmware"] == "rpi", "{}", report["boot"]);
    ensure!(
        report["boot"]["strategy"] == "rpi-config",
        "{}",
        report["boot"]
    );
    ensure!(
        report["device"]["slugs"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == slug)),
        "{}",
        report["device"]
    );
    g.send_line(&migrate_cmd())?;
    lab.end(&mut g).context("migrd migrate did not reboot")?;
    ensure!(
        g.serial()
            .contains("armed: next boot runs the migration ramdisk once"),
        "stage 1 output: see {}",
        g.log().display()
    );

    let (sel, serial) = lab.unattended("2-ramdisk")?;
    ensure!(
        sel.initramfs.iter().any(|f| f.contains("migrd")),
        "the firmware model did not pick migrd's ramdisk: {sel:?}"
    );
    check_ramdisk_migrated(&serial)?;

    boot_balenaos(&mut lab, slug)?;
    done(&lab, scenario);
    Ok(())
}

/// config.txt fallback after the restore on a Pi `board`. The ramdisk on
/// the boot partition is corrupted after arming, then the power is cut
/// (no reboot: what arming wrote to the FAT boot partition is on the card
/// when `migrd migrate` returns) → the model picks the ramdisk → with
/// `cut_at_start`, the power is cut again as the ramdisk starts, before its
/// disarm step, and the model picks the ramdisk again (config.txt is
/// one-shot only once the ramdisk restored it: docs/migration.md, "Power
/// cuts") → stage 2 restores config.txt, then stops at verify → the model
/// picks the old OS's files again → canary intact, config.txt as before,
/// `migrd status` explains.
fn config_txt_fallback(board: Board, scenario: &str, cut_at_start: bool) -> Result<()> {
    let mut lab = lab(scenario, board)?;
    let mut g = lab.old_os("1-old-os")?;
    let before = g.run_ok("cat /boot/firmware/config.txt", Duration::from_secs(30))?;
    let out = g.run(&format!("{} --no-reboot 2>&1", migrate_cmd()), STEP)?;
    ensure!(out.code == 0, "migrd migrate failed:\n{}", out.text);
    let flipped = g.run_ok(
        &corrupt_cmd("/boot/firmware/migrd-initrd.img"),
        Duration::from_secs(120),
    )?;
    eprintln!("{flipped}");
    g.kill();

    if cut_at_start {
        let (sel, q) = lab.select("2-ramdisk-cut-at-start")?;
        ensure!(
            sel.initramfs.iter().any(|f| f.contains("migrd")),
            "after a power cut right after arming, the model did not pick migrd's ramdisk: {sel:?}"
        );
        let mut r = migrd_lab::guest::Guest::start(&q, "2-ramdisk-cut-at-start")?;
        cut_when(&mut r, "start", None, |_| true, &board.prompt())?;
    }
    let (sel, serial) = lab.unattended("2-ramdisk")?;
    ensure!(
        sel.initramfs.iter().any(|f| f.contains("migrd")),
        "the firmware model did not pick migrd's ramdisk: {sel:?}"
    );
    let ev = check_ramdisk_stopped_at_verify(&serial)?;
    ensure!(
        migrd_lab::events::find(&ev, "disarm", "ok").is_some(),
        "config.txt not restored by stage 2: {:?}",
        migrd_lab::events::summary(&ev)
    );

    back_in_old_os_after_failed_verify(&mut lab, &before)?;
    done(&lab, scenario);
    Ok(())
}

/// Scenario 1: config.txt migrate on a Pi 3 (see [`config_txt_migrate`]).
#[test]
#[ignore = "lab: needs qemu-system-arm, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn rpi_1_config_txt_migrate_pi3() -> Result<()> {
    config_txt_migrate(Board::Pi3, "rpi-1-config-migrate", balena::DEVICE_TYPE_PI3)
}

/// Scenario 2: config.txt fallback on a Pi 3, with power cuts right after
/// arming and as the ramdisk starts (see [`config_txt_fallback`]).
#[test]
#[ignore = "lab: needs qemu-system-arm, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn rpi_2_config_txt_fallback_after_restore_pi3() -> Result<()> {
    config_txt_fallback(Board::Pi3, "rpi-2-config-fallback", true)
}

/// config.txt migrate on a Pi 2 (QEMU's `raspi2b`, 32-bit: Debian's armhf
/// kernel as kernel7.img, the armv7 `migrd`) to the synthetic
/// `raspberry-pi2` balenaOS.
#[test]
#[ignore = "lab: needs qemu-system-arm, the armhf kernel and busybox and the armv7 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn rpi_pi2_1_config_txt_migrate() -> Result<()> {
    config_txt_migrate(
        Board::Pi2,
        "rpi-pi2-1-config-migrate",
        balena::DEVICE_TYPE_PI2,
    )
}

/// config.txt fallback on a Pi 2, with a power cut right after arming (the
/// cut as the ramdisk starts is the Pi 3's, scenario 2: the same config.txt
/// code, and each Pi 2 boot costs about a minute of lab).
#[test]
#[ignore = "lab: needs qemu-system-arm, the armhf kernel and busybox and the armv7 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn rpi_pi2_2_config_txt_fallback_after_restore() -> Result<()> {
    config_txt_fallback(Board::Pi2, "rpi-pi2-2-config-fallback", false)
}

/// The old OS's `migrd check --json` report.
fn check_report(g: &mut migrd_lab::guest::Guest) -> Result<serde_json::Value> {
    let check = g.run(&format!("{TOOLS}/migrd check --json 2>/dev/null"), STEP)?;
    serde_json::from_str(&check.text).with_context(|| format!("check --json: {}", check.text))
}

/// The boot files tryboot must leave alone, read from the host.
fn untouched_files(lab: &RpiLab) -> Result<Vec<Vec<u8>>> {
    ["config.txt", "cmdline.txt"]
        .iter()
        .map(|f| lab.boot_file(f))
        .collect()
}

/// Scenario 3: tryboot migrate. A Pi 4 → `migrd migrate` (rpi-tryboot
/// chosen by itself) writes tryboot.txt and restarts with "0 tryboot" →
/// the model clears the flag and reads tryboot.txt → the ramdisk flashes →
/// the model reads balenaOS's config.txt → it reports.
#[test]
#[ignore = "lab: needs qemu-system-arm, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn rpi_3_tryboot_migrate_pi4() -> Result<()> {
    let mut lab = lab("rpi-3-tryboot-migrate", Board::Pi4)?;
    let before = untouched_files(&lab)?;
    let mut g = lab.old_os("1-old-os")?;
    let report = check_report(&mut g)?;
    ensure!(
        report["device"]["model"] == arm64_legacy::PI4_MODEL
            && report["device"]["slugs"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == balena::DEVICE_TYPE_PI4)),
        "the OS does not see a Pi 4: {}",
        report["device"]
    );
    ensure!(
        report["boot"]["strategy"] == "rpi-tryboot",
        "{}",
        report["boot"]
    );
    g.send_line(&migrate_cmd())?;
    let line = lab.end(&mut g).context("migrd migrate did not reboot")?;
    ensure!(
        line.contains("Restarting system with command '0 tryboot'"),
        "stage 1 did not restart with the tryboot argument: {line}"
    );
    ensure!(lab.firmware.tryboot_flag, "tryboot flag not set");
    ensure!(
        untouched_files(&lab)? == before,
        "tryboot changed config.txt or cmdline.txt"
    );
    let tryboot_txt = String::from_utf8(lab.boot_file("tryboot.txt")?)?;
    eprintln!("tryboot.txt:\n{tryboot_txt}");

    let (sel, serial) = lab.unattended("2-ramdisk")?;
    ensure!(
        sel.tryboot && sel.config_file == "tryboot.txt",
        "the ramdisk boot was not a tryboot: {sel:?}"
    );
    ensure!(
        !lab.firmware.tryboot_flag,
        "the flag must be consumed by the tryboot boot"
    );
    ensure!(
        sel.initramfs.iter().any(|f| f.contains("migrd")),
        "the firmware model did not pick migrd's ramdisk: {sel:?}"
    );
    check_ramdisk_migrated(&serial)?;

    boot_balenaos(&mut lab, balena::DEVICE_TYPE_PI4)?;
    done(&lab, "rpi 3");
    Ok(())
}

/// Scenario 4: tryboot fallback. The ramdisk is damaged before it is armed
/// (the lab hook, since migrd itself restarts with the flag) → the model
/// consumes the flag and boots it from tryboot.txt → stage 2 stops at
/// verify and restarts plainly → the model reads config.txt, untouched
/// all along → the old OS: canary intact, `migrd status` explains.
#[test]
#[ignore = "lab: needs qemu-system-arm, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn rpi_4_tryboot_fallback_pi4() -> Result<()> {
    let mut lab = lab("rpi-4-tryboot-fallback", Board::Pi4)?;
    let before = untouched_files(&lab)?;
    let mut g = lab.old_os("1-old-os")?;
    let config_txt = g.run_ok("cat /boot/firmware/config.txt", Duration::from_secs(30))?;
    g.send_line(&migrate_cmd().replace("&& ", "&& MIGRD_TEST_HOOK=corrupt-ramdisk "))?;
    let line = lab.end(&mut g).context("migrd migrate did not reboot")?;
    ensure!(
        g.serial().contains("corrupt-ramdisk: flipped byte"),
        "the lab hook did not damage the ramdisk; see {}",
        g.log().display()
    );
    ensure!(
        lab.firmware.tryboot_flag,
        "tryboot flag not set by stage 1's restart: {line}"
    );

    let (sel, serial) = lab.unattended("2-ramdisk")?;
    ensure!(
        sel.tryboot && sel.initramfs.iter().any(|f| f.contains("migrd")),
        "the model did not tryboot migrd's ramdisk: {sel:?}"
    );
    check_ramdisk_stopped_at_verify(&serial)?;
    ensure!(
        !lab.firmware.tryboot_flag,
        "the flag must be consumed by the tryboot boot"
    );
    ensure!(
        untouched_files(&lab)? == before,
        "config.txt or cmdline.txt changed"
    );

    back_in_old_os_after_failed_verify(&mut lab, &config_txt)?;
    done(&lab, "rpi 4");
    Ok(())
}
