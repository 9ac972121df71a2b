//! `migrd migrate`, `migrd status`, `migrd cancel`.

use crate::commands::migrate_args::MigrateArgs;
use crate::migrate::{self, status};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Run `migrd migrate`.
pub fn run(a: MigrateArgs) -> Result<()> {
    migrate::run(a)
}

/// Arguments of `migrd status` and `migrd cancel`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Root of the system to look at (tests use fixture trees).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `migrd status`.
pub fn status(a: StateArgs) -> Result<()> {
    let s = status::read(&a.root);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("{}", status::describe(&s));
    }
    Ok(())
}

/// Run `migrd cancel`.
pub fn cancel(a: StateArgs) -> Result<()> {
    let done = status::cancel(&a.root)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for l in &done {
            println!("{l}");
        }
        println!("cancelled: the device boots as before");
    }
    Ok(())
}
