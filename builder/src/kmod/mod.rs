//! Kernel modules for the ramdisk: which files to carry, in which order.
//!
//! Stage 2 has no modprobe; it loads exactly the files stage 1 lists, in
//! that order. This module reads a kernel release's `modules.dep`,
//! `modules.builtin`, `modules.alias` and `modules.softdep`, resolves a
//! wanted set to files with every dependency before its user, and skips
//! what is built in.

pub mod closure;
pub mod index;
pub mod needed;
pub mod wanted;

pub use closure::{resolve, Closure, ModuleFile};
pub use index::ModuleIndex;
pub use needed::Needed;
