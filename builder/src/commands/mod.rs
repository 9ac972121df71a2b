//! One module per `migrd` subcommand: its clap arguments and its `run`.

pub mod build;
pub mod check;
pub mod download;
pub mod inspect;
pub mod migrate;
pub mod migrate_args;
pub mod write_image;
