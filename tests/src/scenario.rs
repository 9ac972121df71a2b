//! The migration lab's building blocks, shared by the scenario tests and
//! the README's demo: a fresh legacy device (Debian bookworm, BIOS + GRUB)
//! with `migrd`, its init, the synthetic balenaOS image and a config.json on
//! a second disk; booting it; running migrd in it.

use crate::events;
use crate::guest::{Guest, Output};
use crate::images::{balena, data_disk, legacy};
use crate::paths;
use crate::qemu::Qemu;
use crate::report;
use crate::warm_start;
use anyhow::{ensure, Context, Result};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Label of the second disk that carries migrd into the guest.
pub const TOOLS_LABEL: &str = "migrd-tools";
/// The fleet API key in the lab's config.json (never to appear in logs).
pub const API_KEY: &str = "lab-api-key-7f3c";
/// Flags for a device without network access (the lab has none): the API,
/// VPN and "no network profile" checks are skipped, as an operator would
/// with takeover.
pub const OFFLINE: &str = "--no-api-check --no-vpn-check --no-nwmgr-check";
/// Upper bound for any one boot or command.
pub const STEP: Duration = Duration::from_secs(600);

/// A prepared legacy device.
pub struct Lab {
    /// Logs and disks of this run.
    pub logs: paths::LogDir,
    /// QEMU with the device's disk and the tools disk.
    pub qemu: Qemu,
    /// SHA-256 of the device's canary file.
    pub canary_sha256: String,
    /// The device's disk (raw): a power-cut test copies it to restore a
    /// state.
    pub disk: PathBuf,
    /// When preparation started (after the wait for a slot).
    pub t0: Instant,
    /// The device's firmware.
    pub firmware: legacy::Firmware,
    /// UEFI only: the device's OVMF variable store (read it from the host
    /// with `virt-fw-vars` once QEMU has exited).
    pub vars: Option<PathBuf>,
    /// The disk's modification time while it is as built (no boot yet):
    /// then its first boot may be a warm start ([`crate::warm_start`]).
    fresh: Cell<Option<SystemTime>>,
    /// Whether the first boot was resumed from a snapshot.
    resumed: Cell<bool>,
}

/// The lab's config.json (a fleet of the synthetic image's device type).
pub fn config_json() -> String {
    config_json_for(balena::DEVICE_TYPE)
}

/// The lab's config.json for a fleet of device type `slug`.
pub fn config_json_for(slug: &str) -> String {
    format!(
        r#"{{"applicationId":"1234","deviceType":"{}","apiEndpoint":"https://api.balena-cloud.com","vpnEndpoint":"vpn.balena-cloud.com","vpnPort":443,"apiKey":"{API_KEY}","userId":"42","listenPort":48484,"persistentLogging":false}}"#,
        slug
    )
}

/// A fresh legacy device for `scenario`, logs in `target/lab/logs/<scenario>/`.
pub fn lab(scenario: &str) -> Result<Lab> {
    lab_on(scenario, legacy::Firmware::Bios)
}

/// Like [`lab`], for a device booting with `firmware`; on UEFI the
/// synthetic balenaOS is its GPT variant, bootable by UEFI.
pub fn lab_on(scenario: &str, firmware: legacy::Firmware) -> Result<Lab> {
    let logs = paths::log_dir(scenario)?;
    // After the wait for a slot: `t0` times the scenario, not its queue.
    let t0 = Instant::now();
    let dev = legacy::image_for(&logs, firmware)?;
    let boot = match firmware {
        legacy::Firmware::Bios => balena::Boot::Bios,
        legacy::Firmware::Uefi { .. } => balena::Boot::Uefi,
    };
    let img = balena::image_for(&logs.join("balena"), boot)?;
    let stage = logs.join("tools");
    std::fs::create_dir_all(&stage)?;
    std::fs::copy(paths::migrd_bin()?, stage.join("migrd"))?;
    std::fs::copy(
        paths::init_bin("x86_64-unknown-linux-musl")?,
        stage.join("migrd-init-x86_64"),
    )?;
    std::fs::copy(&img.gz, stage.join("balena.img.gz"))?;
    std::fs::write(stage.join("config.json"), config_json())?;
    // Room for the image and 96 MiB more, in steps of 64 MiB: the size
    // is part of a warm start's key (crate::warm_start).
    let size_mib = ((std::fs::metadata(&img.gz)?.len() >> 20) + 96).div_ceil(64) * 64;
    data_disk::ext4_disk(&stage, &logs.join("tools.img"), TOOLS_LABEL, size_mib)?;
    let mut qemu = legacy::qemu_for(&dev, &logs);
    qemu.disk(&logs.join("tools.img"), Some(warm_start::TOOLS_SERIAL));
    let fresh = Cell::new(std::fs::metadata(&dev.disk)?.modified().ok());
    Ok(Lab {
        logs,
        qemu,
        canary_sha256: dev.canary_sha256,
        disk: dev.disk,
        t0,
        firmware,
        vars: dev.vars,
        fresh,
        resumed: Cell::new(false),
    })
}

