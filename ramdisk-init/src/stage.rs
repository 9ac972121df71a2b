//! Stage 2 as an explicit state machine:
//!
//! `start → setup → plan → modules → disarm → find-target (and open it:
//! size, sector size) → load-payload → verify → [pretend: back to the old
//! OS] → point-of-no-return → flash → reread-partitions → inject → done`.
//!
//! Each step emits events. Before the point of no return the first failure
//! records a status for the old OS and leaves by rebooting into it. After
//! it, a flash that fails before writing anything does the same (the disk
//! is as it was); one that wrote is retried; injection failures are logged
//! and the new OS boots anyway (it is whole: the flash engine verified it).

use crate::events::{EventLog, Status, Step};
use crate::inject;
use crate::oldos::{self, Outcome};
use crate::payload;
use crate::plan::Plan;
use crate::system::{FlashProgress, ModuleLoad, System};
use crate::target;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

/// How PID 1 leaves after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// balenaOS is on the disk: reboot into it.
    Migrated,
    /// Pretend run passed: reboot into the old OS.
    PretendDone,
    /// A step failed before the point of no return: reboot into the old OS.
    Fallback {
        /// The step that failed.
        step: Step,
        /// Why.
        reason: String,
    },
    /// Flashing failed after the point of no return: the disk holds neither
    /// OS whole, so power off instead of booting garbage.
    FlashFailed {
        /// Why.
        reason: String,
    },
    /// The boot change could not be undone (config.txt not restored), so a
    /// reboot would start this ramdisk again, and then a later step failed
    /// (or this was a pretend run): power off instead of looping. See
    /// docs/migration.md "When the restore fails".
    Stranded {
        /// The step that stopped the run.
        step: Step,
        /// Why, with the restore failure.
        reason: String,
    },
    /// Test hook: PID 1 exits, the kernel panics, `panic=` reboots.
    TestExit,
}

/// Attempts at flashing before giving up.
pub const FLASH_ATTEMPTS: u32 = 3;

struct Failed(Step, String);

enum Pre {
    Continue(Box<Plan>, String),
    Leave(Exit),
}

/// Run stage 2 against `sys`, logging to `log`.
pub fn run<S: System, W: Write>(sys: &mut S, log: &mut EventLog<W>) -> Exit {
    log.note(
        Step::Start,
        Status::Begin,
        concat!("migrd-init ", env!("CARGO_PKG_VERSION")),
    );
    let mut plan_seen: Option<Plan> = None;
    let mut stranded: Option<String> = None;
    let exit = match before_ponr(sys, log, &mut plan_seen, &mut stranded) {
        Ok(Pre::Leave(Exit::PretendDone)) if stranded.is_some() => Exit::Stranded {
            step: Step::Disarm,
            reason: stranded.unwrap_or_default(),
        },
        Ok(Pre::Leave(exit)) => exit,
        Ok(Pre::Continue(plan, disk)) => match after_ponr(sys, log, &plan, &disk) {
            Ok(exit) => exit,
            Err(f) => fall_back(sys, log, plan_seen.as_ref(), stranded, f),
        },
        Err(f) => fall_back(sys, log, plan_seen.as_ref(), stranded, f),
    };
    let device = plan_seen.as_ref().and_then(|p| p.log.device.clone());
    if let (Some(at), false) = (device, exit == Exit::TestExit) {
        match oldos::copy_log(sys, log, &at) {
            Ok(w) => log.note(Step::Status, Status::Ok, &format!("log copied to {w}")),
            Err(e) => log.note(
                Step::Status,
                Status::Fail,
                &format!("copying the log to the log device: {e}"),
            ),
        }
    }
    exit
}

