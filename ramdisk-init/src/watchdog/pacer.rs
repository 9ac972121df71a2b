//! When to pet the watchdog: pure bookkeeping over an injected clock, so
//! the rule is tested without waiting. The watchdog is petted only while
//! the run keeps its promises: the current step within its deadline, its
//! progress not stalled (for steps that report progress, the flash), and
//! the whole run within its deadline until the point of no return. Once a
//! promise is broken the pacer says [`Verdict::Overdue`] and the caller
//! stops petting (the watchdog then resets the machine within its
//! timeout, even if the caller is stuck) and, if it still can, fails the
//! step itself.

use std::time::{Duration, Instant};

/// Monotonic time, injected so tests need no sleeping.
pub trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock, from the moment it was made.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Which promise was broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Overdue {
    /// The step ran past its deadline.
    Step(String),
    /// The step reported no progress for its stall limit.
    Stalled(String),
    /// The run did not reach the point of no return in time.
    BeforePonr,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pet the watchdog (and call [`Pacer::petted`]).
    Pet,
    /// All is well; the last pet is recent enough.
    Wait,
    /// Stop petting.
    Overdue(Overdue),
}

#[derive(Clone, Debug)]
struct Step {
    name: String,
    deadline_at: Duration,
    stall: Option<Duration>,
    last_progress: Duration,
}

/// The pet-or-not rule for one run.
#[derive(Clone, Debug)]
pub struct Pacer {
    interval: Duration,
    before_ponr_at: Option<Duration>,
    step: Option<Step>,
    last_pet: Option<Duration>,
}

impl Pacer {
    /// A run started at `start` with a watchdog timeout of `timeout_secs`
    /// (pets come every third of it, at least a second apart) and the
    /// deadline `before_ponr` for reaching the point of no return.
    pub fn new(timeout_secs: u32, start: Duration, before_ponr: Duration) -> Pacer {
        Pacer {
            interval: Duration::from_secs(u64::from(timeout_secs / 3).max(1)),
            before_ponr_at: Some(start.saturating_add(before_ponr)),
            step: None,
            last_pet: None,
        }
    }

    /// A step starts at `now`: it must end within `deadline`, and, when
    /// `stall` is given, report progress at least that often.
    pub fn start_step(
        &mut self,
        now: Duration,
        name: &str,
        deadline: Duration,
        stall: Option<Duration>,
    ) {
        self.step = Some(Step {
            name: name.to_string(),
            deadline_at: now.saturating_add(deadline),
            stall,
            last_progress: now,
        });
    }

    /// The step ended; between steps only the whole run's deadline holds.
    pub fn end_step(&mut self) {
        self.step = None;
    }

    /// The step made progress at `now` (bytes written, a disk appeared).
    pub fn progress(&mut self, now: Duration) {
        if let Some(s) = &mut self.step {
            s.last_progress = now;
        }
    }

    /// The point of no return is passed: going back is no longer possible,
    /// so the whole-run deadline no longer applies (step deadlines do).
    pub fn passed_ponr(&mut self) {
        self.before_ponr_at = None;
    }

    /// The watchdog was petted at `now`.
    pub fn petted(&mut self, now: Duration) {
        self.last_pet = Some(now);
    }

    /// What to do at `now`.
    pub fn verdict(&self, now: Duration) -> Verdict {
        if let Some(o) = self.overdue(now) {
            return Verdict::Overdue(o);
        }
        match self.last_pet {
            Some(t) if now.saturating_sub(t) < self.interval => Verdict::Wait,
            _ => Verdict::Pet,
        }
    }

    fn overdue(&self, now: Duration) -> Option<Overdue> {
        if self.before_ponr_at.is_some_and(|at| now >= at) {
            return Some(Overdue::BeforePonr);
        }
        let s = self.step.as_ref()?;
        if now >= s.deadline_at {
            return Some(Overdue::Step(s.name.clone()));
        }
        match s.stall {
            Some(limit) if now.saturating_sub(s.last_progress) >= limit => {
                Some(Overdue::Stalled(s.name.clone()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn pets_every_third_of_the_timeout() {
        let mut p = Pacer::new(60, s(0), s(1000));
        assert_eq!(p.verdict(s(0)), Verdict::Pet);
        p.petted(s(0));
        assert_eq!(p.verdict(s(19)), Verdict::Wait);
        assert_eq!(p.verdict(s(20)), Verdict::Pet);
        let mut short = Pacer::new(2, s(0), s(1000));
        short.petted(s(0));
        assert_eq!(short.verdict(s(1)), Verdict::Pet, "at least every second");
    }

    #[test]
    fn a_step_past_its_deadline_stops_the_petting() {
        let mut p = Pacer::new(60, s(0), s(1000));
        p.start_step(s(10), "modules", s(180), None);
        p.petted(s(150));
        assert_eq!(p.verdict(s(189)), Verdict::Pet);
        assert_eq!(
            p.verdict(s(190)),
            Verdict::Overdue(Overdue::Step("modules".into()))
        );
        p.end_step();
        assert_eq!(p.verdict(s(190)), Verdict::Pet);
    }

    #[test]
    fn a_step_without_progress_for_its_stall_limit_is_overdue() {
        let mut p = Pacer::new(60, s(0), s(1000));
        p.passed_ponr();
        p.start_step(s(0), "flash", s(100_000), Some(s(300)));
        p.progress(s(250));
        assert_eq!(p.verdict(s(549)), Verdict::Pet);
        assert_eq!(
            p.verdict(s(550)),
            Verdict::Overdue(Overdue::Stalled("flash".into()))
        );
        p.progress(s(550));
        assert_eq!(p.verdict(s(551)), Verdict::Pet);
    }

    #[test]
    fn the_whole_run_deadline_holds_until_the_point_of_no_return() {
        let mut p = Pacer::new(60, s(5), s(100));
        assert_eq!(p.verdict(s(104)), Verdict::Pet);
        assert_eq!(p.verdict(s(105)), Verdict::Overdue(Overdue::BeforePonr));
        p.start_step(s(105), "flash", s(1000), None);
        assert_eq!(p.verdict(s(106)), Verdict::Overdue(Overdue::BeforePonr));
        p.passed_ponr();
        assert_eq!(p.verdict(s(106)), Verdict::Pet);
    }

    #[test]
    fn the_monotonic_clock_does_not_go_back() {
        let c = MonotonicClock::default();
        let a = c.now();
        assert!(c.now() >= a);
    }
}