impl Lab {
    /// Boot Debian to its shell, with the tools disk mounted on /mnt. The
    /// first boot of the disk as built is resumed from a snapshot when one
    /// can be had ([`crate::warm_start`]); every other boot is cold.
    pub fn debian(&self, name: &str) -> Result<Guest> {
        let mut g = match self.warm_first_boot(name) {
            Some(g) => {
                self.resumed.set(true);
                g
            }
            None => legacy::boot(&self.qemu, name)?,
        };
        mount_tools(&mut g)?;
        Ok(g)
    }

    /// Whether the first boot was resumed from a snapshot (it then showed
    /// no firmware, GRUB or kernel boot output).
    pub fn resumed_first_boot(&self) -> bool {
        self.resumed.get()
    }

    fn warm_first_boot(&self, name: &str) -> Option<Guest> {
        let built = self.fresh.take()?;
        let now = std::fs::metadata(&self.disk).and_then(|m| m.modified());
        if now.ok() != Some(built) {
            return None;
        }
        let tools = self.logs.join("tools.img");
        warm_start::first_boot(
            &warm_start::Device {
                qemu: &self.qemu,
                disk: &self.disk,
                tools: &tools,
                vars: self.vars.as_deref(),
                canary: &self.canary_sha256,
            },
            name,
        )
    }

    /// Log in to boot `g`, which is coming up in Debian, and mount the
    /// tools disk on /mnt.
    pub fn log_in(&self, mut g: Guest) -> Result<Guest> {
        g.login(legacy::PROMPT, legacy::BOOT_TIMEOUT)
            .with_context(|| format!("Debian's prompt in {}", g.log().display()))?;
        mount_tools(&mut g)?;
        Ok(g)
    }

    /// Boot whatever the disk boots now and wait for QEMU to exit; returns
    /// the serial log.
    pub fn unattended(&self, name: &str) -> Result<String> {
        boot_unattended(&self.qemu, name)
    }

    /// Back in Debian after the ramdisk went back: canary intact, GRUB's
    /// `next_entry` not set; returns what `migrd status` says.
    pub fn check_back_in_debian(&self, name: &str) -> Result<String> {
        self.check_back_in_debian_and(name, |_| Ok(()))
    }

    /// Like [`Lab::check_back_in_debian`], with more checks by `extra` in
    /// the same boot.
    pub fn check_back_in_debian_and(
        &self,
        name: &str,
        extra: impl FnOnce(&mut Guest) -> Result<()>,
    ) -> Result<String> {
        let (mut g, status) = self.back_in_debian_with(name, extra)?;
        g.shutdown(STEP)?;
        Ok(status)
    }

    /// Like [`Lab::check_back_in_debian`], leaving Debian running for more
    /// (such as arming again) in the same boot.
    pub fn back_in_debian(&self, name: &str) -> Result<(Guest, String)> {
        self.back_in_debian_with(name, |_| Ok(()))
    }

    fn back_in_debian_with(
        &self,
        name: &str,
        extra: impl FnOnce(&mut Guest) -> Result<()>,
    ) -> Result<(Guest, String)> {
        let mut g = self.debian(name)?;
        extra(&mut g)?;
        check_canary(&mut g, legacy::CANARY, &self.canary_sha256)?;
        let env = g.run_ok(
            "grub-editenv /boot/grub/grubenv list",
            Duration::from_secs(30),
        )?;
        // Cleared by GRUB (`next_entry=`), or never set (BootNext, kexec).
        ensure!(
            !env.lines()
                .any(|l| l.starts_with("next_entry=") && l != "next_entry="),
            "next_entry not cleared: {env}"
        );
        let status = g.run_ok("/mnt/migrd status", Duration::from_secs(60))?;
        Ok((g, status))
    }
}

fn mount_tools(g: &mut Guest) -> Result<()> {
    g.run_ok(
        &format!("mount -o ro LABEL={TOOLS_LABEL} /mnt"),
        Duration::from_secs(60),
    )?;
    Ok(())
}

/// The canary file at `path` in the guest still has SHA-256 `want`: the
/// old OS's data survived.
pub fn check_canary(g: &mut Guest, path: &str, want: &str) -> Result<()> {
    let sum = g.run_ok(
        &format!("sha256sum {path} | cut -d' ' -f1"),
        Duration::from_secs(30),
    )?;
    ensure!(sum.trim() == want, "canary {path} changed: {sum} vs {want}");
    Ok(())
}

/// `migrd migrate` in the guest with the lab's inputs; `env` prefixes the
/// command (e.g. a test hook), `extra` adds flags.
pub fn migrate(g: &mut Guest, env: &str, extra: &str) -> Result<Output> {
    migrate_image(g, env, "/mnt/balena.img.gz", extra)
}

