//! The lab's disk images.
//!
//! - [`legacy`]: the device before migration, Debian bookworm on BIOS +
//!   GRUB (built by `tests/lab/images/debian.sh`, cached by recipe).
//! - [`balena`]: the synthetic balenaOS image that stands in for the real
//!   one (which cannot be downloaded here): balenaOS's MBR partition layout,
//!   booted by BIOS GRUB into `balena-reporter`, which prints what it finds.
//! - [`arm64_legacy`]: the arm64 device before migration, booted by
//!   U-Boot on QEMU's `virt` machine (busybox, Debian's arm64 kernel).
//! - [`data_disk`]: files for a guest on a second disk.

pub mod arm64_legacy;
pub mod balena;
pub mod data_disk;
pub mod legacy;
mod reporter_initramfs;
pub(crate) mod tools;
