//! The kexec strategy on the lab's BIOS Debian (real SeaBIOS, GRUB, Debian
//! kernel and systemd under QEMU TCG, `-machine pc`): `migrd migrate
//! --boot-via kexec` loads the running kernel with the migration ramdisk
//! (`kexec_file_load`) and `systemctl kexec` jumps into it after a clean
//! shutdown. Nothing on disk changes, so any reboot through the firmware is
//! the fallback.
//!
//! QEMU runs with `-no-reboot`: a firmware reset ends the QEMU process. The
//! Debian boot and the ramdisk therefore showing up in ONE QEMU process (one
//! serial log) proves the ramdisk was entered by kexec, with no firmware
//! reboot in between; the GRUB banner appearing only before the jump says
//! the same from the guest's side.
//!
//! `#[ignore]`d for a plain `cargo test`; tests/lab/test.sh runs them.

use anyhow::{ensure, Context, Result};
use migrd_lab::events::{find, summary};
use migrd_lab::guest::Guest;
use migrd_lab::images::{balena, legacy};
use migrd_lab::scenario::{
    check_balena_reports, check_ramdisk_migrated, check_ramdisk_stopped_at_verify, lab, migrate,
    migrate_image, Lab, STEP,
};
use std::time::Duration;

/// Printed by stage 1 once the ramdisk is loaded.
const LOADED: &str = "loaded for kexec";
/// GRUB's menu on the serial console (it prints this on every boot it
/// makes).
const GRUB_BANNER: &str = "GNU GRUB";
/// A Wi-Fi profile handed to migrd with `--nwmgr-cfg`; its PSK must never
/// reach a console.
const WIFI_PSK: &str = "lab-psk-9d2e41";
const T: Duration = Duration::from_secs(60);
/// Typed after `systemctl kexec` (a shell comment): marks the jump in the
/// serial log.
const JUMP: &str = "# kexec-jump";

fn wifi_keyfile() -> String {
    format!(
        "[connection]\nid=lab-wifi\ntype=wifi\n\n[wifi]\nmode=infrastructure\nssid=lab-ssid\n\n\
         [wifi-security]\nkey-mgmt=wpa-psk\npsk={WIFI_PSK}\n\n[ipv4]\nmethod=auto\n"
    )
}

fn done(lab: &Lab, name: &str) {
    eprintln!(
        "{name}: passed in {:.1}s (logs {})",
        lab.t0.elapsed().as_secs_f64(),
        lab.logs.display()
    );
}

/// The part of a serial log after `marker` (what ran after the jump).
fn after<'a>(serial: &'a str, marker: &str) -> Result<&'a str> {
    let i = serial
        .find(marker)
        .with_context(|| format!("{marker:?} not in the serial log"))?;
    Ok(&serial[i + marker.len()..])
}

/// The jump happened inside this QEMU process, without the firmware: the
/// new kernel booted after stage 1's output and GRUB did not run again.
/// A cold first boot shows GRUB's banner before the jump (so its absence
/// after means something); a first boot resumed from a snapshot
/// ([`Lab::resumed_first_boot`]) has no firmware output at all.
fn check_kexec_not_firmware(lab: &Lab, serial: &str, marker: &str) -> Result<()> {
    let before = &serial[..serial.find(marker).unwrap_or(0)];
    let later = after(serial, marker)?;
    ensure!(
        before.contains(GRUB_BANNER) || lab.resumed_first_boot(),
        "GRUB's banner is not in the first boot: cannot tell firmware boots apart"
    );
    ensure!(
        !later.contains(GRUB_BANNER),
        "GRUB ran again after the kexec point: that was a firmware reboot"
    );
    ensure!(
        later.contains("Linux version"),
        "no kernel started after the kexec point"
    );
    Ok(())
}

fn kexec_loaded(g: &mut Guest) -> Result<String> {
    Ok(g.run_ok("cat /sys/kernel/kexec_loaded", T)?
        .trim()
        .to_string())
}

/// Scenario K1: migrate by kexec. `migrd migrate --boot-via kexec --no-ack`
/// loads the ramdisk and runs `systemctl kexec` itself → the same QEMU
/// process runs the ramdisk (no firmware reboot) → it flashes the synthetic
/// balenaOS with config.json, the hostname and a Wi-Fi profile → balenaOS
/// boots through the firmware and reports them.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn kexec_1_migrate_debian_bios_to_balenaos() -> Result<()> {
    let lab = lab("migrate-kexec")?;
    let mut g = lab.debian("1-debian-then-ramdisk")?;
    g.put_file("/root/lab-wifi", wifi_keyfile().as_bytes(), 0o600)?;
    let check = g.run("/mnt/migrd check --boot-via kexec --no-api-check --no-vpn-check -c /mnt/config.json -i /mnt/balena.img.gz 2>&1", STEP)?;
    eprintln!("migrd check:\n{}", check.text);
    ensure!(
        check.text.contains("kexec_file_load of /boot/vmlinuz-"),
        "boot-strategy check does not pick kexec:\n{}",
        check.text
    );
    let t_migrate = g.elapsed();
    g.send_line(
        "cd /root && /mnt/migrd migrate -c /mnt/config.json -i /mnt/balena.img.gz --no-ack \
         --no-api-check --no-vpn-check --boot-via kexec --nwmgr-cfg /root/lab-wifi",
    )?;
    g.wait_for(LOADED, STEP)
        .context("stage 1 did not load the ramdisk")?;
    g.wait_exit(STEP)
        .context("the kexec'd ramdisk did not finish and reboot")?;
    let serial = g.serial();
    eprintln!(
        "Debian → kexec → ramdisk → reboot: {:.1}s after `migrd migrate` was typed",
        (g.elapsed() - t_migrate).as_secs_f64()
    );
    check_kexec_not_firmware(&lab, &serial, LOADED)?;
    let ramdisk = after(&serial, LOADED)?;
    check_ramdisk_migrated(ramdisk)?;
    ensure!(
        !ramdisk.contains(WIFI_PSK),
        "the Wi-Fi PSK reached the console"
    );

    let serial = lab.unattended("2-balenaos")?;
    let r = check_balena_reports(&serial, balena::DEVICE_TYPE, legacy::HOSTNAME)?;
    // resin-boot is FAT: no per-file modes to check, only the name.
    ensure!(
        r["system_connections"]
            .as_array()
            .is_some_and(|v| v.iter().any(|c| c["name"] == "lab-wifi")),
        "Wi-Fi profile not carried: {r}"
    );
    ensure!(
        !serial.contains(WIFI_PSK),
        "the Wi-Fi PSK reached the console"
    );
    done(&lab, "kexec scenario 1");
    Ok(())
}

