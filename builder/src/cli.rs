//! The `migrd` command line. Each subcommand's arguments live with its
//! implementation in `commands/`; this file only lists them.

use crate::commands;
use clap::{Parser, Subcommand};

/// migrd: move a running Linux device onto balenaOS through a one-shot
/// migration ramdisk, with fallback to the old OS.
#[derive(Debug, Parser)]
#[command(name = "migrd", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands of `migrd`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate this device to balenaOS: check, build the ramdisk, arm a one-shot boot, reboot.
    Migrate(commands::migrate_args::MigrateArgs),
    /// Show whether a migration is armed and what the last ramdisk run reported.
    Status(commands::migrate::StateArgs),
    /// Undo an armed migration: every file migrd changed gets its old bytes back.
    Cancel(commands::migrate::StateArgs),
    /// Build a migration ramdisk offline, for a device type, with no device at hand.
    Build(commands::build::BuildArgs),
    /// Show the segments, entries and plan of a migrd initramfs.
    Inspect(commands::inspect::InspectArgs),
    /// Probe the device and run every pre-flight check; change nothing.
    Check(commands::check::CheckArgs),
    /// Download the balenaOS image for the fleet's device type and stop.
    Download(commands::download::DownloadArgs),
    /// Write an image (raw, .gz, .zst, .xz, .zip) to a disk or file with stage 2's flash engine, verified.
    WriteImage(commands::write_image::WriteImageArgs),
}

impl Command {
    /// Run the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Migrate(a) => commands::migrate::run(a),
            Command::Status(a) => commands::migrate::status(a),
            Command::Cancel(a) => commands::migrate::cancel(a),
            Command::Build(a) => commands::build::run(a),
            Command::Inspect(a) => commands::inspect::run(a),
            Command::Check(a) => commands::check::run(a),
            Command::Download(a) => commands::download::run(a),
            Command::WriteImage(a) => commands::write_image::run(a),
        }
    }
}
