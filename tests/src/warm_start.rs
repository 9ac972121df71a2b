//! Warm starts: the first boot of a scenario's Debian device is resumed
//! from a snapshot of a device that already booted, instead of booting
//! cold (a cold boot to the root shell is ~60 s under TCG: SeaBIOS or OVMF,
//! GRUB, the kernel and its initramfs, systemd).
//!
//! A snapshot, made once per run and per kind of device, is three files
//! taken the moment QEMU stopped a device sitting at Debian's root shell
//! (logged in and made scriptable by [`Guest::login`]):
//! - `state`: QEMU's migration stream of the running machine (RAM, CPU,
//!   devices), written with `migrate exec:` and read back with
//!   `-incoming exec:` (works in every QEMU; `file:` needs 8.2 or later);
//! - the device's disk and, on UEFI, its variable store, copied after QEMU
//!   quit, so they hold exactly what the stopped guest had written;
//! - the tools disk was attached but blank and never mounted: after the
//!   resume the guest drops its cached blocks of it and udev probes it
//!   again, so the scenario's own tools disk (same size) is read fresh.
//!
//! Only the first boot of a fresh disk is resumed: every boot after a
//! restart, a reset or a power cut, the ones a scenario is about, is a real
//! boot from the disk. The resumed guest gets the host's time and fresh
//! entropy, since every resume starts from the same clock and RNG.
//!
//! A snapshot is keyed by the QEMU command line with the scenario's folder
//! taken out ([`Qemu::fingerprint`]), the image's canary (one per image
//! build) and the tools disk's size. Whoever needs it first makes it; a
//! scenario that finds another one making it boots cold instead of
//! waiting. Anything that goes wrong while making or resuming one is
//! printed and the scenario boots cold: a warm start saves time, it proves
//! nothing. `MIGRD_LAB_WARM=0` turns warm starts off.

use crate::guest::Guest;
use crate::images::legacy;
use crate::paths;
use crate::power_cut::copy_sparse;
use crate::qemu::Qemu;
use anyhow::{bail, ensure, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Serial number of the tools disk (see [`crate::scenario::lab_on`]).
pub const TOOLS_SERIAL: &str = "TOOLS0001";

/// A fresh device's files, as the scenario prepared them.
pub struct Device<'a> {
    /// QEMU with the device's disks; its files live in its log folder.
    pub qemu: &'a Qemu,
    /// The system disk.
    pub disk: &'a Path,
    /// The tools disk (its size is part of the key).
    pub tools: &'a Path,
    /// UEFI only: the variable store.
    pub vars: Option<&'a Path>,
    /// SHA-256 of the image's canary: tells image builds apart.
    pub canary: &'a str,
}

/// Resume `dev`'s first boot as `name` from its snapshot, making the
/// snapshot first if nobody has; `None` when it cannot (warm starts off,
/// another scenario is making it, or making or resuming it failed: said on
/// stderr), and the caller boots cold. The guest is at the root shell.
pub fn first_boot(dev: &Device, name: &str) -> Option<Guest> {
    if std::env::var_os("MIGRD_LAB_WARM").is_some_and(|v| v == "0") {
        return None;
    }
    match try_first_boot(dev, name) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("[warm start] {name}: booting cold: {e:#}");
            None
        }
    }
}

fn try_first_boot(dev: &Device, name: &str) -> Result<Option<Guest>> {
    let dir = snapshot_dir(dev)?;
    if !dir.join("state").exists() && !make_unless_busy(dev, &dir)? {
        return Ok(None);
    }
    resume(dev, &dir, name).map(Some)
}

/// `<lab>/warm/<key>`.
fn snapshot_dir(dev: &Device) -> Result<PathBuf> {
    let size = std::fs::metadata(dev.tools)
        .with_context(|| format!("{}", dev.tools.display()))?
        .len();
    let mut h = DefaultHasher::new();
    (dev.qemu.fingerprint(), dev.canary, size).hash(&mut h);
    Ok(paths::lab_dir()
        .join("warm")
        .join(format!("{:016x}", h.finish())))
}

