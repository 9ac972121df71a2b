//! The migrd lab: everything end-to-end tests need to boot real kernels
//! under QEMU and read what happened.
//!
//! - [`paths`]: where the lab cache, the Debian kernel and the built
//!   binaries are (prepared by `tests/lab/setup.sh`).
//! - [`qemu`]: start QEMU with the serial console in a file, wait for exit
//!   or a pattern, kill on timeout, keep the logs.
//! - [`events`]: the JSON step events migrd-init prints on the console.
//! - [`power_cut`]: cutting a device's power at a stage-2 event, and
//!   putting its disks back to cut again from the same point.
//! - [`rpi_firmware`]: an emulator of the Raspberry Pi firmware's file
//!   selection (not the firmware), for the Raspberry Pi scenarios.
//! - [`scenario_rpi`]: a Raspberry Pi 3 booted in QEMU's `raspi3b` with
//!   what the firmware model selects.
//! - [`scenario_uboot`]: the arm64 U-Boot device prepared for a migration
//!   (like `scenario` for the x86 devices).
//! - [`slots`]: a machine-wide limit on scenarios running at once.
//! - [`uefi_vars`]: an OVMF variable store read from the host.
//! - [`warm_start`]: a scenario's first Debian boot resumed from a snapshot.

pub mod events;
pub mod guest;
#[cfg(feature = "images")]
pub mod images;
pub mod paths;
#[cfg(feature = "images")]
pub mod power_cut;
pub mod qemu;
pub mod report;
pub mod rpi_firmware;
#[cfg(feature = "images")]
pub mod scenario;
#[cfg(feature = "images")]
pub mod scenario_rpi;
#[cfg(feature = "images")]
pub mod scenario_uboot;
pub mod slots;
pub mod uefi_vars;
#[cfg(feature = "images")]
pub mod warm_start;
