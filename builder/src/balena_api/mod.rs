//! The balena API calls migrd makes (the subset in DESIGN.md): reachability,
//! host-OS versions for a device type, the device-type contract (flasher or
//! not), the image download, and changing a device's type.
//!
//! Every call sends `Authorization: Bearer <apiKey|deviceApiKey>`. Tests run
//! against an emulator of these endpoints (`builder/tests/support`), not the
//! real API: there is no internet in CI.

pub mod client;
pub mod download;
pub mod versions;

pub use client::{ApiError, Client};
