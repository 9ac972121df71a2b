//! ARM U-Boot boards: a small Linux on QEMU's `virt` machine (arm64, and
//! 32-bit with a Cortex-A15), booted by Debian's real U-Boot (`u-boot-qemu`,
//! distro boot running the board's `boot.scr`), runs `migrd` built for its
//! architecture; U-Boot then runs migrd's one-shot script, which clears its
//! own flag with `fatwrite` before it boots the ramdisk; the ramdisk
//! flashes the synthetic balenaOS of that architecture (bootable by the
//! same U-Boot), which reports. And the fallback: a corrupted payload stops
//! the ramdisk at verify, and the next boot is the old OS again.
//!
//! And the restore-first mode on a board that counts boots (the lab's own
//! U-Boot build with `CONFIG_BOOTCOUNT_ENV`, its environment in
//! `uboot.env` on the boot partition, booting through
//! `/extlinux/extlinux.conf`): migrd edits extlinux.conf and arms the
//! board's counter; a ramdisk that dies before its restore is booted
//! `bootlimit` times, then U-Boot runs the board's `altbootcmd` (its
//! recovery entry); and a ramdisk that runs restores both files and
//! migrates.
//!
//! Every guest reboot ends QEMU (`-no-reboot`); each boot has its own
//! serial log in `target/lab/logs/<scenario>/`.
//!
//! `#[ignore]`d for a plain `cargo test`; tests/lab/test.sh runs them.

use anyhow::{ensure, Context, Result};
use migrd_lab::events::{find, said};
use migrd_lab::guest::Guest;
use migrd_lab::images::arm64_legacy::{Arch, Board, BOOTLIMIT, FW_ENV_FILE};
use migrd_lab::images::{arm64_legacy, balena};
use migrd_lab::power_cut::{cut_when, Saved};
use migrd_lab::scenario::stage2_events;
use migrd_lab::scenario::{
    check_balena_reports, check_canary, check_ramdisk_migrated, check_ramdisk_stopped_at_verify,
    corrupt_cmd, API_KEY, OFFLINE, STEP,
};
use migrd_lab::scenario_uboot::{balena_boot, lab_on, UbootLab};
use std::time::Duration;

/// The boot in `serial` ended in a restart (QEMU, under `-no-reboot`, has
/// exited: the machine was reset), not in a power-off.
fn restarted(serial: &str, boot: &str) -> Result<()> {
    ensure!(
        serial.contains("reboot: Restarting system"),
        "{boot} did not end in a restart (see its log)"
    );
    Ok(())
}

fn done(lab: &UbootLab, name: &str) {
    eprintln!(
        "{name}: passed in {:.1}s (logs {})",
        lab.t0.elapsed().as_secs_f64(),
        lab.logs.display()
    );
}

const MIGRATE: &str = "/mnt/migrd migrate -c /mnt/config.json -i /mnt/balena.img.gz --no-ack";

/// What `migrd check --json` says on a U-Boot `board`: firmware and
/// strategy `uboot`, the board found in migrd's table with its slug, the
/// running kernel's machine, and the lab's image accepted for it.
fn check_json_on(g: &mut Guest, board: Board) -> Result<()> {
    let (id, machine) = match board.arch() {
        Arch::Arm64 => ("qemu-arm64-virt", "aarch64"),
        Arch::Armhf => ("qemu-arm-virt", "armv7l"),
    };
    let slug = balena_boot(board)?.device_type();
    let check = g.run(
        &format!(
            "/mnt/migrd check --json -c /mnt/config.json -i /mnt/balena.img.gz {OFFLINE} 2>/dev/null"
        ),
        STEP,
    )?;
    let report: serde_json::Value = serde_json::from_str(&check.text)
        .with_context(|| format!("check --json: {}", check.text))?;
    ensure!(report["boot"]["firmware"] == "uboot", "{}", report["boot"]);
    ensure!(report["boot"]["strategy"] == "uboot", "{}", report["boot"]);
    let dev = &report["device"];
    ensure!(dev["board"] == id && dev["slugs"][0] == slug, "{dev}");
    ensure!(dev["kernel_machine"] == machine, "{dev}");
    ensure!(report["target_device_type"] == slug, "{report}");
    let checks = report["checks"].as_array().context("no checks")?;
    let image = checks.iter().find(|c| c["name"] == "image");
    ensure!(
        image.is_some_and(|c| c["status"] == "pass"),
        "image check: {image:?}"
    );
    let failed: Vec<_> = checks.iter().filter(|c| c["status"] == "fail").collect();
    ensure!(failed.is_empty(), "failed checks: {failed:?}");
    Ok(())
}

