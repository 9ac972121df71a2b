//! The flash engine: writes a disk image, compressed or not, to a block
//! device or a file, as fast as the slower of decoding and the disk allows,
//! and verified. Stage 2 runs it after the point of no return; `migrd
//! write-image` runs the same code on any machine.
//!
//! A chain of small adapters, one file each:
//! - [`format`] sniffs the container by magic; [`source`] opens it (finding
//!   the image in a [`zip`](source) archive) and stacks the decoder:
//!   [`gzip`], [`zstd`], [`xz`] (each decodes every member/frame/stream and
//!   rejects trailing garbage, see [`garbage`]), over a [`peek`] reader and
//!   a [`counting`] one for progress;
//! - [`size`] and [`extent`] learn the decoded size from metadata and from
//!   the image's own partition table, [`limit`] stops the stream at the
//!   target's end;
//! - [`pipeline`] decodes on one thread into [`aligned`] chunks while
//!   [`engine`] writes them on another, [`digest`] hashing as it goes;
//! - [`device`] writes with `O_DIRECT`, reads the sector size and size
//!   through [`ioctl`], and [`reread`] makes the kernel see the new table;
//! - [`engine`] holds the first MiB back until the rest is written and read
//!   back, and reports [`progress`]; failures are [`error::FlashError`]s;
//! - [`touched`] tells the caller whether a failed run wrote anything, and
//!   [`reread_later`] leaves the table re-read to it (stage 2's own step);
//!   [`error::FlashError::retryable`] says whether trying again can help;
//! - [`expect`] holds the caller's decoded size and SHA-256 (stage 1's,
//!   from the plan) and compares them with what was written.

pub mod aligned;
pub mod counting;
pub mod device;
pub mod digest;
pub mod engine;
pub mod error;
pub mod expect;
pub mod extent;
pub mod format;
pub mod garbage;
pub mod gzip;
pub mod ioctl;
pub mod limit;
pub mod peek;
pub mod pipeline;
pub mod progress;
pub mod reread;
pub mod reread_later;
pub mod size;
pub mod source;
pub mod touched;
pub mod xz;
pub mod zstd;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod memdev;
#[cfg(test)]
pub(crate) mod test_loop;

pub use device::{Device, FileDevice, OpenMode};
pub use engine::{write_image, Options, Report};
pub use error::FlashError;
pub use format::Format;
pub use progress::{Phase, Progress};
