//! One module per `migrd` subcommand: its clap arguments and its `run`.

pub mod build;
pub mod inspect;