/// The old OS → `migrd migrate` (U-Boot chosen by itself) → U-Boot runs
/// migrd's script once → ramdisk flashes → balenaOS boots through U-Boot
/// and reports config.json, hostname and the log.
fn migrate_on(board: Board, scenario: &str) -> Result<()> {
    let lab = lab_on(scenario, board)?;
    let mut g = lab.old_os("1-old-os")?;
    check_json_on(&mut g, board)?;

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
    ensure!(!stage1.contains(API_KEY), "the API key reached the console");
    restarted(&stage1, "1-old-os")?;

    let serial = lab.unattended("2-ramdisk")?;
    ensure!(
        serial.contains("migrd: one-shot flag cleared; booting the migration ramdisk"),
        "U-Boot did not run migrd's one-shot script: see the 2-ramdisk log"
    );
    let ev = check_ramdisk_migrated(&serial)?;
    restarted(&serial, "2-ramdisk")?;
    if board == Board::Virt {
        // The arm64 board's watchdog (QEMU's i6300esb) was armed and
        // petted through the flash.
        let wd = find(&ev, "watchdog", "ok").context("the ramdisk armed no watchdog")?;
        ensure!(wd["data"]["driver"] == "i6300esb", "{wd}");
    }

    let serial = lab.unattended("3-balenaos")?;
    ensure!(
        serial.contains("Booting the synthetic balenaOS"),
        "U-Boot did not run balenaOS's boot.scr"
    );
    let slug = balena_boot(board)?.device_type();
    check_balena_reports(&serial, slug, board.hostname())?;
    done(&lab, scenario);
    Ok(())
}

/// Fallback: the ramdisk copy on the boot partition is corrupted after
/// arming, then the power is cut (no reboot: what arming wrote is on the
/// disk when `migrd migrate` returns) → U-Boot clears the flag and boots
/// the ramdisk → verify fails before the point of no return → reset →
/// U-Boot runs the board's own script → the old OS, canary intact, flag 0,
/// `migrd status` says why. On the arm64 board, then: the armed disk put
/// back, the power cut as the ramdisk starts (see [`cut_at_start`]).
fn fallback_on(board: Board, scenario: &str) -> Result<()> {
    let lab = lab_on(scenario, board)?;
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
    g.kill();
    let armed = Saved::take(&lab.logs.join("armed"), &[&lab.disk])?;

    let serial = lab.unattended("2-ramdisk")?;
    ensure!(
        serial.contains("migrd: one-shot flag cleared; booting the migration ramdisk"),
        "U-Boot did not run migrd's one-shot script"
    );
    check_ramdisk_stopped_at_verify(&serial)?;
    restarted(&serial, "2-ramdisk")?;

    let status = lab.check_back_in_old_os("3-old-os")?;
    eprintln!("migrd status:\n{status}");
    ensure!(
        status.contains("FAILED at step 'verify'") && status.contains("sha256"),
        "{status}"
    );
    if board == Board::Virt {
        cut_at_start(&lab, &armed)?;
    }
    done(&lab, scenario);
    Ok(())
}

/// From the armed disk, the power cut as the ramdisk starts: U-Boot had
/// cleared the one-shot flag before it loaded the ramdisk, so the next
/// boot is the old OS (canary intact, flag 0); `migrd status` says it is
/// still armed, and `migrd cancel` undoes the arming.
fn cut_at_start(lab: &UbootLab, armed: &Saved) -> Result<()> {
    armed.restore()?;
    let mut g = Guest::start(&lab.qemu, "4-ramdisk-cut-at-start")?;
    cut_when(&mut g, "start", None, |_| true, &lab.board.prompt())?;
    let mut g = lab.old_os("5-old-os")?;
    check_canary(&mut g, arm64_legacy::CANARY, &lab.canary_sha256)?;
    let flag = g.run_ok(
        &format!("cat {}", arm64_legacy::ONESHOT_FLAG),
        Duration::from_secs(30),
    )?;
    ensure!(
        flag.trim_end_matches('\0').trim() == "migrd_oneshot=0",
        "one-shot flag not cleared by U-Boot: {flag:?}"
    );
    let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    eprintln!("migrd status after a cut as the ramdisk started:\n{status}");
    ensure!(status.contains("run `migrd cancel`"), "{status}");
    g.run_ok("/mnt/migrd cancel", STEP)?;
    let after = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    ensure!(
        after.contains("no migration armed"),
        "after cancel: {after}"
    );
    g.send_line("poweroff")?;
    g.wait_exit(STEP)?;
    Ok(())
}

