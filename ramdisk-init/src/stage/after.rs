//! The steps after the point of no return: flash, make the kernel see the
//! new table, the firmware entry, injection.
//!
//! Only the flash can fail the run, and how depends on the disk (see
//! [`super::outcome`]): nothing written goes back to the old OS; a partial
//! write is retried while retrying can help, then powers off. Once the
//! image is written and read back, balenaOS boots whatever else fails:
//! a kernel that keeps the old table gets the new partitions one by one,
//! a failed boot entry or injection is logged.

use super::outcome::Failed;
use super::run::Run;
use super::{Next, FLASH_ATTEMPTS};
use crate::events::{Status, Step};
use crate::inject;
use crate::system::{FlashFailure, FlashProgress, Flashed, System};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Write the image, read it back; retried while retrying can help.
pub(crate) fn flash<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let disk = run.disk(Step::Flash)?;
    let image = run
        .plan(Step::Flash)?
        .image()
        .map(|i| i.path().trim_start_matches('/').to_string())
        .ok_or_else(|| Failed::clean(Step::Flash, "internal: no image in the plan"))?;
    let src = run.sys.payload_root().join(image);
    let mut touched = false;
    for attempt in 1..=FLASH_ATTEMPTS {
        run.log
            .emit(Step::Flash, Status::Begin, "", json!({"attempt": attempt}));
        let e = match flash_once(run, &src, &disk) {
            Ok(f) => {
                run.log.emit(
                    Step::Flash,
                    Status::Ok,
                    "image written and read back",
                    json!(f),
                );
                return Ok(Next::Go);
            }
            Err(e) => e,
        };
        run.log.emit(
            Step::Flash,
            Status::Fail,
            &e.reason,
            json!({"attempt": attempt, "wrote": e.wrote, "retry": e.retry}),
        );
        touched |= e.wrote;
        if let Some(f) = give_up(&e, touched) {
            return Err(f);
        }
    }
    Err(Failed::partial(
        Step::Flash,
        format!("flashing failed {FLASH_ATTEMPTS} times; the device needs manual recovery"),
    ))
}

/// Whether a failed attempt ends the flash: nothing written so far (the
/// old OS is whole: go back to it), or a failure that repeats itself.
fn give_up(e: &FlashFailure, touched: bool) -> Option<Failed> {
    if !touched {
        return Some(Failed::clean(
            Step::Flash,
            format!("{}; nothing was written, the old OS is whole", e.reason),
        ));
    }
    (!e.retry).then(|| {
        Failed::partial(
            Step::Flash,
            format!(
                "{}; retrying cannot help (the same input fails the same way), the device needs manual recovery",
                e.reason
            ),
        )
    })
}

/// One flash attempt, its progress logged every 5 s.
fn flash_once<S: System, W: Write>(
    run: &mut Run<'_, S, W>,
    src: &Path,
    disk: &str,
) -> Result<Flashed, FlashFailure> {
    let mut last = Instant::now();
    let log = &mut *run.log;
    let guard = run.guard;
    let mut progress = |p: FlashProgress| {
        guard.progress();
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            log.emit(Step::Flash, Status::Progress, "", json!(p));
        }
    };
    let expected = run.plan.as_ref().and_then(|p| p.image_decoded.as_ref());
    run.sys.flash(src, expected, disk, &mut progress)
}

/// Make the kernel see the new table. When it keeps the old one (a
/// partition still open), add the new partitions one by one from the table
/// just written, so injection can find them; never fails the run.
pub(crate) fn reread_partitions<S: System, W: Write>(
    run: &mut Run<'_, S, W>,
) -> Result<Next, Failed> {
    let disk = run.disk(Step::RereadPartitions)?;
    let Err(e) = run.sys.reread_partitions(&disk) else {
        run.log.note(
            Step::RereadPartitions,
            Status::Ok,
            "kernel sees the new partition table",
        );
        return Ok(Next::Go);
    };
    run.log.note(
        Step::RereadPartitions,
        Status::Fail,
        &format!("{e}; adding the new partitions one by one"),
    );
    let added = run
        .sys
        .partition_table(&disk)
        .and_then(|t| run.sys.add_partitions(&disk, &t).map(|()| t.len()));
    match added {
        Ok(n) => run.log.note(
            Step::RereadPartitions,
            Status::Ok,
            &format!("the {n} partitions of the written table added to /dev/{disk}"),
        ),
        Err(e) => run.log.note(
            Step::RereadPartitions,
            Status::Fail,
            &format!("{e}; balenaOS is whole and boots, but injection cannot reach its partitions"),
        ),
    }
    Ok(Next::Go)
}

/// The new OS's firmware boot entry (UEFI). A failure is logged only: the
/// new OS is whole and the firmware falls back to `\EFI\BOOT\bootx64.efi`.
pub(crate) fn efi_setup<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let Some(setup) = run.plan(Step::EfiSetup)?.efi_setup.clone() else {
        return Ok(Next::Go);
    };
    let disk = run.disk(Step::EfiSetup)?;
    match crate::efi::setup::run(run.sys, &disk, &setup) {
        Ok(done) => run.log.emit(
            Step::EfiSetup,
            Status::Ok,
            "balenaOS boot entry first in BootOrder",
            json!({ "done": done }),
        ),
        Err(e) => run.log.note(
            Step::EfiSetup,
            Status::Fail,
            &format!("{e}; the firmware will fall back to \\EFI\\BOOT\\bootx64.efi on the disk"),
        ),
    }
    Ok(Next::Go)
}

/// Config, network profiles, backup and this log into the new OS; tried 3
/// times, a failure is logged and balenaOS boots anyway.
pub(crate) fn inject<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    let disk = run.disk(Step::Inject)?;
    let plan = run.plan(Step::Inject)?.inject.clone();
    let mut last_err = None;
    for attempt in 1..=3 {
        let history = run.log.history.join("\n") + "\n";
        let extra = [(inject::LOG_PATH.to_string(), history.into_bytes())];
        match inject::run(run.sys, &disk, &plan, &extra) {
            Ok(done) => {
                run.log
                    .emit(Step::Inject, Status::Ok, "", json!({"written": done}));
                last_err = None;
                break;
            }
            Err(e) => {
                run.log
                    .emit(Step::Inject, Status::Fail, &e, json!({"attempt": attempt}));
                last_err = Some(e);
                run.sys.sleep(Duration::from_secs(1));
            }
        }
    }
    run.injected = last_err;
    Ok(Next::Go)
}

/// The end of a migration: say whether balenaOS was provisioned.
pub(crate) fn done<S: System, W: Write>(run: &mut Run<'_, S, W>) -> Result<Next, Failed> {
    match run.injected.take() {
        None => run
            .log
            .note(Step::Done, Status::Ok, "balenaOS flashed and provisioned"),
        Some(e) => run.log.note(
            Step::Done,
            Status::Fail,
            &format!("balenaOS flashed but not provisioned: {e}"),
        ),
    }
    Ok(Next::Go)
}
