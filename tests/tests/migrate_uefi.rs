//! Migrations on UEFI: Debian bookworm installed the way Debian's installer
//! leaves a UEFI machine (GPT, ESP on /boot/efi, Debian's signed shim and
//! GRUB in \EFI\debian, a "debian" Boot#### entry in the firmware) under real
//! OVMF (q35, TCG), each test with its own copy of the variable store.
//!
//! Each guest reboot ends QEMU (`-no-reboot`); the next boot is a new QEMU
//! process on the same disks and the same variable store, so what the
//! firmware and the guest wrote to NVRAM carries over, and the host reads it
//! back between boots with `virt-fw-vars`.
//!
//! `#[ignore]`d for a plain `cargo test`; tests/lab/test.sh runs them.

use anyhow::{ensure, Context, Result};
use migrd_init::efi::load_option::LoadOption;
use migrd_lab::guest::Guest;
use migrd_lab::images::{balena, legacy};
use migrd_lab::power_cut::{cut_when, Saved};
use migrd_lab::scenario::{
    check_balena_reports, check_canary, check_ramdisk_migrated, check_ramdisk_stopped_at_verify,
    corrupt_cmd, lab_on, migrate, Lab, STEP,
};
use migrd_lab::uefi_vars;
use std::time::Duration;

/// PARTUUID of the old OS's ESP (tests/lab/images/debian.sh).
const OLD_ESP: &str = "6a1e0c2b-4f5d-4c1e-9a55-0c0ffee000e1";

const UEFI: legacy::Firmware = legacy::Firmware::Uefi { secure_boot: false };

fn done(lab: &Lab, name: &str) {
    eprintln!(
        "{name}: passed in {:.1}s (logs {})",
        lab.t0.elapsed().as_secs_f64(),
        lab.logs.display()
    );
}

/// `efibootmgr -v` in the guest.
fn efibootmgr(g: &mut Guest) -> Result<String> {
    g.run_ok("efibootmgr -v", Duration::from_secs(30))
}

/// Arm with `--no-reboot` and `extra`, then reboot (QEMU exits); returns
/// migrd's output.
fn arm(g: &mut Guest, env: &str, extra: &str) -> Result<String> {
    let out = migrate(g, env, &format!("--no-reboot {extra}"))?;
    ensure!(
        out.code == 0,
        "migrd migrate failed in the guest:\n{}",
        out.text
    );
    Ok(out.text)
}

fn reboot(g: &mut Guest) -> Result<()> {
    g.send_line("systemctl reboot")?;
    g.wait_exit(STEP)?;
    Ok(())
}

/// The variable store after the migration, read from the host: the new
/// OS's entry (resin-boot's `\EFI\BOOT\bootx64.efi`) first in BootOrder,
/// no BootNext, no entry of the ramdisk's, none pointing at the old ESP.
fn check_vars_after_migration(lab: &Lab) -> Result<()> {
    let store = lab.vars.as_ref().context("a UEFI lab has a vars file")?;
    let vars = uefi_vars::read(store)?;
    let mut entries = Vec::new();
    for (n, bytes) in uefi_vars::boot_entries(&vars) {
        let o = LoadOption::decode(&bytes).with_context(|| format!("Boot{n:04X}"))?;
        eprintln!("Boot{n:04X} {} {}", o.description, o.path_string());
        entries.push((n, o));
    }
    ensure!(
        uefi_vars::global(&vars, "BootNext").is_none(),
        "BootNext left set"
    );
    let order = uefi_vars::u16s(uefi_vars::global(&vars, "BootOrder").context("no BootOrder")?);
    let first = order.first().context("empty BootOrder")?;
    let (_, o) = entries
        .iter()
        .find(|(n, _)| n == first)
        .with_context(|| format!("BootOrder names a missing Boot{first:04X}"))?;
    ensure!(
        o.file().map(str::to_ascii_lowercase).as_deref() == Some("\\efi\\boot\\bootx64.efi")
            && o.hard_drive()
                .is_some_and(|hd| hd.partition == 1 && hd.partuuid() != OLD_ESP),
        "first entry is not the new OS's: {} {}",
        o.description,
        o.path_string()
    );
    for (n, o) in &entries {
        ensure!(
            !o.description.to_lowercase().contains("migrd"),
            "Boot{n:04X} of the ramdisk left: {}",
            o.description
        );
        ensure!(
            o.hard_drive().map(|hd| hd.partuuid()).as_deref() != Some(OLD_ESP),
            "Boot{n:04X} still points at the old ESP: {} {}",
            o.description,
            o.path_string()
        );
    }
    Ok(())
}

