//! `balena-reporter`: PID 1 of the lab's synthetic balenaOS (a static musl
//! binary in an initramfs on resin-boot). It mounts devtmpfs, proc and
//! sysfs, loads the modules listed in `/etc/modules.order`, finds the
//! partitions by filesystem label, mounts resin-boot and resin-data
//! read-only, prints one `BALENA-REPORT {json}` line on the console (see
//! `migrd_lab::report`) and powers off. Nothing here may stop the report
//! from being printed: every failure goes into its `errors`.
//!
//! Build: `cargo build -p migrd-lab --bin balena-reporter --no-default-features
//! --profile init --target x86_64-unknown-linux-musl`.

use migrd_lab::report::{self, LINE_PREFIX};
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, umount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MODULES_ORDER: &str = "/etc/modules.order";
const WAIT_FOR_DISK: Duration = Duration::from_secs(15);

fn main() {
    let t0 = Instant::now();
    let mut errors = Vec::new();
    for (src, dir, fs) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
    ] {
        let _ = std::fs::create_dir_all(dir);
        match mount(Some(src), dir, Some(fs), MsFlags::empty(), None::<&str>) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => errors.push(format!("mount {fs} on {dir}: {e}")),
        }
    }
    let modules = load_modules(&mut errors);
    let found = find_partitions(&mut errors);
    let boot = mount_ro(found.get("resin-boot"), "/mnt/boot", "vfat", &mut errors);
    let data = mount_ro(found.get("resin-data"), "/mnt/data", "ext4", &mut errors);
    let labels: Vec<String> = found.keys().cloned().collect();
    let table = disk_partitions();
    let mut r = report::collect(boot.as_deref(), data.as_deref(), &labels, &mut errors);
    if let Some(obj) = r.as_object_mut() {
        obj.insert("devices".into(), json!(found));
        obj.insert("disk_partitions".into(), json!(table));
        obj.insert("modules".into(), json!(modules));
        obj.insert("uptime_ms".into(), json!(t0.elapsed().as_millis() as u64));
    }
    print_report(&r);
    for m in [&boot, &data].into_iter().flatten() {
        let _ = umount(m.as_path());
    }
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // PID 1 must not return; if power-off failed, wait for the watchdog or
    // the operator.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn print_report(r: &Value) {
    let line = format!("\n{LINE_PREFIX}{r}\n");
    let mut out = std::io::stdout();
    if out
        .write_all(line.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        // No stdout (no /dev/console in the archive): try the console.
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = c.write_all(line.as_bytes());
        }
    }
}

/// Load the modules in `/etc/modules.order` (dependencies first), with
/// passes until nothing more loads, so a wrong order only costs a pass.
fn load_modules(errors: &mut Vec<String>) -> Vec<String> {
    let list = match std::fs::read_to_string(MODULES_ORDER) {
        Ok(s) => s,
        Err(e) => {
            errors.push(format!("{MODULES_ORDER}: {e}"));
            return Vec::new();
        }
    };
    let mut pending: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut loaded = Vec::new();
    let mut last = BTreeMap::new();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|path| {
            let name = Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let res = std::fs::File::open(path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    match finit_module(&f, &CString::default(), ModuleInitFlags::empty()) {
                        Ok(()) | Err(Errno::EEXIST) => Ok(true),
                        // A CPU-specific driver (crc32c_intel,
                        // crct10dif_pclmul) on a CPU without the feature.
                        Err(Errno::ENODEV) => Ok(false),
                        Err(e) => Err(e.to_string()),
                    }
                });
            match res {
                Ok(true) => {
                    loaded.push(name);
                    false
                }
                Ok(false) => false,
                Err(e) => {
                    last.insert(path.to_string(), e);
                    true
                }
            }
        });
        if pending.len() == before {
            break;
        }
    }
    for p in pending {
        errors.push(format!(
            "module {p}: {}",
            last.get(p).map(String::as_str).unwrap_or("not loaded")
        ));
    }
    loaded
}

/// Every partition the kernel sees (`vda1`…`vda6`, the extended one too).
fn disk_partitions() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/block")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("partition").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Label → device of every labelled partition, waiting until resin-boot
/// and resin-data are there (or the time is up).
fn find_partitions(errors: &mut Vec<String>) -> BTreeMap<String, String> {
    let t0 = Instant::now();
    loop {
        let mut found = BTreeMap::new();
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            if !Path::new("/sys/class/block")
                .join(&n)
                .join("partition")
                .exists()
            {
                continue;
            }
            let dev = format!("/dev/{n}");
            if let Some(label) = report::read_head(Path::new(&dev), 4096)
                .ok()
                .and_then(|h| report::fs_label(&h))
            {
                found.entry(label).or_insert(dev);
            }
        }
        if (found.contains_key("resin-boot") && found.contains_key("resin-data"))
            || t0.elapsed() > WAIT_FOR_DISK
        {
            if found.is_empty() {
                errors.push(format!("no labelled partition after {WAIT_FOR_DISK:?}"));
            }
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mount_ro(
    dev: Option<&String>,
    dir: &str,
    fs: &str,
    errors: &mut Vec<String>,
) -> Option<PathBuf> {
    let dev = dev?;
    let _ = std::fs::create_dir_all(dir);
    match mount(
        Some(dev.as_str()),
        dir,
        Some(fs),
        MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        Ok(()) => Some(PathBuf::from(dir)),
        Err(e) => {
            errors.push(format!("mount {dev} ({fs}) on {dir}: {e}"));
            None
        }
    }
}
