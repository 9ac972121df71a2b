//! The board's boot counter in the restore-first mode (see
//! `migrd_bootloaders::uboot::bootcount`): whether the board counts boots,
//! and if so whether migrd arms the counter (the environment file read and
//! its armed bytes computed now, so `migrd check` reports what `migrd
//! migrate` will do) or why not.

use crate::probe::rootfs;
use migrd_bootloaders::uboot::bootcount::{self, EnvFile};
use migrd_bootloaders::uboot::detect::EnvState;
use migrd_bootloaders::uboot::{fw_config, UbootFacts};
use std::path::Path;

/// The fw_env.config migrd reads, as the device sees it.
const FW_ENV_CONFIG: &str = "/etc/fw_env.config";

/// A counter migrd arms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// `bootlimit`.
    pub limit: u64,
    /// The board's `altbootcmd`.
    pub altbootcmd: String,
    /// The environment file.
    pub at: EnvFile,
    /// Its bytes now (stage 2 puts them back).
    pub original: Vec<u8>,
    /// Its bytes with the counter armed.
    pub armed: Vec<u8>,
}

/// A counter migrd leaves alone, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unarmed {
    /// `bootlimit`.
    pub limit: u64,
    /// Why it is not armed.
    pub why: String,
}

/// The board's counter: `None` when the board does not count boots (or
/// its environment is not readable).
pub fn counter(root: &Path, facts: &UbootFacts) -> Option<Result<Counter, Unarmed>> {
    let EnvState::Read(env) = &facts.env else {
        return None;
    };
    let (limit, alt) = bootcount::counter(env)?;
    Some(armable(root, facts, limit, alt).map_err(|why| Unarmed { limit, why }))
}

fn armable(root: &Path, facts: &UbootFacts, limit: u64, alt: &str) -> Result<Counter, String> {
    let text = std::fs::read_to_string(rootfs::join(root, Path::new(FW_ENV_CONFIG)))
        .map_err(|e| format!("reading {FW_ENV_CONFIG}: {e}"))?;
    let cfg = fw_config::parse(&text, FW_ENV_CONFIG).map_err(|e| e.to_string())?;
    let at = bootcount::locate(&cfg, &facts.filesystems).map_err(|e| e.to_string())?;
    let original = std::fs::read(rootfs::join(root, &at.device_path))
        .map_err(|e| format!("reading {}: {e}", at.device_path.display()))?;
    let armed = bootcount::armed(&original, &at).map_err(|e| e.to_string())?;
    Ok(Counter {
        limit,
        altbootcmd: alt.to_string(),
        at,
        original,
        armed,
    })
}

/// What `migrd check` adds to the restore-first reason.
pub fn describe(c: &Option<Result<Counter, Unarmed>>) -> String {
    match c {
        None => String::new(),
        Some(Ok(c)) => format!(
            "; the board counts boots (bootlimit={}): migrd sets bootcount=0 and upgrade_available=1 in {} \
             so that U-Boot counts the ramdisk's boots, and after {} boots that never reach the restore \
             U-Boot runs the board's altbootcmd (`{}`) instead; stage 2 puts the environment back with \
             the board file",
            c.limit,
            c.at.device_path.display(),
            c.limit,
            c.altbootcmd
        ),
        Some(Err(u)) => format!(
            "; the board counts boots (bootlimit={} with altbootcmd), but migrd does not arm its counter: {}",
            u.limit, u.why
        ),
    }
}