/// Scenario 1: GRUB on UEFI. With GRUB the active boot manager (the
/// firmware booted the debian entry: shim → GRUB), `migrd migrate` picks
/// the GRUB next_entry strategy by itself → the ramdisk flashes the GPT
/// balenaOS → it boots through the firmware and reports.
#[test]
#[ignore = "lab: needs QEMU, OVMF, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn uefi_1_grub_strategy_migrates() -> Result<()> {
    let lab = lab_on("uefi-grub", UEFI)?;
    let mut g = lab.debian("1-debian")?;
    let before = efibootmgr(&mut g)?;
    eprintln!("firmware entries before:\n{before}");
    ensure!(
        before.contains("shimx64.efi"),
        "the debian entry is missing: {before}"
    );
    let out = arm(&mut g, "", "")?;
    ensure!(
        out.contains("one-shot boot (grub)"),
        "GRUB not chosen on a GRUB-booted UEFI machine:\n{out}"
    );
    let env = g.run_ok(
        "grub-editenv /boot/grub/grubenv list",
        Duration::from_secs(30),
    )?;
    ensure!(env.contains("next_entry=migrd-oneshot"), "grubenv: {env}");
    let after = efibootmgr(&mut g)?;
    ensure!(
        !after.contains("BootNext"),
        "GRUB strategy touched BootNext: {after}"
    );
    reboot(&mut g)?;
    check_ramdisk_migrated(&lab.unattended("2-ramdisk")?)?;
    check_balena_reports(
        &lab.unattended("3-balenaos")?,
        balena::DEVICE_TYPE,
        legacy::HOSTNAME,
    )?;
    check_vars_after_migration(&lab)?;
    done(&lab, "uefi scenario 1");
    Ok(())
}

/// Scenario 2: UEFI BootNext. `--boot-via efi`: the running kernel (an EFI
/// stub) and the ramdisk go to the ESP, a new Boot#### with the command
/// line, BootNext set, BootOrder untouched → the firmware starts the
/// ramdisk once → flash → balenaOS reports.
#[test]
#[ignore = "lab: needs QEMU, OVMF, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn uefi_2_bootnext_strategy_migrates() -> Result<()> {
    let lab = lab_on("uefi-bootnext", UEFI)?;
    let mut g = lab.debian("1-debian")?;
    let before = efibootmgr(&mut g)?;
    let order = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("BootOrder:"))
            .map(str::to_string)
    };
    arm(&mut g, "", "--boot-via efi")?;
    let armed = efibootmgr(&mut g)?;
    eprintln!("firmware entries armed:\n{armed}");
    ensure!(armed.contains("BootNext:"), "BootNext not set: {armed}");
    ensure!(
        armed.contains("migrd") && armed.contains("vmlinuz.efi"),
        "no migrd entry: {armed}"
    );
    ensure!(
        order(&armed) == order(&before),
        "BootOrder changed:\n{before}\n{armed}"
    );
    reboot(&mut g)?;
    check_ramdisk_migrated(&lab.unattended("2-ramdisk")?)?;
    let serial = lab.unattended("3-balenaos")?;
    ensure!(
        !serial.contains("BdsDxe: failed to load"),
        "the firmware tried a stale entry first"
    );
    check_balena_reports(&serial, balena::DEVICE_TYPE, legacy::HOSTNAME)?;
    check_vars_after_migration(&lab)?;
    done(&lab, "uefi scenario 2");
    Ok(())
}

