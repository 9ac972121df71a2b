//! How long each step may take, and on which side of the point of no return
//! it runs. A step that overruns its budget before the point of no return
//! is a hang: the device must end up back in its old OS by itself. After
//! it, only a flash that stops moving bytes counts as a hang.

use crate::plan::Plan;
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
    /// The plan's wait for the target disk, plus 30 s to open it.
    TargetWait,
    /// Reading every payload file: 60 s plus 1 s per 2 MiB (a worn SD card
    /// reads at 10 MiB/s or more; 2 MiB/s is a card that is failing).
    PayloadRead,
    /// No limit on the whole step, but no more than this many seconds
    /// without progress.
    Stall(u64),
}

/// Slowest payload read still counted as progress, bytes per second.
const SLOWEST_READ: u64 = 2 << 20;

impl Budget {
    /// The longest the whole step may take with `plan` (`None` for a step
    /// bounded by progress only). Before the plan is read only fixed
    /// budgets apply.
    pub fn limit(self, plan: Option<&Plan>) -> Option<Duration> {
        let secs = match (self, plan) {
            (Budget::Fixed(s), _) => s,
            (Budget::TargetWait, Some(p)) => u64::from(p.target.wait_secs) + 30,
            (Budget::PayloadRead, Some(p)) => {
                let bytes: u64 = p.payload.iter().map(|f| f.size).sum();
                60 + bytes / SLOWEST_READ
            }
            (Budget::TargetWait | Budget::PayloadRead, None) => 60,
            (Budget::Stall(_), _) => return None,
        };
        Some(Duration::from_secs(secs))
    }

    /// The longest the step may go without progress, if it reports any.
    pub fn stall(self) -> Option<Duration> {
        match self {
            Budget::Stall(s) => Some(Duration::from_secs(s)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::sample_plan;

    #[test]
    fn budgets_follow_the_plan() {
        let mut p = sample_plan();
        p.target.wait_secs = 45;
        let payload: u64 = p.payload.iter().map(|f| f.size).sum();
        assert_eq!(
            Budget::TargetWait.limit(Some(&p)),
            Some(Duration::from_secs(75))
        );
        assert_eq!(
            Budget::PayloadRead.limit(Some(&p)),
            Some(Duration::from_secs(60 + payload / (2 << 20)))
        );
        p.payload[0].size = 700 << 20;
        let big = Budget::PayloadRead.limit(Some(&p)).unwrap_or_default();
        assert!(big >= Duration::from_secs(60 + 350), "{big:?}");
        assert_eq!(Budget::Fixed(7).limit(None), Some(Duration::from_secs(7)));
        assert_eq!(Budget::Stall(300).limit(Some(&p)), None);
        assert_eq!(Budget::Stall(300).stall(), Some(Duration::from_secs(300)));
        assert_eq!(Budget::Fixed(7).stall(), None);
    }
}
