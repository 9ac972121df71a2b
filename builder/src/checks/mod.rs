//! Checks: everything that can make a migration fail, decided before
//! anything on the device changes. Each check reports pass, warn, fail or
//! skip with a reason; only `fail` blocks.
//!
//! ```no_run
//! # use migrd::{probe, inputs::gather, checks};
//! let facts = probe::probe(std::path::Path::new("/"));
//! let g = gather::gather(&facts, &gather::Request::default());
//! let results = checks::run(&facts, &g, &checks::Options::default());
//! assert!(checks::all_passed(&results) || true);
//! ```

pub mod boot;
pub mod device;
pub mod disk;
pub mod drivers;
pub mod inputs;
pub mod remote;
pub mod uboot;
pub mod uboot_counter;
pub mod watchdog;

use crate::inputs::gather::Gathered;
use crate::probe::Facts;
use migrd_bootloaders::StrategyKind;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Not blocking, but the operator should know.
    Warn,
    /// Blocks the migration.
    Fail,
    /// Not run, with the reason (a flag, or not applicable).
    Skip,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Stable name (`root`, `api`, `vpn`, ...).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found, or what to do.
    pub message: String,
}

impl CheckResult {
    /// A result.
    pub fn new(name: &str, status: Status, message: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            status,
            message: message.into(),
        }
    }
}

/// Switches for the checks (from takeover's `--no-*-check` flags).
#[derive(Clone, Debug)]
pub struct Options {
    /// `--no-os-check`: an unsupported OS is a warning.
    pub no_os_check: bool,
    /// `--no-dt-check`: board and device type are not checked.
    pub no_dt_check: bool,
    /// `--no-api-check`.
    pub no_api_check: bool,
    /// `--no-vpn-check`.
    pub no_vpn_check: bool,
    /// `--no-nwmgr-check`: no network profile is a warning.
    pub no_nwmgr_check: bool,
    /// `--check-timeout`.
    pub timeout: Duration,
    /// `--boot-via`.
    pub boot_via: Option<StrategyKind>,
    /// `--uboot-restore-first`: the U-Boot restore-first mode is accepted.
    pub uboot_restore_first: bool,
    /// `-l`.
    pub log_to: Option<PathBuf>,
    /// `-f`.
    pub flash_to: Option<PathBuf>,
    /// `--no-watchdog`: the ramdisk arms no hardware watchdog.
    pub no_watchdog: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            no_os_check: false,
            no_dt_check: false,
            no_api_check: false,
            no_vpn_check: false,
            no_nwmgr_check: false,
            timeout: Duration::from_secs(10),
            boot_via: None,
            uboot_restore_first: false,
            log_to: None,
            flash_to: None,
            no_watchdog: false,
        }
    }
}

/// Run every check, in a fixed order.
pub fn run(facts: &Facts, g: &Gathered, opts: &Options) -> Vec<CheckResult> {
    let mut v = vec![
        device::root(facts),
        device::os(facts, opts),
        inputs::config(g),
        device::device_type(facts, g, opts),
        device::secure_boot(facts),
        inputs::image(facts, g, opts),
        remote::api(g, opts),
        remote::vpn(g, opts),
        remote::version(g, opts),
        disk::target_disk(facts, g, opts),
        drivers::ramdisk_drivers(facts, opts),
        watchdog::watchdog(facts, opts),
        disk::memory(facts, g),
        disk::boot_space(facts, g),
        disk::log_device(facts, opts),
        inputs::network(facts, g, opts),
        inputs::backup(g),
    ];
    v.push(boot::strategy(facts, opts).0);
    v
}

/// True when no check failed.
pub fn all_passed(results: &[CheckResult]) -> bool {
    results.iter().all(|r| r.status != Status::Fail)
}
