//! The U-Boot one-shot strategy.
//!
//! U-Boot's distro boot scans each boot partition for, in order,
//! `/extlinux/extlinux.conf`, `/boot.scr.uimg`, `/boot.scr`, then the same
//! under `/boot/`, and runs the first it finds. migrd puts its own boot
//! script where it runs first ([`detect`] says where, or why it cannot),
//! and a flag file next to it. The script clears the flag and writes it
//! back with `fatwrite`/`ext4write` *before* loading the ramdisk, then
//! boots the ramdisk; when the flag is 0 (every later boot) or cannot be
//! written, it hands over to the board's own boot file. So the ramdisk
//! boots once, and any reset afterwards boots the old OS, with nothing for
//! stage 2 to undo.
//!
//! Boot counting (`bootlimit`/`altbootcmd`) needs no part in the one-shot:
//! the flag is cleared before the ramdisk starts, so a hang or panic of
//! the ramdisk already ends in the old OS on the next reset. [`env`] and
//! [`fw_config`] read the U-Boot environment through `/etc/fw_env.config`
//! so `migrd check` can report it (and whether the board counts boots).
//!
//! Where no self-clearing path exists, [`decide`] refuses unless the
//! operator accepted the restore-first mode ([`restore_first`]): the
//! board's own extlinux.conf or uEnv.txt is edited and stage 2 restores it
//! first thing; where the board counts boots, [`bootcount`] arms its
//! counter too, so a ramdisk that never reaches the restore ends in the
//! board's `altbootcmd` after `bootlimit` boots. Both `migrd check` and `migrd migrate` go through
//! [`decide`], so they cannot disagree.

pub mod bootcount;
pub mod decide;
pub mod detect;
pub mod env;
pub mod fw_config;
pub mod oneshot;
pub mod restore_first;
pub mod script;

pub use decide::{decide, BoardFile, Decision, Edit, Refusal};
pub use detect::{detect, BootFs, Flow, UbootError, UbootFacts};
pub use oneshot::{arm, ArmInputs};
