//! How a run ends: the [`Exit`] PID 1 acts on, the [`Failed`] a step
//! returns, and the one place that turns a failure into an exit
//! ([`Run::fail`]).
//!
//! Failures are classified by what they did to the target, not by which
//! step raised them:
//!
//! | kind | what is on the disk | exit |
//! |---|---|---|
//! | [`Damage::None`] | the old OS, untouched | status for the old OS, reboot into it ([`Exit::Fallback`]), or power off when the boot change could not be undone ([`Exit::Stranded`]) |
//! | [`Damage::Partial`] | neither OS whole | power off ([`Exit::FlashFailed`]) |

use super::run::Run;
use crate::events::{Status, Step};
use crate::oldos::{self, Outcome};
use crate::system::System;
use std::io::Write;

/// How PID 1 leaves after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// balenaOS is on the disk: reboot into it.
    Migrated,
    /// Pretend run passed: reboot into the old OS.
    PretendDone,
    /// A step failed before anything was written: reboot into the old OS.
    Fallback {
        /// The step that failed.
        step: Step,
        /// Why.
        reason: String,
    },
    /// Flashing failed after writing: the disk holds neither OS whole, so
    /// power off instead of booting garbage.
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

impl Exit {
    /// Whether PID 1 reboots or powers off after this exit (the guard
    /// stops the hardware watchdog before a power-off only).
    pub fn leaving(&self) -> crate::guard::Leaving {
        use crate::guard::Leaving;
        match self {
            Exit::FlashFailed { .. } | Exit::Stranded { .. } => Leaving::PowerOff,
            Exit::Migrated | Exit::PretendDone | Exit::Fallback { .. } | Exit::TestExit => {
                Leaving::Reboot
            }
        }
    }
}

/// What a failure did to the target disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Nothing was written: the old OS is whole.
    None,
    /// Writes reached the disk and the image is not whole.
    Partial,
}

/// A step's failure: which step, why, and what it did to the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// The step.
    pub step: Step,
    /// Why, naming the input and what to do.
    pub reason: String,
    /// What is on the disk now.
    pub damage: Damage,
}

impl Failed {
    /// A failure that wrote nothing.
    pub fn clean(step: Step, reason: impl Into<String>) -> Self {
        Failed {
            step,
            reason: reason.into(),
            damage: Damage::None,
        }
    }

    /// A failure after writes that left no whole OS.
    pub fn partial(step: Step, reason: impl Into<String>) -> Self {
        Failed {
            step,
            reason: reason.into(),
            damage: Damage::Partial,
        }
    }
}

impl<S: System, W: Write> Run<'_, S, W> {
    /// The one decision from a failure to an exit (see the module table).
    pub(crate) fn fail(&mut self, f: Failed) -> Exit {
        self.log.note(f.step, Status::Fail, &f.reason);
        match f.damage {
            Damage::Partial => {
                self.log.note(Step::Done, Status::Fail, &f.reason);
                Exit::FlashFailed { reason: f.reason }
            }
            Damage::None => {
                self.leave_word(Outcome::Fallback, f.step, &f.reason);
                match self.stranded.take() {
                    Some(d) => Exit::Stranded {
                        step: f.step,
                        reason: format!("{}; and the boot change was not undone: {d}", f.reason),
                    },
                    None => Exit::Fallback {
                        step: f.step,
                        reason: f.reason,
                    },
                }
            }
        }
    }

    /// Record `outcome` for the old OS (`migrd status` reads it), when the
    /// plan says where; a failure to record is logged only.
    pub(crate) fn leave_word(&mut self, outcome: Outcome, step: Step, reason: &str) {
        let Some(at) = self.plan.as_ref().and_then(|p| p.status.clone()) else {
            return;
        };
        let step_name = step.name();
        self.log.note(
            Step::Status,
            Status::Begin,
            "recording the result for the old OS",
        );
        match oldos::record(self.sys, self.log, &at, outcome, &step_name, reason) {
            Ok(where_) => self.log.note(Step::Status, Status::Ok, &where_),
            Err(e) => self.log.note(Step::Status, Status::Fail, &e),
        }
    }
}
