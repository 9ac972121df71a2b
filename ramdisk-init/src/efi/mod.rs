//! UEFI variables and boot entries, shared by both stages: stage 1 arms
//! `BootNext` with them, stage 2 deletes the ramdisk's entry and creates the
//! new OS's.

pub mod guid;
mod immutable;
pub mod load_option;
pub mod vars;
