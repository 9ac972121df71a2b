//! Test helpers: the balena API emulator and synthetic balenaOS images.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api_emulator;
pub mod image;

use std::path::PathBuf;

/// A fixture tree under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The migrd binary.
pub fn migrd() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_migrd"))
}
