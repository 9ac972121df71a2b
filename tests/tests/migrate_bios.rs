//! The first real migration: Debian bookworm on BIOS + GRUB → balenaOS,
//! with every fallback. Real SeaBIOS, GRUB, Debian kernel and systemd under
//! QEMU (TCG); `migrd` runs inside the guest, delivered on a second disk.
//! The balenaOS image is the lab's synthetic one (same partition layout,
//! its "OS" prints a report), because the real one cannot be downloaded here.
//!
//! Each guest reboot ends QEMU (`-no-reboot`); the next boot is a new QEMU
//! process on the same disks, so every boot has its own serial log in
//! `target/lab/logs/<scenario>/`.
//!
//! `#[ignore]`d for a plain `cargo test`; tests/lab/test.sh runs them.

use anyhow::{bail, ensure, Context, Result};
use migrd_lab::events::{find, said, summary};
use migrd_lab::images::{balena, legacy};
use migrd_lab::scenario::{
    arm_and_reboot, check_balena_reports, check_ramdisk_migrated, check_ramdisk_stopped_at_verify,
    corrupt_cmd, lab, migrate, stage2_events, OFFLINE, STEP,
};
use std::time::Duration;

fn done(lab: &migrd_lab::scenario::Lab, name: &str) {
    eprintln!(
        "{name}: passed in {:.1}s (logs {})",
        lab.t0.elapsed().as_secs_f64(),
        lab.logs.display()
    );
}

/// Scenario 1: migrate. Debian → `migrd migrate` → GRUB boots the ramdisk
/// once → balenaOS flashed with config.json (hostname carried) and the
/// migration log → the new OS boots and reports.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn scenario_1_migrate_debian_bios_grub_to_balenaos() -> Result<()> {
    let lab = lab("migrate-bios")?;
    let mut g = lab.debian("1-debian")?;
    // The real command: it reboots by itself.
    g.send_line(&format!(
        "cd /root && /mnt/migrd migrate -c /mnt/config.json -i /mnt/balena.img.gz --no-ack {OFFLINE}"
    ))?;
    g.wait_exit(STEP)
        .context("migrd migrate did not reboot the guest")?;
    let stage1 = g.serial();
    ensure!(
        stage1.contains("armed: next boot runs the migration ramdisk once"),
        "stage 1 output: see {}",
        g.log().display()
    );

    let ev = check_ramdisk_migrated(&lab.unattended("2-ramdisk")?)?;
    // The PC's watchdog (QEMU's i6300esb) was armed, and petted through
    // the flash: it did not reset the machine.
    let wd = find(&ev, "watchdog", "ok").context("the ramdisk armed no watchdog")?;
    ensure!(wd["data"]["driver"] == "i6300esb", "{wd}");
    let serial = lab.unattended("3-balenaos")?;
    check_balena_reports(&serial, balena::DEVICE_TYPE, legacy::HOSTNAME)?;
    done(&lab, "scenario 1");
    Ok(())
}

/// Scenario 2: fallback. The payload is corrupted after stage 1 armed the
/// boot → the ramdisk stops at verify, before the point of no return → it
/// reboots → Debian boots, canary intact, next_entry empty, and
/// `migrd status` says what failed.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn scenario_2_corrupt_payload_falls_back_to_debian() -> Result<()> {
    let lab = lab("fallback-bios")?;
    let mut g = lab.debian("1-debian")?;
    let out = migrate(&mut g, "", "--no-reboot")?;
    ensure!(out.code == 0, "{}", out.text);
    let flipped = g.run_ok(
        &corrupt_cmd("/boot/migrd/initramfs.img"),
        Duration::from_secs(120),
    )?;
    eprintln!("{flipped}");
    g.send_line("systemctl reboot")?;
    g.wait_exit(STEP)?;

    let ev = check_ramdisk_stopped_at_verify(&lab.unattended("2-ramdisk")?)?;
    ensure!(
        find(&ev, "status", "ok").is_some(),
        "status not recorded: {:?}",
        summary(&ev)
    );

    let status = lab.check_back_in_debian("3-debian")?;
    eprintln!("migrd status:\n{status}");
    ensure!(
        status.contains("FAILED at step 'verify'") && status.contains("sha256"),
        "{status}"
    );
    done(&lab, "scenario 2");
    Ok(())
}

/// Scenario 3: pretend. Every step up to the point of no return runs in the
/// ramdisk, then Debian boots again and `migrd status` says so.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn scenario_3_pretend_goes_back_and_says_it_passed() -> Result<()> {
    let lab = lab("pretend-bios")?;
    let mut g = lab.debian("1-debian")?;
    arm_and_reboot(&mut g, "", "--pretend")?;
    let ev = stage2_events(&lab.unattended("2-ramdisk")?);
    ensure!(
        find(&ev, "done", "ok").is_some() && find(&ev, "point-of-no-return", "ok").is_none(),
        "{:?}",
        summary(&ev)
    );
    let status = lab.check_back_in_debian("3-debian")?;
    ensure!(status.contains("pretend succeeded"), "{status}");
    done(&lab, "scenario 3");
    Ok(())
}