/// Nothing was written: record why for the old OS and go back to it (or,
/// when the boot change could not be undone, power off rather than loop).
fn fall_back<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    plan: Option<&Plan>,
    stranded: Option<String>,
    Failed(step, reason): Failed,
) -> Exit {
    log.note(step, Status::Fail, &reason);
    if let Some(plan) = plan {
        leave_word(sys, log, plan, Outcome::Fallback, step, &reason);
    }
    match stranded {
        Some(d) => Exit::Stranded {
            step,
            reason: format!("{reason}; and the boot change was not undone: {d}"),
        },
        None => Exit::Fallback { step, reason },
    }
}

fn leave_word<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    plan: &Plan,
    outcome: Outcome,
    step: Step,
    reason: &str,
) {
    let Some(at) = &plan.status else { return };
    let step_name = serde_json::to_value(step)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    log.note(
        Step::Status,
        Status::Begin,
        "recording the result for the old OS",
    );
    match oldos::record(sys, log, at, outcome, &step_name, reason) {
        Ok(where_) => log.note(Step::Status, Status::Ok, &where_),
        Err(e) => log.note(Step::Status, Status::Fail, &e),
    }
}

fn hook<W: Write>(plan: &Plan, log: &mut EventLog<W>, step: &str) -> bool {
    if plan.test.exit_after.as_deref() == Some(step) {
        log.note(
            Step::Exit,
            Status::Ok,
            &format!("test hook: exiting PID 1 after {step}"),
        );
        return true;
    }
    false
}

fn before_ponr<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    plan_seen: &mut Option<Plan>,
    stranded: &mut Option<String>,
) -> Result<Pre, Failed> {
    sys.setup().map_err(|e| Failed(Step::Setup, e))?;
    log.note(Step::Setup, Status::Ok, "devtmpfs, proc, sysfs mounted");

    let text = sys.read_plan().map_err(|e| Failed(Step::Plan, e))?;
    let plan = Plan::from_json(&text).map_err(|e| Failed(Step::Plan, e.to_string()))?;
    log.console_level = plan.log.level;
    log.emit(
        Step::Plan,
        Status::Ok,
        &plan.created_by,
        json!({"version": plan.version, "arch": plan.arch, "strategy": plan.boot.strategy,
               "payload_files": plan.payload.len(), "pretend": plan.pretend}),
    );
    if hook(&plan, log, "plan") {
        return Ok(Pre::Leave(Exit::TestExit));
    }

    load_modules(sys, log, &plan.modules)?;
    if let Err(e) = crate::disarm::run(sys, log, &plan.boot.disarm) {
        if plan.boot.strategy.self_clearing() {
            return Err(Failed(Step::Disarm, e));
        }
        // The boot change does not clear itself and could not be undone:
        // going back would boot this ramdisk again, forever. Going on is
        // the only way the device can come back by itself (the flash
        // rewrites the boot partition); a later failure powers off.
        log.note(
            Step::Disarm,
            Status::Fail,
            &format!("{e}; a reboot would start this ramdisk again, so the migration goes on and any later failure powers off"),
        );
        *stranded = Some(e);
    }
    // From here on failures can be recorded on the old OS's filesystem.
    *plan_seen = Some(plan.clone());
    let disk = find_target(sys, log, &plan)?;
    open_target(sys, log, &disk)?;

    let root = sys.payload_root().to_path_buf();
    for f in &plan.payload {
        payload::check_present(&root, f).map_err(|e| Failed(Step::LoadPayload, e.to_string()))?;
    }
    log.emit(
        Step::LoadPayload,
        Status::Ok,
        "every payload file present with its planned size",
        json!({"files": plan.payload.iter().map(|f| json!({"path": f.path(), "size": f.size})).collect::<Vec<_>>()}),
    );
    for f in &plan.payload {
        let t = Instant::now();
        payload::verify(&root, f).map_err(|e| Failed(Step::Verify, e.to_string()))?;
        log.emit(
            Step::Verify,
            Status::Ok,
            "sha256 matches",
            json!({"path": f.path(), "size": f.size, "sha256": f.sha256, "ms": t.elapsed().as_millis()}),
        );
    }
    if hook(&plan, log, "verify") {
        return Ok(Pre::Leave(Exit::TestExit));
    }
    if plan.pretend {
        log.note(
            Step::Done,
            Status::Ok,
            "pretend: every step before the point of no return passed; nothing written",
        );
        leave_word(
            sys,
            log,
            &plan,
            Outcome::PretendOk,
            Step::Done,
            "pretend run passed",
        );
        return Ok(Pre::Leave(Exit::PretendDone));
    }
    Ok(Pre::Continue(Box::new(plan), disk))
}

