//! `migrd inspect FILE`: list the segments of an initramfs (offset, length,
//! compression), their entries (mode, size, path) and the plan inside.

use crate::initramfs::read_segments;
use anyhow::{Context, Result};
use clap::Args;
use migrd_init::plan::Plan;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `migrd inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The initramfs to inspect.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `migrd inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let (segments, found) = read_segments(&a.file, &mut |n| n == "plan.json")?;
    let plan = match found.into_iter().next() {
        Some((_, bytes)) => {
            let text = String::from_utf8(bytes).context("plan.json is not UTF-8")?;
            Some(match Plan::from_json(&text) {
                Ok(p) => serde_json::to_value(p)?,
                // Show what is there even when this migrd cannot use it.
                Err(e) => {
                    serde_json::json!({"error": e.to_string(), "raw": serde_json::from_str::<serde_json::Value>(&text).ok()})
                }
            })
        }
        None => None,
    };
    let mut o = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({"file": a.file, "segments": segments, "plan": plan});
        writeln!(o, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    for (i, s) in segments.iter().enumerate() {
        writeln!(
            o,
            "segment {i}: offset {} length {} compression {} ({} entries)",
            s.offset,
            s.length,
            s.compression,
            s.entries.len()
        )?;
        for e in &s.entries {
            writeln!(o, "  {} {:>12} /{}", e.mode_string(), e.size, e.name)?;
        }
    }
    match plan {
        Some(p) => writeln!(o, "plan:\n{}", serde_json::to_string_pretty(&p)?)?,
        None => writeln!(o, "plan: none (not a migrd ramdisk?)")?,
    }
    Ok(())
}
