//! How long each step may take, and on which side of the point of no return
//! it runs. A step that overruns its budget before the point of no return
//! is a hang: the device must end up back in its old OS by itself. While
//! flashing, only a flash that stops moving bytes counts as a hang.
//!
//! The numbers come from the plan's `deadlines` (stage 1 fits the target
//! wait into them); before the plan is read, and for plans that predate
//! them, the defaults of [`Deadlines`] apply.

use crate::plan::{Deadlines, Plan};
use std::time::Duration;

/// Which side of the point of no return a step runs on, and what is on
/// the disk meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The old OS is whole: any failure or hang goes back to it.
    Before,
    /// The disk is being rewritten: neither OS is whole.
    Flashing,
    /// The new OS is written and read back: whatever happens, boot it.
    Flashed,
}

/// A step's time budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// This many seconds.
    Fixed(u64),
    /// The plan's `deadlines.modules_secs`.
    Modules,
    /// The plan's `deadlines.find_target_secs` (its target wait plus a
    /// minute).
    FindTarget,
    /// The plan's `deadlines.verify_secs`.
    Verify,
    /// No limit on the whole step, but no more than the plan's
    /// `deadlines.flash_stall_secs` without progress.
    FlashStall,
}

impl Budget {
    /// The longest the whole step may take with `plan` (`None` for a step
    /// bounded by progress only).
    pub fn limit(self, plan: Option<&Plan>) -> Option<Duration> {
        let d = deadlines(plan);
        let secs = match self {
            Budget::Fixed(s) => s,
            Budget::Modules => d.modules_secs.into(),
            Budget::FindTarget => d.find_target_secs.into(),
            Budget::Verify => d.verify_secs.into(),
            Budget::FlashStall => return None,
        };
        Some(Duration::from_secs(secs))
    }

    /// The longest the step may go without progress, if it reports any.
    pub fn stall(self, plan: Option<&Plan>) -> Option<Duration> {
        match self {
            Budget::FlashStall => {
                Some(Duration::from_secs(deadlines(plan).flash_stall_secs.into()))
            }
            _ => None,
        }
    }
}

/// The whole run up to the point of no return, all steps together.
pub fn before_ponr(plan: Option<&Plan>) -> Duration {
    Duration::from_secs(deadlines(plan).before_ponr_secs.into())
}

fn deadlines(plan: Option<&Plan>) -> Deadlines {
    plan.map(|p| p.deadlines.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::sample_plan;

    #[test]
    fn budgets_follow_the_plans_deadlines() {
        let mut p = sample_plan();
        p.deadlines = Deadlines::for_target_wait(45);
        p.deadlines.flash_stall_secs = 120;
        let s = Duration::from_secs;
        assert_eq!(Budget::FindTarget.limit(Some(&p)), Some(s(105)));
        assert_eq!(Budget::Modules.limit(Some(&p)), Some(s(180)));
        assert_eq!(Budget::Verify.limit(Some(&p)), Some(s(900)));
        assert_eq!(Budget::FlashStall.limit(Some(&p)), None);
        assert_eq!(Budget::FlashStall.stall(Some(&p)), Some(s(120)));
        assert_eq!(Budget::Fixed(7).limit(None), Some(s(7)));
        assert_eq!(Budget::Fixed(7).stall(Some(&p)), None);
        // Before the plan is read: the defaults.
        assert_eq!(Budget::FlashStall.stall(None), Some(s(300)));
        assert_eq!(before_ponr(None), s(1800));
    }
}
