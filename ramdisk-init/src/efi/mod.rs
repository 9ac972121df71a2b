//! UEFI variables and boot entries, shared by both stages: stage 1 arms
//! `BootNext` with them, stage 2 deletes the ramdisk's entry and creates the
//! new OS's.

/// Description of the ramdisk's one-shot entry (stage 1 creates it, stage 2
/// removes it).
pub const ONESHOT_DESCRIPTION: &str = "migrd one-shot";

pub mod guid;
mod immutable;
pub mod load_option;
pub mod setup;
pub mod table;
pub mod vars;
