//! Stage 2 as a table of steps run by one loop.
//!
//! | step | phase | budget (plan `deadlines`, defaults) | module |
//! |---|---|---|---|
//! | setup | before | 30 s | [`before`] |
//! | plan | before | 10 s | [`before`] |
//! | modules | before | `modules_secs` (180 s) | [`before`] |
//! | watchdog (open it, the guard pets it) | before | 30 s | [`before`] |
//! | disarm | before | 90 s | [`crate::disarm`] |
//! | status (a first word for the old OS: started) | before | 60 s | [`before`] |
//! | find-target (and open it) | before | `find_target_secs` (the target wait + 60 s) | [`before`] |
//! | load-payload | before | 30 s | [`before`] |
//! | verify | before | `verify_secs` (900 s) | [`before`] |
//! | point-of-no-return (`--pretend` stops here; hung-task panics off) | before | 10 s | [`before`] |
//! | flash | flashing | `flash_stall_secs` (300 s) without progress | [`after`] |
//! | reread-partitions | flashed | 60 s | [`after`] |
//! | efi-setup | flashed | 60 s | [`after`] |
//! | inject | flashed | 120 s | [`after`] |
//! | done | flashed | 10 s | [`after`] |
//!
//! The loop ([`run`]) tells the [`Guard`] each step's phase and budget,
//! within `before_ponr_secs` (1800 s) for all steps before the point of no
//! return together (a step that overruns is a hang: see [`crate::guard`]),
//! applies the
//! lab's test hooks, and turns the first failure into an exit in one place
//! (`Run::fail`, see [`outcome`]): a failure that wrote nothing goes back
//! to the old OS with a status for it; one that left the disk partly
//! written powers off. Failures a step can live with (a boot entry, an
//! injection) are logged by the step itself and the run goes on.

mod after;
mod before;
mod budget;
mod outcome;
mod run;

pub use budget::{Budget, Phase};
pub use outcome::{Damage, Exit, Failed};

use crate::events::{EventLog, Status, Step};
use crate::guard::Guard;
use crate::oldos;
use crate::system::System;
use run::Run;
use std::io::Write;

/// Attempts at flashing before giving up, when retrying can help.
pub const FLASH_ATTEMPTS: u32 = 3;

/// What the loop does after a step.
pub(crate) enum Next {
    /// Run the next step.
    Go,
    /// Leave now, this way (pretend, nothing to flash).
    Leave(Exit),
}

