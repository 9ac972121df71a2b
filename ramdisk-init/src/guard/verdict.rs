//! The guard's judgement, pure: given what the step loop said and the time
//! now, is the run fine, or has a step overrun its budget?

use crate::events::Step;
use crate::stage::Phase;
use std::time::{Duration, Instant};

/// What the guard concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep petting.
    Fine,
    /// The run is over; nothing to judge.
    Finished,
    /// `step` overran: its whole budget, or its stall budget.
    Overrun {
        /// The step.
        step: Step,
        /// Its phase: before the point of no return the old OS is whole.
        phase: Phase,
        /// How long it has run (or gone without progress).
        for_: Duration,
    },
}

/// The current step and its clocks.
#[derive(Clone, Debug)]
pub struct Watch {
    step: Step,
    phase: Phase,
    started: Instant,
    limit: Option<Duration>,
    stall: Option<Duration>,
    last_progress: Instant,
    finished: bool,
}

impl Watch {
    /// Watching from `now`, before any step (setup's budget applies).
    pub fn new(now: Instant) -> Self {
        Watch {
            step: Step::Start,
            phase: Phase::Before,
            started: now,
            limit: Some(Duration::from_secs(60)),
            stall: None,
            last_progress: now,
            finished: false,
        }
    }

    /// A step starts at `now`.
    pub fn enter(
        &mut self,
        now: Instant,
        step: Step,
        phase: Phase,
        limit: Option<Duration>,
        stall: Option<Duration>,
    ) {
        *self = Watch {
            step,
            phase,
            started: now,
            limit,
            stall,
            last_progress: now,
            finished: false,
        };
    }

    /// The step made progress at `now`.
    pub fn progress(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// The run is over.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The verdict at `now`.
    pub fn verdict(&self, now: Instant) -> Verdict {
        if self.finished {
            return Verdict::Finished;
        }
        let ran = now.saturating_duration_since(self.started);
        let idle = now.saturating_duration_since(self.last_progress);
        let over = |for_| Verdict::Overrun {
            step: self.step,
            phase: self.phase,
            for_,
        };
        match (self.limit, self.stall) {
            (Some(l), _) if ran > l => over(ran),
            (_, Some(s)) if idle > s => over(idle),
            _ => Verdict::Fine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_step_within_its_budget_is_fine_and_one_past_it_overran() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        w.enter(t0, Step::FindTarget, Phase::Before, Some(90 * S), None);
        assert_eq!(w.verdict(t0 + 90 * S), Verdict::Fine);
        assert_eq!(
            w.verdict(t0 + 91 * S),
            Verdict::Overrun {
                step: Step::FindTarget,
                phase: Phase::Before,
                for_: 91 * S
            }
        );
        // A new step restarts the clock.
        w.enter(
            t0 + 91 * S,
            Step::LoadPayload,
            Phase::Before,
            Some(30 * S),
            None,
        );
        assert_eq!(w.verdict(t0 + 100 * S), Verdict::Fine);
    }

    #[test]
    fn the_flash_is_judged_by_progress_only() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        w.enter(t0, Step::Flash, Phase::Flashing, None, Some(300 * S));
        for m in 1..=60 {
            w.progress(t0 + m * 60 * S);
        }
        assert_eq!(w.verdict(t0 + 3600 * S + 299 * S), Verdict::Fine);
        assert!(matches!(
            w.verdict(t0 + 3600 * S + 301 * S),
            Verdict::Overrun {
                step: Step::Flash,
                phase: Phase::Flashing,
                ..
            }
        ));
    }

    #[test]
    fn before_any_step_setup_has_a_minute_and_a_finished_run_is_not_judged() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        assert_eq!(w.verdict(t0 + 59 * S), Verdict::Fine);
        assert!(matches!(w.verdict(t0 + 61 * S), Verdict::Overrun { .. }));
        w.finish();
        assert_eq!(w.verdict(t0 + 3600 * S), Verdict::Finished);
    }
}
