//! Power cuts on a BIOS + GRUB device (Debian bookworm → the lab's
//! synthetic balenaOS): QEMU is killed (SIGKILL: the guest's caches are
//! lost, the disk keeps what reached it) at points of the migration, and
//! the device is started again from the same disk.
//!
//! Both start from one disk whose power was cut the moment `migrd migrate
//! --no-reboot` returned (no clean shutdown), armed once per run by the
//! first test: each cut below first needs GRUB to boot the migration
//! ramdisk from it.
//!
//! - `cuts_before_the_point_of_no_return_leave_debian_whole`: from that
//!   disk, at each stage-2 step before the point of no return. Cuts before
//!   the ramdisk's first word for the old OS (its `status` step) leave the
//!   same disk (GRUB cleared `next_entry` when it booted the ramdisk;
//!   nothing else is written); the disk the last cut leaves boots Debian
//!   with its canary intact and `migrd status` saying the ramdisk started
//!   and never reported back.
//! - `cuts_during_and_after_the_flash`: during the flash (the unrecoverable
//!   window: measured, and the first MiB — boot code and partition table —
//!   is still the old one, because the engine writes it last), after the
//!   flash and before injection (balenaOS boots, unprovisioned), and after
//!   injection (balenaOS boots, provisioned).
//!
//! `#[ignore]`d for a plain `cargo test`; `tests/lab/test.sh` runs them
//! (9.5 to 13 minutes of lab one scenario at a time on 2 cores, see
//! docs/lab.md, "Power cuts"); `MIGRD_LAB_POWER_CUTS=0` skips them.

use anyhow::{bail, ensure, Context, Result};
use migrd_lab::events::{self, summary};
use migrd_lab::guest::Guest;
use migrd_lab::images::{balena, legacy};
use migrd_lab::report;
use migrd_lab::scenario::{lab, migrate, Lab, STEP};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The power-cut tests run with the rest of the lab (`tests/lab/test.sh`
/// passes `--include-ignored`); `MIGRD_LAB_POWER_CUTS=0` skips them.
fn enabled() -> bool {
    let on = std::env::var_os("MIGRD_LAB_POWER_CUTS").map_or(true, |v| v != "0");
    if !on {
        eprintln!("power cuts not run: MIGRD_LAB_POWER_CUTS=0 (see docs/lab.md)");
    }
    on
}

/// The disk both tests start from: armed, then the power cut.
#[derive(Clone)]
struct Armed {
    /// The disk image, outside either test's log folder (whose disks are
    /// removed when the test ends).
    img: PathBuf,
    /// How long Debian took to come up to its shell in this run.
    debian_up: Duration,
}

/// Arming takes a Debian boot and a `migrd migrate` (~100 s on 2 cores):
/// done once per run, by whichever test comes first, in its lab.
static ARMED: OnceLock<std::result::Result<Armed, String>> = OnceLock::new();

/// Tests that still need [`ARMED`]; the last one to end removes the disk.
static USERS: AtomicUsize = AtomicUsize::new(2);

/// A test's hold on the shared armed disk; dropped at its end.
struct ArmedHold(Armed);

impl Drop for ArmedHold {
    fn drop(&mut self) {
        if USERS.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = std::fs::remove_file(&self.0.img);
        }
    }
}

/// The shared armed disk, arming it in `lab` if no test has yet.
fn shared_armed_disk(lab: &Lab) -> Result<ArmedHold> {
    let a = ARMED.get_or_init(|| arm_and_cut(lab).map_err(|e| format!("{e:#}")));
    match a {
        Ok(a) => Ok(ArmedHold(a.clone())),
        Err(e) => bail!("arming (in the other test, or in this one) failed: {e}"),
    }
}

/// Arm the migration in Debian (`migrd migrate --no-reboot`) and cut the
/// power the moment it returns (no shutdown: whatever the guest kernel
/// still held in its caches or only in the ext4 journal is lost to GRUB,
/// which reads ext4 without replaying the journal); keep that disk.
/// Every cut starts from it, so each one first proves that a power cut
/// right after arming still boots the migration ramdisk (stage 1 writes
/// the journal home before it says "armed"; see docs/migration.md, "Power
/// cuts").
fn arm_and_cut(lab: &Lab) -> Result<Armed> {
    let mut g = lab.debian("1-debian")?;
    let debian_up = g.elapsed();
    let out = migrate(&mut g, "", "--no-reboot")?;
    g.kill();
    ensure!(out.code == 0, "migrd migrate failed:\n{}", out.text);
    ensure!(
        out.text
            .contains("armed: next boot runs the migration ramdisk"),
        "{}",
        out.text
    );
    let dir = migrd_lab::paths::lab_dir().join("logs/power-cut-bios-armed");
    std::fs::create_dir_all(&dir)?;
    let img = dir.join("armed.img");
    copy_sparse(&lab.disk, &img)?;
    eprintln!("armed and cut in {:.1}s", lab.t0.elapsed().as_secs_f64());
    Ok(Armed { img, debian_up })
}

fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    let st = std::process::Command::new("cp")
        .args(["--sparse=always", "-f"])
        .arg(from)
        .arg(to)
        .status()
        .context("cp")?;
    ensure!(st.success(), "cp {} {}", from.display(), to.display());
    Ok(())
}

fn sha256_file(p: &Path) -> Result<String> {
    let f = std::fs::File::open(p).with_context(|| p.display().to_string())?;
    Ok(migrd_init::payload::sha256_hex(f)?)
}

fn first_mib(p: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(p)?;
    let mut b = vec![0u8; 1 << 20];
    f.read_exact(&mut b)?;
    Ok(b)
}

/// Start the device from `armed` and cut the power once the serial shows
/// an event of `step` (with `status`, if given) for which `pick` holds.
/// Returns the serial up to the cut.
fn cut_at(
    lab: &Lab,
    armed: &Path,
    name: &str,
    step: &str,
    status: Option<&str>,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> Result<String> {
    copy_sparse(armed, &lab.disk)?;
    let mut g = Guest::start(&lab.qemu, name)?;
    let t0 = std::time::Instant::now();
    loop {
        let serial = g.serial();
        let ev = events::parse(&serial);
        let hit = ev
            .iter()
            .any(|e| e["step"] == step && status.map_or(true, |s| e["status"] == s) && pick(e));
        if hit {
            g.kill();
            return Ok(serial);
        }
        ensure!(
            !serial.contains(legacy::PROMPT),
            "{name}: Debian booted, not the migration ramdisk (GRUB did not see the armed boot): {:?}",
            summary(&ev)
        );
        ensure!(
            g.exited()?.is_none(),
            "{name}: QEMU exited before the cut at {step}: {:?}",
            summary(&ev)
        );
        ensure!(
            t0.elapsed() < STEP,
            "{name}: no {step} event: {:?}",
            summary(&ev)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Power cut after arming, then at each stage-2 step before the point of
/// no return: the disk is the same after every one of them, and it boots
/// Debian with the canary intact.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn cuts_before_the_point_of_no_return_leave_debian_whole() -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    let lab = lab("power-cut-bios-pre")?;
    let hold = shared_armed_disk(&lab)?;
    let armed = &hold.0.img;
    // Before the ramdisk's first word for the old OS (its status step)
    // nothing but GRUB's clearing of next_entry is written: every cut
    // leaves the same disk (measured in CI: start … disarm identical).
    // After it the old root was mounted once (its superblock's mount time
    // differs from run to run): those cuts are judged by the boot that
    // follows.
    let mut first: Option<String> = None;
    for step in ["start", "setup", "plan", "modules", "watchdog", "disarm"] {
        cut_at(&lab, armed, &format!("2-cut-{step}"), step, None, |_| true)?;
        let h = sha256_file(&lab.disk)?;
        match &first {
            None => first = Some(h),
            Some(f) => ensure!(
                *f == h,
                "a cut at {step} left a different disk than one at start"
            ),
        }
    }
    for step in ["find-target", "load-payload", "verify"] {
        cut_at(&lab, armed, &format!("2-cut-{step}"), step, None, |_| true)?;
    }
    // The disk the last cut left boots Debian, canary intact, and
    // `migrd status` says the ramdisk started and never reported back.
    let status = lab.check_back_in_debian("3-debian")?;
    eprintln!("migrd status after the cuts:\n{status}");
    ensure!(
        status.contains("started but never reported back"),
        "{status}"
    );
    eprintln!(
        "pre-PONR cuts: passed in {:.1}s",
        lab.t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Power cuts during the flash (at the first progress, at half the image,
/// late, at five eighths or more) and after it, before and after injection.
#[test]
#[ignore = "lab: needs QEMU, the lab kernel and images (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn cuts_during_and_after_the_flash() -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    let lab = lab("power-cut-bios-flash")?;
    let hold = shared_armed_disk(&lab)?;
    let (armed, debian_up) = (&hold.0.img, hold.0.debian_up);
    let old_head = first_mib(armed)?;
    ensure!(
        has_ext4_at(armed, OLD_ROOT_OFFSET)?,
        "no ext4 root at {OLD_ROOT_OFFSET} on the armed disk"
    );
    // The unrecoverable window: from the point of no return to the end of
    // the flash (the first MiB goes last). Cuts at the first progress event
    // (5 s in), at half the image written, and late: at five eighths or
    // more. Progress comes every 5 s (~57 MB apart on the lab's 200 MiB
    // image under TCG), so a "three quarters" cut was missed when the last
    // event of the write came at 74%; the share each cut took is printed.
    // Measured on a whole run below.
    let points: [(&str, &Pick); 3] = [
        ("early", &|_| true),
        ("half", &|e| written(e) * 2 >= IMAGE_BYTES),
        ("late", &|e| written(e) * 8 >= IMAGE_BYTES * 5),
    ];
    for (name, pick) in points {
        let serial = cut_at(
            &lab,
            armed,
            &format!("2-cut-flash-{name}"),
            "flash",
            Some("progress"),
            pick,
        )?;
        let ev = events::parse(&serial);
        ensure!(
            events::find(&ev, "point-of-no-return", "ok").is_some(),
            "cut {name} before the point of no return"
        );
        let at = ev
            .iter()
            .rev()
            .find(|e| e["step"] == "flash" && e["status"] == "progress");
        eprintln!(
            "flash cut {name}: {} of {IMAGE_BYTES} bytes written",
            at.map_or(0, written)
        );
        ensure!(
            first_mib(&lab.disk)? == old_head,
            "a cut {name} in the flash left a changed first MiB: the engine must write it last"
        );
    }
    // What such a disk does at power-on: neither OS comes up. GRUB's core
    // (in the old first MiB) looks for /boot/grub on the old root, whose
    // ext4 superblock the flash overwrote; the new MBR is not written yet.
    ensure!(
        !has_ext4_at(&lab.disk, OLD_ROOT_OFFSET)?,
        "the old root's ext4 superblock survived the late cut"
    );
    // Booted for twice as long as Debian took to reach its shell in this
    // run (at least 30 s): no Debian prompt, no balenaOS report.
    let wait = (debian_up * 2).max(Duration::from_secs(30));
    let serial = boot_for(&lab, "3-after-flash-cut", wait)?;
    ensure!(
        report::parse(&serial).is_none() && !serial.contains("login:"),
        "a disk cut mid-flash booted something in {wait:?}; see the log"
    );
    eprintln!("disk cut mid-flash: nothing booted in {wait:?}");

    // After the flash, before injection: balenaOS is whole and boots,
    // without config.json.
    let serial = cut_at(
        &lab,
        armed,
        "4-cut-before-inject",
        "reread-partitions",
        None,
        |_| true,
    )?;
    let ev = events::parse(&serial);
    let window = t_ms(&ev, "flash", "ok")? - t_ms(&ev, "point-of-no-return", "ok")?;
    eprintln!(
        "unrecoverable window on the lab's image: {window} ms (point of no return → flash ok)"
    );
    let serial = lab.unattended("5-balenaos-unprovisioned")?;
    let r = report::parse(&serial).context("balenaOS printed no report")?;
    ensure!(r["config_json"].is_null(), "{r}");

    // After injection: balenaOS boots provisioned.
    cut_at(
        &lab,
        armed,
        "6-cut-after-inject",
        "inject",
        Some("ok"),
        |_| true,
    )?;
    let serial = lab.unattended("7-balenaos")?;
    let r = report::parse(&serial).context("balenaOS printed no report")?;
    ensure!(r["config_json"]["deviceType"] == balena::DEVICE_TYPE, "{r}");
    eprintln!(
        "flash cuts: passed in {:.1}s",
        lab.t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where the legacy BIOS image's root partition (ext4) starts.
const OLD_ROOT_OFFSET: u64 = 1 << 20;

/// Whether an ext2/3/4 superblock (magic 0xEF53 at byte 56 of the
/// superblock, which starts 1024 bytes into the filesystem) is at
/// `offset` of the disk image `disk`.
fn has_ext4_at(disk: &Path, offset: u64) -> Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(disk)?;
    f.seek(SeekFrom::Start(offset + 1024 + 56))?;
    let mut magic = [0u8; 2];
    f.read_exact(&mut magic)?;
    Ok(magic == [0x53, 0xEF])
}

/// The lab image's decoded size.
const IMAGE_BYTES: u64 = balena::DISK_MIB << 20;

/// Decoded bytes written, from a flash progress event.
fn written(e: &serde_json::Value) -> u64 {
    e["data"]["written"].as_u64().unwrap_or(0)
}

/// Which event a cut waits for.
type Pick = dyn Fn(&serde_json::Value) -> bool;

fn t_ms(ev: &[serde_json::Value], step: &str, status: &str) -> Result<i64> {
    events::find(ev, step, status)
        .and_then(|e| e["t_ms"].as_i64())
        .with_context(|| format!("no {step}/{status}: {:?}", summary(ev)))
}

/// Boot the disk as it is for `for_`, then cut the power; the serial.
fn boot_for(lab: &Lab, name: &str, for_: Duration) -> Result<String> {
    let mut g = Guest::start(&lab.qemu, name)?;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < for_ && g.exited()?.is_none() {
        std::thread::sleep(Duration::from_millis(500));
    }
    g.kill();
    Ok(g.serial())
}
