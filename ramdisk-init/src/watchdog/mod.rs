//! What catches a hang in stage 2 (issue 13): the device's hardware
//! watchdog, petted only while the run keeps its deadlines, and the
//! kernel's own hang detectors, fatal before the point of no return.
//!
//! - [`device`]: open, arm, pet and magic-close `/dev/watchdogN`, found by
//!   the identity stage 1 recorded;
//! - [`ioctl`]: the three watchdog ioctls;
//! - [`pacer`]: the pure pet-or-not rule over an injected clock;
//! - [`hang`]: relax the hung-task panic at the point of no return.
//!
//! The step loop reaches all of this through [`crate::system::System`]'s
//! `arm_watchdog`, `pet_watchdog`, `disarm_watchdog`, `relax_hang_panic`
//! and `reboot_now`.

pub mod device;
pub mod hang;
pub mod ioctl;
pub mod pacer;

pub use device::Watchdog;
pub use pacer::{Clock, MonotonicClock, Overdue, Pacer, Verdict};