/// Open the target as the flash will and read its size and sector size
/// (the ioctls the engine uses): a problem here is found while nothing has
/// been written, so the device goes back to its old OS.
fn open_target<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    disk: &str,
) -> Result<(), Failed> {
    match sys.open_target(disk) {
        Ok(g) if g.size > 0 => {
            log.emit(
                Step::FindTarget,
                Status::Ok,
                "target opened for writing",
                json!({"disk": disk, "size": g.size, "sector_size": g.sector_size}),
            );
            Ok(())
        }
        Ok(_) => Err(Failed(
            Step::FindTarget,
            format!("/dev/{disk} reports a size of 0 bytes; nothing was written"),
        )),
        Err(e) => Err(Failed(
            Step::FindTarget,
            format!("cannot open /dev/{disk} for writing: {e}; nothing was written"),
        )),
    }
}

/// After the point of no return. `Err` only when the flash failed before
/// writing anything: the old OS is whole and the caller goes back to it.
fn after_ponr<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    plan: &Plan,
    disk: &str,
) -> Result<Exit, Failed> {
    let Some(image) = plan.image() else {
        log.note(
            Step::Done,
            Status::Ok,
            "no image in the plan: nothing to flash",
        );
        return Ok(Exit::PretendDone);
    };
    log.note(
        Step::PointOfNoReturn,
        Status::Ok,
        &format!(
            "writing {} to /dev/{disk}; from here the old OS is gone",
            image.path()
        ),
    );
    let src = sys
        .payload_root()
        .join(image.path().trim_start_matches('/'));
    let mut flashed = None;
    let mut touched = false;
    for attempt in 1..=FLASH_ATTEMPTS {
        log.emit(Step::Flash, Status::Begin, "", json!({"attempt": attempt}));
        let mut last = Instant::now();
        let res = {
            let log = &mut *log;
            let mut progress = |p: FlashProgress| {
                if last.elapsed() >= Duration::from_secs(5) {
                    last = Instant::now();
                    log.emit(Step::Flash, Status::Progress, "", json!(p));
                }
            };
            sys.flash(&src, disk, &mut progress)
        };
        match res {
            Ok(f) => {
                log.emit(
                    Step::Flash,
                    Status::Ok,
                    "image written and read back",
                    json!(f),
                );
                flashed = Some(f);
                break;
            }
            Err(e) => {
                log.emit(
                    Step::Flash,
                    Status::Fail,
                    &e.reason,
                    json!({"attempt": attempt, "wrote": e.wrote}),
                );
                touched |= e.wrote;
                if !touched {
                    return Err(Failed(
                        Step::Flash,
                        format!("{}; nothing was written, the old OS is whole", e.reason),
                    ));
                }
            }
        }
    }
    let Some(flashed) = flashed else {
        let reason =
            format!("flashing failed {FLASH_ATTEMPTS} times; the device needs manual recovery");
        log.note(Step::Done, Status::Fail, &reason);
        return Ok(Exit::FlashFailed { reason });
    };
    log.note(
        Step::RereadPartitions,
        if flashed.partitions_reread {
            Status::Ok
        } else {
            Status::Fail
        },
        if flashed.partitions_reread {
            "kernel sees the new partition table"
        } else {
            "kernel kept the old table"
        },
    );
    if let Some(setup) = &plan.efi_setup {
        efi_setup(sys, log, disk, setup);
    }
    let mut last_err = None;
    for attempt in 1..=3 {
        let history = log.history.join("\n") + "\n";
        match inject::run(
            sys,
            disk,
            &plan.inject,
            &[(inject::LOG_PATH.to_string(), history.into_bytes())],
        ) {
            Ok(done) => {
                log.emit(Step::Inject, Status::Ok, "", json!({"written": done}));
                last_err = None;
                break;
            }
            Err(e) => {
                log.emit(Step::Inject, Status::Fail, &e, json!({"attempt": attempt}));
                last_err = Some(e);
                sys.sleep(Duration::from_secs(1));
            }
        }
    }
    match last_err {
        None => log.note(Step::Done, Status::Ok, "balenaOS flashed and provisioned"),
        Some(e) => log.note(
            Step::Done,
            Status::Fail,
            &format!("balenaOS flashed but not provisioned: {e}"),
        ),
    }
    Ok(Exit::Migrated)
}

