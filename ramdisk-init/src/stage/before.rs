//! The steps before the point of no return. Each failure here wrote
//! nothing to the target: the old OS is whole and the run goes back to it.

use super::outcome::{Exit, Failed};
use super::run::Run;
use super::Next;
use crate::events::{Status, Step};
use crate::oldos::Outcome;
use crate::payload;
use crate::plan::Plan;
use crate::system::{ModuleLoad, System};
use crate::target;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

/// Mount devtmpfs, proc and sysfs.
pub(crate) fn setup<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    run.sys.setup().map_err(|e| Failed::clean(Step::Setup, e))?;
    run.log
        .note(Step::Setup, Status::Ok, "devtmpfs, proc, sysfs mounted");
    Ok(Next::Go)
}

/// Read and check the plan. From here on a failure is recorded for the
/// old OS (where the plan says).
pub(crate) fn plan<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let text = run
        .sys
        .read_plan()
        .map_err(|e| Failed::clean(Step::Plan, e))?;
    let plan = Plan::from_json(&text).map_err(|e| Failed::clean(Step::Plan, e.to_string()))?;
    run.log.console_level = plan.log.level;
    run.log.emit(
        Step::Plan,
        Status::Ok,
        &plan.created_by,
        json!({"version": plan.version, "arch": plan.arch, "strategy": plan.boot.strategy,
               "payload_files": plan.payload.len(), "pretend": plan.pretend}),
    );
    run.plan = Some(plan);
    Ok(Next::Go)
}

/// Load the plan's modules in order. A module that needs a not-yet-loaded
/// dependency is retried after the others, so a wrong order costs time, not
/// the boot; a pass that loads nothing more ends it.
pub(crate) fn modules<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let modules = run.plan(Step::Modules)?.modules.clone();
    let mut pending: Vec<&String> = modules.iter().collect();
    let (mut loaded, mut already, mut no_device) = (Vec::new(), Vec::new(), Vec::new());
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for m in pending {
            match run.sys.load_module(m) {
                Ok(ModuleLoad::Loaded) => loaded.push(short(m)),
                Ok(ModuleLoad::AlreadyLoaded) => already.push(short(m)),
                Ok(ModuleLoad::NoDevice) => no_device.push(short(m)),
                Ok(ModuleLoad::NeedsDependency) => waiting.push(m),
                Err(e) => return Err(Failed::clean(Step::Modules, format!("loading {m}: {e}"))),
            }
        }
        if waiting.len() == before {
            let names: Vec<String> = waiting.iter().map(|m| short(m)).collect();
            return Err(Failed::clean(
                Step::Modules,
                format!(
                    "modules with unresolved symbols: {} (a dependency is missing from the ramdisk)",
                    names.join(", ")
                ),
            ));
        }
        pending = waiting;
    }
    let status = if modules.is_empty() {
        Status::Skip
    } else {
        Status::Ok
    };
    run.log.emit(
        Step::Modules,
        status,
        "",
        json!({"loaded": loaded, "already": already, "no_device": no_device}),
    );
    Ok(Next::Go)
}

pub(crate) fn short(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).to_string()
}

/// Open the plan's hardware watchdog (its driver loaded in the modules
/// step) and hand it to the guard, which pets it from now on while every
/// step keeps its budget. None, or one that will not open, is logged and
/// the run goes on guarded by the deadlines alone.
pub(crate) fn watchdog<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let plan = run.plan(Step::Watchdog)?.watchdog.clone();
    if plan.device.is_none() && plan.identity.is_none() {
        run.log.note(
            Step::Watchdog,
            Status::Skip,
            "no hardware watchdog in the plan: hangs are caught by the deadlines alone",
        );
        return Ok(Next::Go);
    }
    match run.sys.open_watchdog(&plan) {
        Ok(w) => {
            run.log.emit(
                Step::Watchdog,
                Status::Ok,
                "hardware watchdog armed; petted while every step keeps its budget",
                json!({"device": w.path, "timeout_secs": w.timeout_secs, "driver": plan.driver}),
            );
            run.guard.adopt(w.device);
        }
        Err(e) => run.log.note(
            Step::Watchdog,
            Status::Fail,
            &format!("{e}; hangs are caught by the deadlines alone"),
        ),
    }
    Ok(Next::Go)
}

/// Undo the boot change. When it does not clear itself and cannot be
/// undone, going back would boot this ramdisk again, forever: the run goes
/// on (the flash rewrites the boot partition) and any later failure powers
/// off instead of rebooting (see [`Exit::Stranded`]).
pub(crate) fn disarm<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let boot = run.plan(Step::Disarm)?.boot.clone();
    let Err(e) = crate::disarm::run(run.sys, run.log, &boot.disarm) else {
        return Ok(Next::Go);
    };
    if boot.strategy.self_clearing() {
        return Err(Failed::clean(Step::Disarm, e));
    }
    run.log.note(
        Step::Disarm,
        Status::Fail,
        &format!("{e}; a reboot would start this ramdisk again, so the migration goes on and any later failure powers off"),
    );
    run.stranded = Some(e);
    run.guard.stranded();
    Ok(Next::Go)
}

/// Leave a first word for the old OS: the ramdisk ran this far. Replaced
/// by the fallback or pretend result when there is one; still there after
/// a power cut, a reset or a hang the guard rebooted, so `migrd status`
/// can say the ramdisk started and did not report back.
pub(crate) fn started<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    run.leave_word(
        Outcome::Started,
        Step::Disarm,
        "the migration ramdisk started and restored the boot configuration; nothing has been written to the disk",
    );
    Ok(Next::Go)
}