/// Back in Debian after a fallback: canary intact, no BootNext, no migrd
/// entry left, GRUB's next_entry empty; returns `migrd status`.
fn check_back(lab: &Lab, name: &str) -> Result<String> {
    lab.check_back_in_debian_and(name, |g| {
        let vars = efibootmgr(g)?;
        eprintln!("firmware entries after the fallback:\n{vars}");
        ensure!(!vars.contains("BootNext"), "BootNext left set: {vars}");
        ensure!(
            !vars.contains("migrd"),
            "the ramdisk's entry was not removed: {vars}"
        );
        ensure!(
            vars.contains("shimx64.efi"),
            "the debian entry is gone: {vars}"
        );
        Ok(())
    })
}

/// Scenarios 4a and 4b: fallback. The payload is corrupted after stage 1
/// armed the boot → the ramdisk stops at verify, before the point of no
/// return → the old Debian boots, canary intact, nothing armed left,
/// `migrd status` says what failed.
///
/// Between arming and the ramdisk the power is cut instead of a reboot:
/// what arming wrote (files on the ESP or /boot, grubenv, the firmware's
/// Boot#### and BootNext) is on the disk and in the variable store when
/// `migrd migrate` returns. For BootNext, then: the armed disk and variable
/// store put back, the power cut as the ramdisk starts (see
/// [`cut_at_start`]).
fn fallback(scenario: &str, boot_via: &str, ramdisk: &str) -> Result<()> {
    let lab = lab_on(scenario, UEFI)?;
    let mut g = lab.debian("1-debian")?;
    arm(&mut g, "", &format!("--boot-via {boot_via}"))?;
    let flipped = g.run_ok(&corrupt_cmd(ramdisk), Duration::from_secs(120))?;
    eprintln!("{flipped}");
    if boot_via == "efi" {
        let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
        ensure!(
            status.contains("BootNext starts the migration ramdisk once"),
            "armed through BootNext, migrd status says: {status}"
        );
    }
    g.kill();
    let vars = lab
        .vars
        .as_deref()
        .context("a UEFI lab without a variable store")?;
    let armed = Saved::take(&lab.logs.join("armed"), &[&lab.disk, vars])?;
    check_ramdisk_stopped_at_verify(&lab.unattended("2-ramdisk")?)?;
    let status = check_back(&lab, "3-debian")?;
    eprintln!("migrd status:\n{status}");
    ensure!(status.contains("FAILED at step 'verify'"), "{status}");
    if boot_via == "efi" {
        cut_at_start(&lab, &armed)?;
    }
    done(&lab, scenario);
    Ok(())
}

/// From the armed disk and variable store, the power cut as the ramdisk
/// starts: the firmware deleted BootNext before it started the ramdisk,
/// so the next boot is Debian (canary intact, no BootNext); `migrd status`
/// says it is still armed, and `migrd cancel` removes the ramdisk's entry
/// and files.
fn cut_at_start(lab: &Lab, armed: &Saved) -> Result<()> {
    armed.restore()?;
    let mut g = Guest::start(&lab.qemu, "4-ramdisk-cut-at-start")?;
    cut_when(&mut g, "start", None, |_| true, legacy::PROMPT)?;
    let mut g = lab.debian("5-debian")?;
    check_canary(&mut g, legacy::CANARY, &lab.canary_sha256)?;
    let vars = efibootmgr(&mut g)?;
    ensure!(!vars.contains("BootNext"), "BootNext left set: {vars}");
    let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    eprintln!("migrd status after a cut as the ramdisk started:\n{status}");
    ensure!(
        status.contains("BootNext is no longer set") && status.contains("run `migrd cancel`"),
        "{status}"
    );
    g.run_ok("/mnt/migrd cancel", STEP)?;
    let after = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
    ensure!(
        after.contains("no migration armed"),
        "after cancel: {after}"
    );
    let vars = efibootmgr(&mut g)?;
    ensure!(
        !vars.contains("migrd"),
        "the ramdisk's entry survived cancel: {vars}"
    );
    g.shutdown(STEP)?;
    Ok(())
}

