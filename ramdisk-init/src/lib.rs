//! migrd-init: stage 2 of migrd.
//!
//! The binary runs as PID 1 inside the migration ramdisk. This library holds
//! what both stages must agree on — the [`plan::Plan`] — and the pieces of
//! stage 2 that are plain logic and therefore testable on any host: payload
//! verification, target-disk matching, step events.

pub mod arch;
pub mod disarm;
pub mod efi;
pub mod events;
pub mod flash;
pub mod fsfile;
pub mod fsprobe;
pub mod guard;
pub mod inject;
pub mod live;
pub mod oldos;
pub mod partadd;
pub mod partfind;
pub mod partuuid;
pub mod payload;
pub mod plan;
pub mod stage;
pub mod system;
pub mod target;
pub mod watchdog;
