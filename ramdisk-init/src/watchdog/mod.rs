//! What catches a hang in stage 2 (issue 13): the device's hardware
//! watchdog, petted only while the run keeps its deadlines, and the
//! kernel's own hang detectors, fatal before the point of no return.
//!
//! - [`device`]: open, arm, pet and magic-close `/dev/watchdogN`, found by
//!   the identity stage 1 recorded;
//! - [`ioctl`]: the three watchdog ioctls;
//! - [`hang`]: relax the hung-task panic at the point of no return.
//!
//! The step loop opens the watchdog through
//! [`crate::system::System::open_watchdog`] and hands it to the deadline
//! guard ([`crate::guard`]), whose thread pets it while every step keeps
//! its budget; [`crate::system::System::relax_hang_panic`] runs at the
//! point of no return.

pub mod device;
pub mod hang;
pub mod ioctl;

pub use device::Watchdog;