/// Scenario 1 on the arm64 board: see [`migrate_on`].
#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_1_migrate_arm64_to_balenaos() -> Result<()> {
    migrate_on(Board::Virt, "uboot-1-migrate")
}

/// Scenario 2 on the arm64 board: see [`fallback_on`].
#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_2_corrupt_payload_falls_back_to_old_os() -> Result<()> {
    fallback_on(Board::Virt, "uboot-2-fallback")
}

/// Scenario 1 on the 32-bit board (QEMU `virt`, Cortex-A15, Debian's
/// 32-bit U-Boot, armhf kernel and busybox, the armv7 `migrd`): migrates to
/// the synthetic `generic-armv7ahf` balenaOS, booted by `bootz`.
#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, the armhf kernel and busybox and the armv7 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_armv7_1_migrate_armv7_to_balenaos() -> Result<()> {
    migrate_on(Board::VirtArmv7, "uboot-armv7-1-migrate")
}

/// Scenario 2 on the 32-bit board: a damaged payload stops the ramdisk at
/// verify and the old OS boots again.
#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, the armhf kernel and busybox and the armv7 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_armv7_2_corrupt_payload_falls_back_to_old_os() -> Result<()> {
    fallback_on(Board::VirtArmv7, "uboot-armv7-2-fallback")
}

const EXTLINUX: &str = "/boot/firmware/extlinux/extlinux.conf";

/// `migrd check`'s reason for the uboot strategy with `--uboot-restore-first`.
fn restore_first_reason(g: &mut migrd_lab::guest::Guest) -> Result<String> {
    let check = g.run(
        &format!(
            "/mnt/migrd check --json -c /mnt/config.json -i /mnt/balena.img.gz {OFFLINE} --uboot-restore-first 2>/dev/null"
        ),
        STEP,
    )?;
    let report: serde_json::Value = serde_json::from_str(&check.text)
        .with_context(|| format!("check --json: {}", check.text))?;
    let reason = report["boot"]["strategies"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["strategy"] == "uboot"))
        .and_then(|c| c["reason"].as_str())
        .map(str::to_string)
        .with_context(|| format!("no uboot strategy in {}", report["boot"]))?;
    ensure!(
        reason.contains(&format!(
            "the board counts boots (bootlimit={BOOTLIMIT}): migrd sets bootcount=0 and upgrade_available=1 in {FW_ENV_FILE}"
        )),
        "{reason}"
    );
    Ok(reason)
}