/// The new OS's firmware boot entry. A failure is logged only: the new OS
/// is whole and the firmware falls back to `\EFI\BOOT\bootx64.efi`.
fn efi_setup<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    disk: &str,
    setup: &crate::plan::EfiSetup,
) {
    match crate::efi::setup::run(sys, disk, setup) {
        Ok(done) => log.emit(
            Step::EfiSetup,
            Status::Ok,
            "balenaOS boot entry first in BootOrder",
            json!({ "done": done }),
        ),
        Err(e) => log.note(
            Step::EfiSetup,
            Status::Fail,
            &format!("{e}; the firmware will fall back to \\EFI\\BOOT\\bootx64.efi on the disk"),
        ),
    }
}

/// Load modules in plan order. A module that needs a not-yet-loaded
/// dependency is retried after the others, so a wrong order costs time, not
/// the boot; a pass that loads nothing more ends it.
fn load_modules<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    modules: &[String],
) -> Result<(), Failed> {
    let mut pending: Vec<&String> = modules.iter().collect();
    let (mut loaded, mut already, mut no_device) = (Vec::new(), Vec::new(), Vec::new());
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for m in pending {
            match sys.load_module(m) {
                Ok(ModuleLoad::Loaded) => loaded.push(short(m)),
                Ok(ModuleLoad::AlreadyLoaded) => already.push(short(m)),
                Ok(ModuleLoad::NoDevice) => no_device.push(short(m)),
                Ok(ModuleLoad::NeedsDependency) => waiting.push(m),
                Err(e) => return Err(Failed(Step::Modules, format!("loading {m}: {e}"))),
            }
        }
        if waiting.len() == before {
            return Err(Failed(
                Step::Modules,
                format!(
                    "modules with unresolved symbols: {} (a dependency is missing from the ramdisk)",
                    waiting.iter().map(|m| short(m)).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        pending = waiting;
    }
    log.emit(
        Step::Modules,
        if modules.is_empty() {
            Status::Skip
        } else {
            Status::Ok
        },
        "",
        json!({"loaded": loaded, "already": already, "no_device": no_device}),
    );
    Ok(())
}

fn short(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).to_string()
}

fn find_target<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    plan: &Plan,
) -> Result<String, Failed> {
    // Poll every 250 ms; counted in polls, not wall time, so the wait is
    // the plan's even when the clock is not trustworthy this early in boot.
    let polls = plan.target.wait_secs.saturating_mul(4);
    let started = Instant::now();
    let mut poll = 0u32;
    loop {
        poll += 1;
        let disks = sys.disks().map_err(|e| Failed(Step::FindTarget, e))?;
        match target::select(&plan.target, &disks) {
            Ok(d) => {
                log.emit(
                    Step::FindTarget,
                    Status::Ok,
                    &format!("target is /dev/{}", d.name),
                    json!({"disk": d, "waited_ms": started.elapsed().as_millis()}),
                );
                return Ok(d.name.clone());
            }
            Err(target::FindError::NotFound { .. }) if poll < polls => {
                sys.sleep(Duration::from_millis(250))
            }
            Err(e) => return Err(Failed(Step::FindTarget, e.to_string())),
        }
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
