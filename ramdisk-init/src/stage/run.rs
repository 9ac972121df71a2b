//! What the steps share while stage 2 runs: the machine, the event log, and
//! what earlier steps found (the plan, the target, the flash result).

use super::outcome::Failed;
use crate::events::{EventLog, Step};
use crate::guard::Guard;
use crate::plan::Plan;
use crate::system::System;
use std::io::Write;

/// The state of one stage-2 run, handed from step to step.
pub(crate) struct Run<'a, S: System, W: Write> {
    /// The machine.
    pub sys: &'a mut S,
    /// Where events go.
    pub log: &'a mut EventLog<W>,
    /// Told of each step and of the flash's progress.
    pub guard: &'a dyn Guard,
    /// The plan, once the `plan` step read it.
    pub plan: Option<Plan>,
    /// The target disk's kernel name (`sda`), once found.
    pub disk: Option<String>,
    /// Why the boot change could not be undone, when it could not: a
    /// reboot would start this ramdisk again.
    pub stranded: Option<String>,
    /// Why injection failed, when it did (balenaOS boots unprovisioned).
    pub injected: Option<String>,
}

impl<'a, S: System, W: Write> Run<'a, S, W> {
    /// A run that has found nothing yet.
    pub fn new(sys: &'a mut S, log: &'a mut EventLog<W>, guard: &'a dyn Guard) -> Self {
        Run {
            sys,
            log,
            guard,
            plan: None,
            disk: None,
            stranded: None,
            injected: None,
        }
    }

    /// The plan; a step that runs before the `plan` step is a bug in the
    /// step table, reported as a clean failure rather than a panic.
    pub fn plan(&self, step: Step) -> Result<&Plan, Failed> {
        self.plan
            .as_ref()
            .ok_or_else(|| Failed::clean(step, "internal: no plan read before this step"))
    }

    /// The target disk, found by `find-target`.
    pub fn disk(&self, step: Step) -> Result<String, Failed> {
        self.disk
            .clone()
            .ok_or_else(|| Failed::clean(step, "internal: no target found before this step"))
    }
}