/// Make the snapshot in `dir` unless another scenario holds its lock
/// (then `false`).
fn make_unless_busy(dev: &Device, dir: &Path) -> Result<bool> {
    let parent = dir.parent().context("snapshot folder")?;
    std::fs::create_dir_all(parent)?;
    let lock_file = std::fs::File::create(dir.with_extension("lock"))?;
    let _lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(false),
        Err((_, e)) => bail!("locking {}: {e}", dir.display()),
    };
    if dir.join("state").exists() {
        return Ok(true);
    }
    let t0 = Instant::now();
    let part = dir.with_extension("part");
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(&part)?;
    make(dev, &part)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&part, dir)?;
    eprintln!(
        "[warm start] snapshot {} made in {:.1} s",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// Boot a copy of `dev` in `dir` cold, stop it at the shell and save it.
fn make(dev: &Device, dir: &Path) -> Result<()> {
    copy_sparse(dev.disk, &dir.join(file_name(dev.disk)?))?;
    if let Some(vars) = dev.vars {
        std::fs::copy(vars, dir.join(file_name(vars)?))?;
    }
    let blank = std::fs::File::create(dir.join(file_name(dev.tools)?))?;
    blank.set_len(std::fs::metadata(dev.tools)?.len())?;
    // One socket per snapshot: two tests of one binary may make two at once.
    let key = dir.file_stem().and_then(|k| k.to_str()).unwrap_or("x");
    let sock = std::env::temp_dir().join(format!("migrd-warm-{}-{key}.qmp", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut q = dev.qemu.moved_to(dir);
    q.args([
        "-qmp",
        &format!("unix:{},server=on,wait=off", sock.display()),
    ]);
    let mut g = Guest::start(&q, "cold-boot")?;
    g.login(legacy::PROMPT, legacy::BOOT_TIMEOUT)
        .context("the cold boot's shell")?;
    // Less RAM to save and load: the page cache is read again as needed.
    g.run_ok(
        "sync; echo 3 > /proc/sys/vm/drop_caches",
        Duration::from_secs(60),
    )?;
    let state = dir.join("state");
    let mut qmp = Qmp::connect(&sock)?;
    let _ = std::fs::remove_file(&sock);
    // No `stop` first: a stream saved from a paused machine resumes paused.
    // QEMU pauses the guest itself for the last pass and flushes its disks.
    qmp.execute(
        "migrate",
        json!({ "uri": format!("exec:cat > {}", state.display()) }),
    )?;
    qmp.wait_migrated(Duration::from_secs(300))?;
    // QEMU may close the socket before it answers.
    let _ = qmp.execute("quit", json!({}));
    g.wait_exit(Duration::from_secs(60))?;
    ensure!(
        std::fs::metadata(&state)?.len() > 0,
        "empty migration stream"
    );
    Ok(())
}

/// Put the snapshot's disk (and variable store) in place of `dev`'s and
/// resume it as `name`.
fn resume(dev: &Device, dir: &Path, name: &str) -> Result<Guest> {
    copy_sparse(&dir.join(file_name(dev.disk)?), dev.disk)?;
    if let Some(vars) = dev.vars {
        std::fs::copy(dir.join(file_name(vars)?), vars)?;
    }
    let mut q = dev.qemu.clone();
    let state = dir.join("state");
    q.args(["-incoming", &format!("exec:cat {}", state.display())]);
    let mut g = Guest::start(&q, name)?;
    wake(&mut g)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let seed: String = (0..4)
        .map(|i| {
            let mut h = DefaultHasher::new();
            (now, name, dev.disk, i, Instant::now()).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect();
    g.run_ok(
        &format!(
            "date -s @{now} >/dev/null; echo {seed} > /dev/urandom; \
             t=$(readlink -f /dev/disk/by-id/virtio-{TOOLS_SERIAL}); \
             blockdev --flushbufs \"$t\" && udevadm trigger --action=change --settle \"$t\""
        ),
        Duration::from_secs(120),
    )
    .context("resuming the snapshot")?;
    Ok(g)
}

/// Get a fresh prompt from the resumed shell: what is typed first after a
/// resume can be lost (seen: the first character of the first command),
/// so type empty lines until the shell answers one.
fn wake(g: &mut Guest) -> Result<()> {
    for _ in 0..5 {
        g.send_line("")?;
        if g.wait_for(legacy::PROMPT, Duration::from_secs(10)).is_ok() {
            return Ok(());
        }
    }
    bail!("the resumed shell does not answer")
}

fn file_name(p: &Path) -> Result<&std::ffi::OsStr> {
    p.file_name()
        .with_context(|| format!("{} has no file name", p.display()))
}

/// A QMP connection (QEMU's JSON monitor), one command at a time.
struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Qmp {
    /// Connect (QEMU may still be starting) and leave capabilities
    /// negotiation.
    fn connect(sock: &Path) -> Result<Qmp> {
        let t0 = Instant::now();
        let w = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() > Duration::from_secs(20) => {
                    bail!("QMP socket {}: {e}", sock.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        w.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut qmp = Qmp {
            r: BufReader::new(w.try_clone()?),
            w,
        };
        qmp.read()?; // the greeting
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        ensure!(self.r.read_line(&mut line)? > 0, "QMP closed");
        Ok(serde_json::from_str(&line)?)
    }

    /// Run `cmd` and return its `return` value (events are skipped).
    fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        writeln!(self.w, "{}", json!({ "execute": cmd, "arguments": args }))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {cmd}: {e}");
            }
        }
    }

    fn wait_migrated(&mut self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let st = self.execute("query-migrate", json!({}))?;
            match st.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => bail!("migration {st}"),
                _ if t0.elapsed() > timeout => bail!("migration still {st} after {timeout:?}"),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}