/// Scenario 4: cancel. `migrd migrate --no-reboot` then `migrd cancel`:
/// every file under /boot (grubenv included) byte-identical to before.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn scenario_4_cancel_restores_boot_byte_for_byte() -> Result<()> {
    let lab = lab("cancel-bios")?;
    let mut g = lab.debian("1-debian")?;
    let hash_boot =
        "find /boot -type f -print0 | sort -z | xargs -0 sha256sum; find /boot | sort | md5sum";
    let before = g.run_ok(hash_boot, Duration::from_secs(120))?;
    let out = migrate(&mut g, "", "--no-reboot")?;
    ensure!(out.code == 0, "{}", out.text);
    let armed = g.run_ok(hash_boot, Duration::from_secs(120))?;
    ensure!(armed != before, "arming changed nothing under /boot");
    let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    ensure!(
        status.contains("next boot runs the migration ramdisk"),
        "{status}"
    );
    g.run_ok("/mnt/migrd cancel", Duration::from_secs(60))?;
    let after = g.run_ok(hash_boot, Duration::from_secs(120))?;
    if after != before {
        bail!("/boot differs after cancel:\nbefore:\n{before}\nafter:\n{after}");
    }
    let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    ensure!(status.contains("no migration armed"), "{status}");
    g.shutdown(STEP)?;
    done(&lab, "scenario 4");
    Ok(())
}

/// Scenario 5: init dies. A test-only plan hook makes migrd-init exit right
/// after reading the plan → the kernel panics → `panic=10` reboots → GRUB
/// already cleared next_entry → Debian boots.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn scenario_5_init_dies_kernel_panics_debian_boots() -> Result<()> {
    let lab = lab("panic-bios")?;
    let mut g = lab.debian("1-debian")?;
    arm_and_reboot(&mut g, "MIGRD_TEST_HOOK=exit-after=plan", "")?;
    let serial = lab.unattended("2-ramdisk")?;
    let ev = stage2_events(&serial);
    ensure!(said(&ev, "exit", "ok", "test hook"), "{:?}", summary(&ev));
    ensure!(
        serial.contains("Kernel panic"),
        "no kernel panic in the ramdisk boot"
    );
    ensure!(
        serial.contains("Rebooting in 10 seconds"),
        "panic=10 not in effect"
    );
    let status = lab.check_back_in_debian("3-debian")?;
    eprintln!("migrd status:\n{status}");
    done(&lab, "scenario 5");
    Ok(())
}

/// Scenario 6: a hang. A test-only plan hook makes load-payload hang
/// forever, as a dead driver or SD card would → the ramdisk's deadline
/// guard, a thread of its own, sees the step overrun its 30 s budget and
/// reboots by itself → GRUB already cleared next_entry → Debian boots,
/// canary intact. Nothing was written: the point of no return never came.
/// Then a wedge: armed again, verify hangs and the guard stops as well (a
/// test hook, standing for a kernel that no longer runs PID 1's threads) →
/// only the PC's hardware watchdog (QEMU's i6300esb, armed by the
/// ramdisk) can act: it resets the machine, with no reboot line from the
/// kernel → Debian boots, canary intact.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn scenario_6_a_hung_step_is_rebooted_by_the_guard_into_debian() -> Result<()> {
    let lab = lab("hang-bios")?;
    let mut g = lab.debian("1-debian")?;
    arm_and_reboot(&mut g, "MIGRD_TEST_HOOK=hang-at=load-payload", "")?;
    let ev = stage2_events(&lab.unattended("2-ramdisk")?);
    ensure!(
        said(&ev, "load-payload", "begin", "test hook"),
        "the hang hook did not run: {:?}",
        summary(&ev)
    );
    let overrun = find(&ev, "load-payload", "fail").context("no overrun from the guard")?;
    let msg = overrun["msg"].as_str().unwrap_or("");
    ensure!(
        msg.contains("over its budget") && msg.contains("rebooting into the old OS"),
        "{overrun}"
    );
    ensure!(
        find(&ev, "point-of-no-return", "ok").is_none(),
        "crossed the point of no return"
    );
    let (mut g, status) = lab.back_in_debian("3-debian")?;
    eprintln!("migrd status:\n{status}");

    // As `migrd status` advises: cancel what the first run left, arm again
    // (in the same boot: what a boot of Debian shows is checked above).
    g.run_ok("/mnt/migrd cancel", STEP)?;
    arm_and_reboot(&mut g, "MIGRD_TEST_HOOK=wedge-at=verify", "")?;
    let serial = lab.unattended("5-ramdisk")?;
    let ev = stage2_events(&serial);
    let wd = find(&ev, "watchdog", "ok").context("the ramdisk armed no watchdog")?;
    ensure!(wd["data"]["driver"] == "i6300esb", "{wd}");
    ensure!(
        said(&ev, "verify", "begin", "wedged"),
        "the wedge hook did not run: {:?}",
        summary(&ev)
    );
    ensure!(
        find(&ev, "verify", "fail").is_none() && !serial.contains("reboot: Restarting"),
        "something other than the hardware watchdog reset the machine: {:?}",
        summary(&ev)
    );
    let status = lab.check_back_in_debian("6-debian")?;
    eprintln!("migrd status after the watchdog reset:\n{status}");
    done(&lab, "scenario 6");
    Ok(())
}
