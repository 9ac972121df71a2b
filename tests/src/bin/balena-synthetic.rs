//! `balena-synthetic OUT_DIR [REPORTER]`: build the lab's synthetic balenaOS
//! image (`OUT_DIR/balena.img` and `balena.img.gz`) with the lab's Debian
//! kernel and a static balena-reporter (default: the one in the target
//! folder). Prints the path of the `.img.gz`.

use anyhow::{Context, Result};
use migrd_lab::{images::balena, paths};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(
        args.next()
            .context("usage: balena-synthetic OUT_DIR [REPORTER]")?,
    );
    let reporter = match args.next() {
        Some(p) => PathBuf::from(p),
        None => paths::reporter_bin()?,
    };
    let t0 = std::time::Instant::now();
    let img = balena::build(&out, &reporter, &paths::kernel("amd64")?)?;
    eprintln!(
        "[balena-synthetic] built {} in {:.1} s (modules: {})",
        img.raw.display(),
        t0.elapsed().as_secs_f64(),
        img.modules.join(" ")
    );
    println!("{}", img.gz.display());
    Ok(())
}
