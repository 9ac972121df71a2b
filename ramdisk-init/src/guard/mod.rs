//! The deadline guard: no step of stage 2 may hang forever.
//!
//! The step loop ([`crate::stage`]) tells a [`Guard`] when each step
//! starts, with its phase and budget, and the flash reports progress. A
//! live guard ([`thread::Watcher`]) checks the [`verdict::Watch`] every
//! second from a thread of its own, so a step blocked in the kernel (a
//! driver, a dying SD card, a mount) cannot stop it:
//!
//! - while the verdict is fine it pets the hardware watchdog, when there
//!   is one;
//! - when a step before the point of no return overruns its budget it
//!   stops petting and reboots into the old OS itself (the hardware
//!   watchdog, unpetted, resets the board if even the reboot hangs);
//! - when the flash moves no byte for its stall budget it powers off (the
//!   disk holds no whole OS: the documented outcome of a failed flash).

pub mod live;
pub mod thread;
pub mod verdict;

use crate::events::Step;
use crate::stage::Phase;
use std::time::Duration;

/// A hardware watchdog the guard keeps from firing.
pub trait HardwareWatchdog: Send {
    /// Reset its countdown.
    fn keepalive(&mut self) -> Result<(), String>;
    /// Stop it, where the driver allows (magic close).
    fn disarm(&mut self) -> Result<(), String>;
}

/// How PID 1 leaves once the run is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaving {
    /// A reboot: the hardware watchdog stays armed (unpetted), so a reboot
    /// that hangs in its sync still resets the machine.
    Reboot,
    /// A power-off: the watchdog is stopped first, or it would reset the
    /// machine into what powering off avoids (a half-written disk, or this
    /// ramdisk again).
    PowerOff,
}

/// What the step loop tells the guard.
pub trait Guard {
    /// `step` starts now: it may take `limit` in all (`None`: no overall
    /// limit) and go `stall` without progress (`None`: it reports none).
    fn enter(&self, step: Step, phase: Phase, limit: Option<Duration>, stall: Option<Duration>);
    /// The current step made progress (the flash moved bytes).
    fn progress(&self);
    /// Pet `watchdog` from now on, while every step keeps its budget.
    fn adopt(&self, watchdog: Box<dyn HardwareWatchdog>);
    /// The run is over: stop judging and petting; before a power-off, stop
    /// the watchdog (done when this returns).
    fn finish(&self, leaving: Leaving);
    /// The boot change could not be undone: a reboot would start this
    /// ramdisk again, so a hang must power off instead.
    fn stranded(&self);
}

/// A guard that records what it was told, for tests of the step loop.
#[derive(Default)]
pub struct Recorder {
    /// Every `enter`, in order.
    pub entered: std::sync::Mutex<Vec<(Step, Phase, Option<Duration>)>>,
    /// How many `progress` calls.
    pub progress: std::sync::atomic::AtomicU64,
    /// How the run said it leaves, once it did.
    pub finished: std::sync::Mutex<Option<Leaving>>,
    /// Whether a watchdog was adopted.
    pub adopted: std::sync::atomic::AtomicBool,
}

impl Guard for Recorder {
    fn enter(&self, step: Step, phase: Phase, limit: Option<Duration>, _stall: Option<Duration>) {
        if let Ok(mut e) = self.entered.lock() {
            e.push((step, phase, limit));
        }
    }
    fn progress(&self) {
        self.progress
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn adopt(&self, _watchdog: Box<dyn HardwareWatchdog>) {
        self.adopted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn finish(&self, leaving: Leaving) {
        if let Ok(mut f) = self.finished.lock() {
            *f = Some(leaving);
        }
    }
    fn stranded(&self) {}
}