/// Scenario 4 for GRUB on UEFI.
#[test]
#[ignore = "lab: needs QEMU, OVMF, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn uefi_4a_grub_fallback_boots_debian() -> Result<()> {
    fallback("uefi-grub-fallback", "grub", "/boot/migrd/initramfs.img")
}

/// Scenario 4 for BootNext: the ramdisk's entry is removed by its disarm
/// step, and the firmware consumed BootNext.
#[test]
#[ignore = "lab: needs QEMU, OVMF, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn uefi_4b_bootnext_fallback_boots_debian() -> Result<()> {
    fallback(
        "uefi-bootnext-fallback",
        "efi",
        "/boot/efi/EFI/migrd/initrd.img",
    )
}

/// Scenario 5: Secure Boot on (OVMF's Secure Boot build, Microsoft's keys
/// enrolled; Debian boots through its signed shim, GRUB and kernel).
/// `migrd check` reports it, and that BootNext is unusable (the firmware
/// would refuse to start the ramdisk's kernel directly) while the shim →
/// GRUB path is. `migrate` arms nothing: `--boot-via efi` is refused naming
/// Secure Boot, and so is the default (a stock balenaOS image would not boot
/// under Secure Boot either) — nothing on /boot or in the firmware changes.
#[test]
#[ignore = "lab: needs QEMU, OVMF, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn uefi_5_secure_boot_is_reported_and_nothing_is_armed() -> Result<()> {
    let lab = lab_on(
        "uefi-secure-boot",
        legacy::Firmware::Uefi { secure_boot: true },
    )?;
    let mut g = lab.debian("1-debian")?;
    let sb = g.run_ok(
        "od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
        Duration::from_secs(30),
    )?;
    ensure!(
        sb.split_whitespace().nth(4) == Some("1"),
        "Secure Boot is not on in the guest: {sb}"
    );
    let check = g.run(
        "/mnt/migrd check --json -c /mnt/config.json -i /mnt/balena.img.gz --no-api-check --no-vpn-check --no-nwmgr-check --boot-via efi 2>/dev/null",
        STEP,
    )?;
    let j: serde_json::Value = serde_json::from_str(check.text.trim())
        .with_context(|| format!("migrd check --json: {}", check.text))?;
    ensure!(j["boot"]["secure_boot"] == true, "check: {j}");
    let status_of = |name: &str| {
        j["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    ensure!(status_of("secure-boot")["status"] == "fail", "check: {j}");
    let strategy = status_of("boot-strategy");
    ensure!(
        strategy["status"] == "fail"
            && strategy["message"]
                .as_str()
                .is_some_and(|m| m.contains("Secure Boot") && m.contains("--boot-via grub")),
        "BootNext not refused with the reason: {strategy}"
    );
    let hash_boot = "find /boot -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum";
    let boot_before = g.run_ok(hash_boot, Duration::from_secs(120))?;
    let vars_before = efibootmgr(&mut g)?;
    for (flags, says) in [
        (
            "--no-reboot --boot-via efi",
            "--boot-via efi: Secure Boot is on",
        ),
        ("--no-reboot", "boot-strategy  grub"),
    ] {
        let out = migrate(&mut g, "", flags)?;
        eprintln!("migrate {flags} under Secure Boot:\n{}", out.text);
        ensure!(out.code != 0, "migrate {flags} armed under Secure Boot");
        ensure!(
            out.text.contains("Secure Boot is enabled") && out.text.contains(says),
            "migrate {flags}: the refusal does not say why: {}",
            out.text
        );
        ensure!(out.text.contains("nothing was changed"), "{}", out.text);
    }
    ensure!(
        g.run_ok(hash_boot, Duration::from_secs(120))? == boot_before,
        "a refused migrate changed /boot"
    );
    ensure!(
        efibootmgr(&mut g)? == vars_before,
        "a refused migrate changed the firmware's variables"
    );
    g.shutdown(STEP)?;
    done(&lab, "uefi scenario 5");
    Ok(())
}