/// Scenario 3: restore-first on a board that counts boots, and a ramdisk
/// that dies before its restore (a lab-only hook makes migrd-init exit
/// after reading its plan → kernel panic → `panic=10` resets). U-Boot
/// boots the ramdisk twice (bootcount 1 and 2), then, with bootcount 3
/// above bootlimit 2, runs the board's altbootcmd: the old OS boots from
/// its recovery entry, canary intact; `migrd cancel` there puts
/// extlinux.conf and uboot.env back byte for byte, and the next boot is the
/// board's normal one.
#[test]
#[ignore = "lab: needs qemu-system-arm, the lab's U-Boot build, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_3_restore_first_counter_ends_a_dying_ramdisk_in_board_recovery() -> Result<()> {
    let lab = lab_on("uboot-3-bootcount", Board::VirtBootcount)?;
    let mut g = lab.old_os("1-old-os")?;
    let sums = format!("sha256sum {EXTLINUX} {FW_ENV_FILE}");
    let before = g.run_ok(&sums, Duration::from_secs(30))?;
    restore_first_reason(&mut g)?;
    let out = g.run(
        &format!(
            "cd /root && MIGRD_TEST_HOOK=exit-after=plan {MIGRATE} {OFFLINE} --uboot-restore-first --no-reboot 2>&1"
        ),
        STEP,
    )?;
    ensure!(out.code == 0, "migrd migrate failed:\n{}", out.text);
    let armed = g.run_ok(&sums, Duration::from_secs(30))?;
    for (b, a) in before.lines().zip(armed.lines()) {
        ensure!(b != a, "not changed by arming: {a}");
    }
    g.send_line("reboot")?;
    g.wait_exit(STEP)?;

    for boot in ["2-ramdisk", "3-ramdisk"] {
        let serial = lab.unattended(boot)?;
        ensure!(
            !serial.contains("Bootlimit"),
            "{boot}: U-Boot gave up counting too early"
        );
        let ev = stage2_events(&serial);
        ensure!(
            said(&ev, "exit", "ok", "test hook"),
            "{boot}: the ramdisk did not stop at the test hook (see its log)"
        );
        ensure!(
            serial.contains("Kernel panic"),
            "{boot}: no kernel panic in the ramdisk boot"
        );
    }

    let mut g = lab.old_os("4-recovery")?;
    let serial = g.serial();
    ensure!(
        serial.contains(&format!(
            "Bootlimit ({BOOTLIMIT}) exceeded. Using altbootcmd."
        )) && serial.contains("migrd-lab: bootlimit exceeded, booting the recovery entry"),
        "the old OS did not come back through altbootcmd (see the 4-recovery log)"
    );
    migrd_lab::scenario::check_canary(&mut g, arm64_legacy::CANARY, &lab.canary_sha256)?;
    let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    eprintln!("migrd status:\n{status}");
    ensure!(
        status.contains(&format!(
            "armed (restore-first): {EXTLINUX} boots the migration ramdisk"
        )),
        "{status}"
    );
    let cancel = g.run("/mnt/migrd cancel 2>&1", STEP)?;
    ensure!(cancel.code == 0, "migrd cancel failed:\n{}", cancel.text);
    let after = g.run_ok(&sums, Duration::from_secs(30))?;
    ensure!(
        after == before,
        "cancel did not restore every byte:\nbefore {before}\nafter {after}"
    );
    g.send_line("poweroff")?;
    g.wait_exit(STEP)?;

    let mut g = lab.old_os("5-old-os")?;
    let serial = g.serial();
    ensure!(
        !serial.contains("Bootlimit")
            && !serial.contains("migrd migration ramdisk")
            && !serial.contains("Saving Environment"),
        "after cancel the board did not boot its own entry uncounted (see the 5-old-os log)"
    );
    g.send_line("poweroff")?;
    g.wait_exit(STEP)?;
    done(&lab, "uboot 3");
    Ok(())
}

/// Scenario 4: restore-first on the counting board, migrating: the
/// ramdisk puts extlinux.conf and uboot.env back first (by PARTUUID, in
/// that order), then flashes; balenaOS boots through the same U-Boot.
#[test]
#[ignore = "lab: needs qemu-system-arm, the lab's U-Boot build, the arm64 kernel and the aarch64 builds (tests/lab/setup.sh, tests/lab/test.sh)"]
fn uboot_4_restore_first_migrates_a_counting_board() -> Result<()> {
    let lab = lab_on("uboot-4-restore-first", Board::VirtBootcount)?;
    let mut g = lab.old_os("1-old-os")?;
    restore_first_reason(&mut g)?;
    g.send_line(&format!(
        "cd /root && {MIGRATE} {OFFLINE} --uboot-restore-first"
    ))?;
    g.wait_exit(STEP)
        .context("migrd migrate did not reboot the guest")?;

    let serial = lab.unattended("2-ramdisk")?;
    ensure!(!serial.contains("Bootlimit"), "U-Boot did not count from 0");
    let conf = serial.find("restored extlinux/extlinux.conf on /dev/vda1");
    let env = serial.find("restored uboot.env on /dev/vda1");
    ensure!(
        matches!((conf, env), (Some(c), Some(e)) if c < e),
        "stage 2 did not restore extlinux.conf, then uboot.env (see the 2-ramdisk log)"
    );
    check_ramdisk_migrated(&serial)?;

    let serial = lab.unattended("3-balenaos")?;
    check_balena_reports(&serial, balena::DEVICE_TYPE_ARM64, arm64_legacy::HOSTNAME)?;
    done(&lab, "uboot 4");
    Ok(())
}
