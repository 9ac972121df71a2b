//! The live guard: a thread that judges the [`Watch`] every tick, pets the
//! hardware watchdog while all is fine and acts when a step overruns. It
//! shares only the watch and the watchdog with the step loop, never
//! waiting on it, so a step stuck in the kernel cannot block it.

use super::verdict::{Verdict, Watch};
use super::{Guard, HardwareWatchdog, Leaving};
use crate::events::Step;
use crate::stage::Phase;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What an overrun leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Before the point of no return (the old OS is whole) or after the
    /// image is written and read back (the new one is): reboot into it.
    Reboot,
    /// During the flash, or when a reboot would start this ramdisk again:
    /// power off.
    PowerOff,
}

/// What the watcher does to the machine when a step overruns.
pub trait Actions: Send + 'static {
    /// `step` overran (`for_`): say so on the console and leave as `how`
    /// says. On a real machine this does not return; if it does, the
    /// watchdog, no longer petted, resets the board.
    fn expire(&mut self, step: Step, for_: Duration, how: Expiry);
}

struct Shared {
    watch: Watch,
    stranded: bool,
    watchdog: Option<Box<dyn HardwareWatchdog>>,
}

/// The guard's handle for the step loop; the thread holds the other.
pub struct Watcher {
    shared: Arc<Mutex<Shared>>,
}

impl Watcher {
    /// Start judging now, every `tick`, acting through `actions`.
    pub fn start<A: Actions>(mut actions: A, tick: Duration) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            watch: Watch::new(Instant::now()),
            stranded: false,
            watchdog: None,
        }));
        let theirs = Arc::clone(&shared);
        std::thread::spawn(move || loop {
            std::thread::sleep(tick);
            let act = {
                let mut s = lock(&theirs);
                let act = judge(s.watch.verdict(Instant::now()), s.stranded);
                if act == Act::Pet {
                    if let Some(w) = s.watchdog.as_mut() {
                        // A failed keepalive is retried next tick; if it
                        // keeps failing the watchdog resets the board.
                        let _ = w.keepalive();
                    }
                }
                act
            };
            match act {
                Act::Pet => {}
                Act::Finished => return,
                Act::Expire(step, for_, how) => return actions.expire(step, for_, how),
            }
        });
        Watcher { shared }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut lock(&self.shared))
    }
}

/// A poisoned lock only means the other side panicked holding it; the
/// watch inside is still the last one written.
fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, PartialEq, Eq)]
enum Act {
    Pet,
    Finished,
    Expire(Step, Duration, Expiry),
}

fn judge(v: Verdict, stranded: bool) -> Act {
    match v {
        Verdict::Fine => Act::Pet,
        Verdict::Finished => Act::Finished,
        Verdict::Overrun { step, phase, for_ } => {
            let how = match phase {
                Phase::Before if stranded => Expiry::PowerOff,
                Phase::Before | Phase::Flashed => Expiry::Reboot,
                Phase::Flashing => Expiry::PowerOff,
            };
            Act::Expire(step, for_, how)
        }
    }
}

impl Guard for Watcher {
    fn enter(&self, step: Step, phase: Phase, limit: Option<Duration>, stall: Option<Duration>) {
        self.with(|s| s.watch.enter(Instant::now(), step, phase, limit, stall));
    }
    fn progress(&self) {
        self.with(|s| s.watch.progress(Instant::now()));
    }
    fn stranded(&self) {
        self.with(|s| s.stranded = true);
    }
    fn adopt(&self, watchdog: Box<dyn HardwareWatchdog>) {
        self.with(|s| s.watchdog = Some(watchdog));
    }
    fn finish(&self, leaving: Leaving) {
        self.with(|s| {
            s.watch.finish();
            if leaving == Leaving::PowerOff {
                if let Some(mut w) = s.watchdog.take() {
                    let _ = w.disarm();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Probe(mpsc::Sender<String>);

    impl Actions for Probe {
        fn expire(&mut self, step: Step, _for: Duration, how: Expiry) {
            let _ = self.0.send(format!("expire {} {how:?}", step.name()));
        }
    }

    /// A watchdog that reports each call on the channel.
    struct Dog(mpsc::Sender<String>);

    impl HardwareWatchdog for Dog {
        fn keepalive(&mut self) -> Result<(), String> {
            let _ = self.0.send("pet".into());
            Ok(())
        }
        fn disarm(&mut self) -> Result<(), String> {
            let _ = self.0.send("disarm".into());
            Ok(())
        }
    }

    fn watcher() -> (Watcher, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        let w = Watcher::start(Probe(tx.clone()), Duration::from_millis(5));
        w.adopt(Box::new(Dog(tx)));
        (w, rx)
    }

    fn first_not_pet(rx: &mpsc::Receiver<String>) -> String {
        loop {
            let m = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            if m != "pet" {
                return m;
            }
        }
    }

    #[test]
    fn pets_while_fine_then_reboots_on_an_overrun_before_the_point_of_no_return() {
        let (w, rx) = watcher();
        w.enter(
            Step::Verify,
            Phase::Before,
            Some(Duration::from_millis(200)),
            None,
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "pet");
        assert_eq!(first_not_pet(&rx), "expire verify Reboot");
        // And it stopped petting: nothing more comes.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_stalled_flash_or_a_stranded_run_powers_off() {
        let (w, rx) = watcher();
        w.enter(
            Step::Flash,
            Phase::Flashing,
            None,
            Some(Duration::from_millis(100)),
        );
        assert_eq!(first_not_pet(&rx), "expire flash PowerOff");
        let (w, rx) = watcher();
        w.stranded();
        w.enter(
            Step::Modules,
            Phase::Before,
            Some(Duration::from_millis(100)),
            None,
        );
        assert_eq!(first_not_pet(&rx), "expire modules PowerOff");
    }

    #[test]
    fn a_hang_after_the_image_is_whole_reboots_into_it() {
        let (w, rx) = watcher();
        w.stranded();
        w.enter(
            Step::Inject,
            Phase::Flashed,
            Some(Duration::from_millis(100)),
            None,
        );
        assert_eq!(first_not_pet(&rx), "expire inject Reboot");
    }

    #[test]
    fn progress_keeps_a_flash_alive_and_finish_stops_the_watch() {
        let (w, rx) = watcher();
        w.enter(
            Step::Flash,
            Phase::Flashing,
            None,
            Some(Duration::from_millis(300)),
        );
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            w.progress();
        }
        w.finish(Leaving::Reboot);
        // Left armed for the reboot: no disarm, and no expiry either.
        std::thread::sleep(Duration::from_millis(100));
        while let Ok(m) = rx.try_recv() {
            assert_eq!(m, "pet");
        }
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_power_off_stops_the_watchdog_before_finish_returns() {
        let (w, rx) = watcher();
        w.enter(
            Step::Flash,
            Phase::Flashing,
            None,
            Some(Duration::from_secs(60)),
        );
        w.finish(Leaving::PowerOff);
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(m);
        }
        assert_eq!(
            got.iter().filter(|m| *m != "pet").collect::<Vec<_>>(),
            ["disarm"]
        );
    }
}