/// Scenario K2: fallback. The image changes after `migrd migrate`'s checks
/// decoded and hashed it, before the ramdisk packs it (a lab-only stage 1
/// hook flips one byte near its end, inside the gzip stream: a payload that
/// would fail mid-flash) → `systemctl kexec` → the ramdisk stops at verify,
/// before the point of no return, records why on /boot and reboots → that
/// reboot goes through the firmware, and the untouched disk boots Debian:
/// canary intact, GRUB's environment byte-identical, nothing loaded, and
/// `migrd status` explains.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn kexec_2_damaged_payload_falls_back_to_debian() -> Result<()> {
    let lab = lab("fallback-kexec")?;
    let mut g = lab.debian("1-debian-then-ramdisk")?;
    let grubenv = "sha256sum /boot/grub/grubenv; grub-editenv /boot/grub/grubenv list";
    let env_before = g.run_ok(grubenv, T)?;
    // The image changes on disk after the checks decoded and hashed it,
    // before the ramdisk packs it (a copy on the writable root: the tools
    // disk is read-only).
    g.run_ok("cp /mnt/balena.img.gz /root/balena.img.gz", T)?;
    let out = migrate_image(
        &mut g,
        "MIGRD_TEST_HOOK=corrupt-image-after-check",
        "/root/balena.img.gz",
        "--boot-via kexec --no-reboot",
    )?;
    ensure!(out.text.contains("flipped byte"), "{}", out.text);
    ensure!(out.code == 0 && out.text.contains(LOADED), "{}", out.text);
    ensure!(kexec_loaded(&mut g)? == "1", "nothing loaded");
    let status = g.run_ok("/mnt/migrd status", T)?;
    ensure!(status.contains(LOADED), "{status}");
    g.send_line(&format!("systemctl kexec {JUMP}"))?;
    g.wait_exit(STEP)
        .context("the kexec'd ramdisk did not reboot")?;
    let serial = g.serial();
    check_kexec_not_firmware(&lab, &serial, JUMP)?;
    let ev = check_ramdisk_stopped_at_verify(after(&serial, JUMP)?)?;
    ensure!(
        find(&ev, "status", "ok").is_some(),
        "status not recorded: {:?}",
        summary(&ev)
    );

    let status = lab.check_back_in_debian_and("2-debian", |g| {
        let env_after = g.run_ok(grubenv, T)?;
        ensure!(
            env_after == env_before,
            "grubenv changed:\n{env_before}\n→\n{env_after}"
        );
        ensure!(kexec_loaded(g)? == "0", "a kexec image is still loaded");
        Ok(())
    })?;
    eprintln!("migrd status:\n{status}");
    ensure!(
        status.contains("FAILED at step 'verify'") && status.contains("sha256"),
        "{status}"
    );
    done(&lab, "kexec scenario 2");
    Ok(())
}

/// Scenario K3: `--no-reboot` then `migrd cancel`. Loading changes nothing
/// on disk (every file under /boot and /var/lib/migrd byte-identical, no
/// undo journal), `migrd status` reports the loaded image, and cancel
/// unloads it (`/sys/kernel/kexec_loaded` back to 0).
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn kexec_3_load_changes_nothing_and_cancel_unloads() -> Result<()> {
    let lab = lab("cancel-kexec")?;
    let mut g = lab.debian("1-debian")?;
    let hash =
        "find /boot /var/lib/migrd -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum; \
                find /boot /var/lib/migrd 2>/dev/null | sort | md5sum";
    let before = g.run_ok(hash, STEP)?;
    let out = migrate(&mut g, "", "--boot-via kexec --no-reboot")?;
    ensure!(out.code == 0, "{}", out.text);
    ensure!(
        out.text.contains("systemctl kexec") && !out.text.contains("armed: next boot"),
        "{}",
        out.text
    );
    ensure!(kexec_loaded(&mut g)? == "1", "nothing loaded");
    let armed = g.run_ok(hash, STEP)?;
    ensure!(
        armed == before,
        "loading changed files:\n{before}\n→\n{armed}"
    );
    let status = g.run_ok("/mnt/migrd status", T)?;
    ensure!(status.contains(LOADED), "{status}");
    let cancel = g.run_ok("/mnt/migrd cancel", T)?;
    ensure!(cancel.contains("unloaded the kexec image"), "{cancel}");
    ensure!(kexec_loaded(&mut g)? == "0", "still loaded after cancel");
    let status = g.run_ok("/mnt/migrd status", T)?;
    ensure!(status.contains("no migration armed"), "{status}");
    g.shutdown(STEP)?;
    done(&lab, "kexec scenario 3");
    Ok(())
}