/// Like [`migrate`], with the balenaOS image at `image` in the guest.
pub fn migrate_image(g: &mut Guest, env: &str, image: &str, extra: &str) -> Result<Output> {
    g.run(
        &format!(
            "cd /root && {env} /mnt/migrd migrate -c /mnt/config.json -i {image} --no-ack {OFFLINE} {extra} 2>&1"
        ),
        STEP,
    )
}

/// Arm with `--no-reboot`, check grubenv, reboot (QEMU exits).
pub fn arm_and_reboot(g: &mut Guest, env: &str, extra: &str) -> Result<()> {
    let out = migrate(g, env, &format!("--no-reboot {extra}"))?;
    ensure!(
        out.code == 0,
        "migrd migrate failed in the guest:\n{}",
        out.text
    );
    let env = g.run_ok(
        "grub-editenv /boot/grub/grubenv list",
        Duration::from_secs(30),
    )?;
    ensure!(env.contains("next_entry=migrd-oneshot"), "grubenv: {env}");
    g.send_line("systemctl reboot")?;
    g.wait_exit(STEP)?;
    Ok(())
}

/// Stage 2's events from a ramdisk boot's serial log.
pub fn stage2_events(serial: &str) -> Vec<serde_json::Value> {
    let ev = events::parse(serial);
    eprintln!("stage 2: {:?}", events::summary(&ev));
    ev
}

/// The ramdisk boot in `serial` flashed and provisioned: every step from
/// disarm (done, or nothing to do) to done succeeded, and the API key never
/// reached the console. Returns the events.
pub fn check_ramdisk_migrated(serial: &str) -> Result<Vec<serde_json::Value>> {
    let ev = stage2_events(serial);
    for step in [
        "disarm",
        "verify",
        "point-of-no-return",
        "flash",
        "reread-partitions",
        "inject",
        "done",
    ] {
        ensure!(
            events::find(&ev, step, "ok").is_some()
                || (step == "disarm" && events::find(&ev, step, "skip").is_some()),
            "no {step}/ok: {:?}",
            events::summary(&ev)
        );
    }
    ensure!(!serial.contains(API_KEY), "the API key reached the console");
    Ok(ev)
}

/// The ramdisk boot in `serial` stopped at verify on the damaged payload,
/// before the point of no return. Returns the events.
pub fn check_ramdisk_stopped_at_verify(serial: &str) -> Result<Vec<serde_json::Value>> {
    let ev = stage2_events(serial);
    let fail = events::find(&ev, "verify", "fail")
        .with_context(|| format!("no verify/fail: {:?}", events::summary(&ev)))?;
    ensure!(
        fail["msg"]
            .as_str()
            .unwrap_or("")
            .contains("/payload/balena.img.gz"),
        "{fail}"
    );
    ensure!(
        events::find(&ev, "point-of-no-return", "ok").is_none(),
        "crossed the point of no return"
    );
    Ok(ev)
}

/// The synthetic balenaOS booted (console in `serial`) and reported the
/// lab's config.json for device type `slug`, the old hostname and the
/// migration log, with the API key kept off the console. Returns the
/// report for more checks.
pub fn check_balena_reports(serial: &str, slug: &str, hostname: &str) -> Result<serde_json::Value> {
    let r = report::parse(serial).context("balenaOS printed no report")?;
    eprintln!("balenaOS report: {r}");
    ensure!(r["config_json"]["deviceType"] == slug, "{r}");
    ensure!(r["config_json"]["applicationId"] == "1234", "{r}");
    ensure!(r["hostname"] == hostname, "hostname not carried: {r}");
    ensure!(r["has_api_key"] == true, "{r}");
    ensure!(r["migration_log"]["present"] == true, "{r}");
    ensure!(!serial.contains(API_KEY), "the API key reached the console");
    Ok(r)
}

/// Boot whatever `qemu`'s disks boot now, as boot `name`, and wait for
/// QEMU to exit; returns the serial log.
pub fn boot_unattended(qemu: &Qemu, name: &str) -> Result<String> {
    let mut g = Guest::start(qemu, name)?;
    g.wait_exit(STEP).with_context(|| format!("boot {name}"))?;
    Ok(g.serial())
}

/// A shell command flipping one byte of `file` 1000 bytes before its end
/// (in a migrd ramdisk that is inside the image, the stored segment's last
/// file), printing the offset and old value.
pub fn corrupt_cmd(file: &str) -> String {
    format!(
        r#"f={file}; o=$(( $(stat -c %s $f) - 1000 ));
b=$(dd if=$f bs=1 skip=$o count=1 2>/dev/null | od -An -tu1 | tr -d ' ');
printf "\\$(printf %o $(( b ^ 255 )))" | dd of=$f bs=1 seek=$o conv=notrunc 2>/dev/null; sync; echo flipped $o $b"#
    )
}
