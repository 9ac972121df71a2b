//! migrd, stage 1: everything that runs before the reboot, and the offline
//! ramdisk builder. The binary in `main.rs` is a thin shell over this library.

pub mod balena_api;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod elf_check;
pub mod fs_checkpoint;
pub mod init_binary;
pub mod initramfs;
pub mod inputs;
pub mod journal;
pub mod kconfig;
pub mod kernel_source;
pub mod kmod;
pub mod migrate;
pub mod payload;
pub mod probe;
pub mod ramdisk;
