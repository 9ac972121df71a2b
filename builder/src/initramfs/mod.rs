//! The initramfs: a concatenation of newc cpio archives ("segments"), some
//! compressed, that the kernel unpacks into its root filesystem in order.
//!
//! migrd writes a small compressed segment (init, console node, modules,
//! plan) and an uncompressed one for payload files that are compressed
//! already. Output is reproducible: entries sorted with parents first,
//! mtimes and owners zero, inode numbers assigned in order, compressors
//! deterministic.
//!
//! The newc record format comes from the `cpio` crate; segment framing,
//! compression and the reader that walks concatenated segments are here,
//! because no crate handles the kernel's multi-segment layout.

pub mod reader;
pub mod tree;
pub mod writer;

pub use reader::{read_segments, EntryInfo, SegmentInfo};
pub use tree::{Node, Source, Tree};
pub use writer::{write_initramfs, Segment, SegmentCompression};
