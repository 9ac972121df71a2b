//! Raspberry Pi one-shot boots: the firmware's `config.txt` dialect, the
//! models and their filters, and the two strategies (tryboot and the
//! config.txt edit) as pure functions. Stage 1 (`builder`'s
//! `migrate::arm::rpi_*`) reads the device and applies the changes;
//! the lab's firmware emulator (`migrd_lab::rpi_firmware`) checks what
//! the firmware would boot from them.

pub mod config;
pub mod effective;
pub mod filter;
pub mod model;
pub mod oneshot;

pub use model::Model;
pub use oneshot::{CurrentBoot, Inputs, RpiError};