/// Find the target by identity, waiting the plan's time for it, then open
/// it the way the flash will and read its size and sector size.
pub(crate) fn find_target<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let wanted = run.plan(Step::FindTarget)?.target.clone();
    // Poll every 250 ms; counted in polls, not wall time, so the wait is
    // the plan's even when the clock is not trustworthy this early in boot.
    let polls = wanted.wait_secs.saturating_mul(4);
    let started = Instant::now();
    let mut poll = 0u32;
    let disk = loop {
        poll += 1;
        let disks = run
            .sys
            .disks()
            .map_err(|e| Failed::clean(Step::FindTarget, e))?;
        match target::select(&wanted, &disks) {
            Ok(d) => {
                run.log.emit(
                    Step::FindTarget,
                    Status::Ok,
                    &format!("target is /dev/{}", d.name),
                    json!({"disk": d, "waited_ms": started.elapsed().as_millis()}),
                );
                break d.name.clone();
            }
            Err(target::FindError::NotFound { .. }) if poll < polls => {
                run.sys.sleep(Duration::from_millis(250))
            }
            Err(e) => return Err(Failed::clean(Step::FindTarget, e.to_string())),
        }
    };
    open_target(run, &disk)?;
    run.disk = Some(disk);
    Ok(Next::Go)
}

/// Open the target as the flash will and read its size and sector size
/// (the ioctls the engine uses): a problem here is found while nothing has
/// been written.
fn open_target<S: System, W: Write>(run: &mut Run<'_, S, W>, disk: &str) -> Result<(), Failed> {
    match run.sys.open_target(disk) {
        Ok(g) if g.size > 0 => {
            run.log.emit(
                Step::FindTarget,
                Status::Ok,
                "target opened for writing",
                json!({"disk": disk, "size": g.size, "sector_size": g.sector_size}),
            );
            Ok(())
        }
        Ok(_) => Err(Failed::clean(
            Step::FindTarget,
            format!("/dev/{disk} reports a size of 0 bytes; nothing was written"),
        )),
        Err(e) => Err(Failed::clean(
            Step::FindTarget,
            format!("cannot open /dev/{disk} for writing: {e}; nothing was written"),
        )),
    }
}

/// Every payload file is present with its planned size.
pub(crate) fn load_payload<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let files = run.plan(Step::LoadPayload)?.payload.clone();
    let root = run.sys.payload_root().to_path_buf();
    for f in &files {
        payload::check_present(&root, f)
            .map_err(|e| Failed::clean(Step::LoadPayload, e.to_string()))?;
    }
    run.log.emit(
        Step::LoadPayload,
        Status::Ok,
        "every payload file present with its planned size",
        json!({"files": files.iter().map(|f| json!({"path": f.path(), "size": f.size})).collect::<Vec<_>>()}),
    );
    Ok(Next::Go)
}

/// Every payload file has its planned SHA-256.
pub(crate) fn verify<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let files = run.plan(Step::Verify)?.payload.clone();
    let root = run.sys.payload_root().to_path_buf();
    for f in &files {
        let t = Instant::now();
        payload::verify(&root, f).map_err(|e| Failed::clean(Step::Verify, e.to_string()))?;
        run.log.emit(
            Step::Verify,
            Status::Ok,
            "sha256 matches",
            json!({"path": f.path(), "size": f.size, "sha256": f.sha256, "ms": t.elapsed().as_millis()}),
        );
    }
    Ok(Next::Go)
}

/// The gate: a pretend run (or a plan with no image) goes back here, with
/// its status for the old OS; otherwise the old OS is given up.
pub(crate) fn point_of_no_return<S: System, W: Write>(
    run: &mut Run<'_, S, W>,
) -> Result<Next, Failed> {
    let plan = run.plan(Step::PointOfNoReturn)?;
    let (pretend, image) = (plan.pretend, plan.image().map(|i| i.path()));
    let disk = run.disk(Step::PointOfNoReturn)?;
    if pretend {
        return Ok(Next::Leave(pretend_done(run)));
    }
    let Some(image) = image else {
        run.log.note(
            Step::Done,
            Status::Ok,
            "no image in the plan: nothing to flash",
        );
        return Ok(Next::Leave(Exit::PretendDone));
    };
    run.log.note(
        Step::PointOfNoReturn,
        Status::Ok,
        &format!("writing {image} to /dev/{disk}; from here the old OS is gone"),
    );
    // A slow card's writeback must not panic a half-written disk.
    match run.sys.relax_hang_panic() {
        Ok(m) => run.log.note(Step::PointOfNoReturn, Status::Ok, &m),
        Err(e) => run.log.note(Step::PointOfNoReturn, Status::Fail, &e),
    }
    Ok(Next::Go)
}

/// Every step before the point of no return passed: say so to the old OS
/// and go back (or power off when the boot change could not be undone).
fn pretend_done<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Exit {
    run.log.note(
        Step::Done,
        Status::Ok,
        "pretend: every step before the point of no return passed; nothing written",
    );
    run.leave_word(Outcome::PretendOk, Step::Done, "pretend run passed");
    match run.stranded.take() {
        Some(reason) => Exit::Stranded {
            step: Step::Disarm,
            reason,
        },
        None => Exit::PretendDone,
    }
}