/// A step's body.
type StepFn<S, W> = fn(&mut Run<'_, S, W>) -> Result<Next, Failed>;

/// One row of the table.
pub(crate) struct StepDef<S: System, W: Write> {
    /// Which step (its name in events and hooks).
    pub step: Step,
    /// Before or after the point of no return.
    pub phase: Phase,
    /// How long it may take.
    pub budget: Budget,
    /// What it does.
    pub run: StepFn<S, W>,
}

/// The steps, in order; see the module table.
pub(crate) fn steps<S: System, W: Write>() -> Vec<StepDef<S, W>> {
    use Budget::{FindTarget, Fixed, FlashStall, Modules, Verify};
    use Phase::{Before, Flashed, Flashing};
    let row = |step, phase, budget, run: StepFn<S, W>| StepDef {
        step,
        phase,
        budget,
        run,
    };
    vec![
        row(Step::Setup, Before, Fixed(30), before::setup),
        row(Step::Plan, Before, Fixed(10), before::plan),
        row(Step::Modules, Before, Modules, before::modules),
        row(Step::Watchdog, Before, Fixed(30), before::watchdog),
        row(Step::Disarm, Before, Fixed(90), before::disarm),
        row(Step::Status, Before, Fixed(60), before::started),
        row(Step::FindTarget, Before, FindTarget, before::find_target),
        row(Step::LoadPayload, Before, Fixed(30), before::load_payload),
        row(Step::Verify, Before, Verify, before::verify),
        row(
            Step::PointOfNoReturn,
            Before,
            Fixed(10),
            before::point_of_no_return,
        ),
        row(Step::Flash, Flashing, FlashStall, after::flash),
        row(
            Step::RereadPartitions,
            Flashed,
            Fixed(60),
            after::reread_partitions,
        ),
        row(Step::EfiSetup, Flashed, Fixed(60), after::efi_setup),
        row(Step::Inject, Flashed, Fixed(120), after::inject),
        row(Step::Done, Flashed, Fixed(10), after::done),
    ]
}

/// Run stage 2 against `sys`, logging to `log`, watched by `guard`.
pub fn run<S: System, W: Write>(sys: &mut S, log: &mut EventLog<W>, guard: &dyn Guard) -> Exit {
    log.note(
        Step::Start,
        Status::Begin,
        concat!("migrd-init ", env!("CARGO_PKG_VERSION")),
    );
    let mut run = Run::new(sys, log, guard);
    let exit = run_steps(&mut run);
    copy_log(&mut run, &exit);
    guard.finish(exit.leaving());
    exit
}

/// The loop: each step in order until one leaves or fails.
fn run_steps<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Exit {
    let started = std::time::Instant::now();
    for def in steps::<S, W>() {
        let plan = run.plan.as_ref();
        let mut limit = def.budget.limit(plan);
        if def.phase == Phase::Before {
            let left = budget::before_ponr(plan).saturating_sub(started.elapsed());
            limit = Some(limit.map_or(left, |l| l.min(left)));
        }
        run.guard
            .enter(def.step, def.phase, limit, def.budget.stall(plan));
        hang_hook(run, def.step);
        match (def.run)(run) {
            Ok(Next::Go) => {}
            Ok(Next::Leave(exit)) => return exit,
            Err(f) => return run.fail(f),
        }
        if exit_hook(run, def.step) {
            return Exit::TestExit;
        }
    }
    Exit::Migrated
}

/// Lab hook: PID 1 exits right after the named step (the kernel panics and
/// `panic=` reboots), to prove the panic path falls back.
fn exit_hook<S: System, W: Write>(run: &mut Run<'_, S, W>, step: Step) -> bool {
    let name = step.name();
    let hooked = run
        .plan
        .as_ref()
        .is_some_and(|p| p.test.exit_after.as_deref() == Some(name.as_str()));
    if hooked {
        run.log.note(
            Step::Exit,
            Status::Ok,
            &format!("test hook: exiting PID 1 after {name}"),
        );
    }
    hooked
}

/// A lab hook that stops a step forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// `hang-at`: the step hangs, as a dead driver or SD card would; the
    /// guard sees the overrun and reboots by itself.
    Hang,
    /// `wedge-at`: the step hangs and the guard stops judging and petting
    /// too, as when the kernel no longer runs PID 1's threads; only the
    /// hardware watchdog can reset the board.
    Wedge,
}

/// Which stop hook, if any, the plan's test hooks set for `step`.
fn stop_hook(test: &crate::plan::TestHooks, step: Step) -> Option<Stop> {
    let name = step.name();
    let is = |h: &Option<String>| h.as_deref() == Some(name.as_str());
    if is(&test.wedge_at) {
        Some(Stop::Wedge)
    } else if is(&test.hang_at) {
        Some(Stop::Hang)
    } else {
        None
    }
}

/// Lab hooks `hang-at` and `wedge-at` ([`Stop`]): the named step never
/// ends, so the lab proves the guard, or the hardware watchdog, brings the
/// device back by itself.
fn hang_hook<S: System, W: Write>(run: &mut Run<'_, S, W>, step: Step) {
    let Some(stop) = run.plan.as_ref().and_then(|p| stop_hook(&p.test, step)) else {
        return;
    };
    let name = step.name();
    let msg = match stop {
        Stop::Hang => format!("test hook: hanging in {name} until the guard acts"),
        Stop::Wedge => {
            run.guard.finish(crate::guard::Leaving::Reboot);
            format!(
                "test hook: wedged in {name}, the guard stopped with the watchdog armed: \
                 only the hardware watchdog can reset the board"
            )
        }
    };
    run.log.note(step, Status::Begin, &msg);
    loop {
        run.sys.sleep(std::time::Duration::from_secs(1));
    }
}

/// The whole log to the plan's log device, whatever the outcome.
fn copy_log<S: System, W: Write>(run: &mut Run<'_, S, W>, exit: &Exit) {
    let device = run.plan.as_ref().and_then(|p| p.log.device.clone());
    let (Some(at), false) = (device, *exit == Exit::TestExit) else {
        return;
    };
    match oldos::copy_log(run.sys, run.log, &at) {
        Ok(w) => run
            .log
            .note(Step::Status, Status::Ok, &format!("log copied to {w}")),
        Err(e) => run.log.note(
            Step::Status,
            Status::Fail,
            &format!("copying the log to the log device: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests;
