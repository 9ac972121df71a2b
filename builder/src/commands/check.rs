//! `migrd check`: probe, gather inputs and run every check; change nothing.
//! `--json` prints the facts and results for machines.

use super::migrate_args::MigrateArgs;
use crate::checks::{self, boot, CheckResult, Status, Verdict};
use crate::inputs::config_json::ConfigSummary;
use crate::inputs::gather::{self, Gathered, ImageInput};
use crate::inputs::image_check::ImageInfo;
use crate::inputs::network::Profile;
use crate::probe::disks::{DiskInfo, MountedOn};
use crate::probe::{self, Facts};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `migrd check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The migration's inputs and switches (same flags as `migrd migrate`).
    #[command(flatten)]
    pub migrate: MigrateArgs,
    /// Probe the system under this directory instead of `/` (fixture trees).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// `device` in the report.
#[derive(Debug, Serialize)]
pub struct DeviceReport {
    /// Model string.
    pub model: Option<String>,
    /// Board id in migrd's table.
    pub board: Option<String>,
    /// Board family.
    pub family: Option<String>,
    /// `uname -m`.
    pub kernel_machine: Option<String>,
    /// Compatible balena slugs, best first.
    pub slugs: Vec<String>,
    /// Hostname.
    pub hostname: Option<String>,
}

/// `os` in the report.
#[derive(Debug, Serialize)]
pub struct OsReport {
    /// os-release ID.
    pub id: Option<String>,
    /// os-release VERSION_ID.
    pub version_id: Option<String>,
    /// PRETTY_NAME.
    pub pretty_name: Option<String>,
    /// Support verdict.
    pub support: probe::os_release::Support,
}

/// `boot` in the report.
#[derive(Debug, Serialize)]
pub struct BootReport {
    /// `bios`, `uefi`, `rpi`, `uboot`.
    pub firmware: probe::firmware::Firmware,
    /// Secure Boot state.
    pub secure_boot: Option<bool>,
    /// The strategy that would be used.
    pub strategy: Option<String>,
    /// Every strategy's verdict.
    pub strategies: Vec<boot::Candidate>,
}

/// `disks` in the report.
#[derive(Debug, Serialize)]
pub struct DisksReport {
    /// What holds `/`.
    pub root: Option<MountedOn>,
    /// What holds `/boot`.
    pub boot: Option<MountedOn>,
    /// The disk that would be flashed.
    pub target: Option<DiskInfo>,
}

/// The whole `--json` report. Never contains keys or passphrases.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Board.
    pub device: DeviceReport,
    /// Source OS.
    pub os: OsReport,
    /// Boot chain.
    pub boot: BootReport,
    /// Disks.
    pub disks: DisksReport,
    /// Memory.
    pub memory: probe::memory::Memory,
    /// config.json, without keys.
    pub config: Option<ConfigSummary>,
    /// Device type of the new OS.
    pub target_device_type: Option<String>,
    /// The local image, if `-i`.
    pub image: Option<ImageInfo>,
    /// Version to download, if no `-i`.
    pub download_version: Option<String>,
    /// Network profiles, migrated or not.
    pub networks: Vec<Profile>,
    /// Check results.
    pub checks: Vec<CheckResult>,
    /// Notes (ignored flags, ...).
    pub notes: Vec<String>,
}

/// Build the report.
pub fn report(f: &Facts, g: &Gathered, a: &MigrateArgs, verdict: &Verdict) -> Report {
    Report {
        device: DeviceReport {
            model: f.board.model.clone(),
            board: f.board.id.clone(),
            family: f.board.family.clone(),
            kernel_machine: f.kernel_machine.clone(),
            slugs: f.board.slugs.clone(),
            hostname: f.host.hostname.clone(),
        },
        os: OsReport {
            id: f.os.as_ref().map(|o| o.id.clone()),
            version_id: f.os.as_ref().and_then(|o| o.version_id.clone()),
            pretty_name: f.os.as_ref().and_then(|o| o.pretty_name.clone()),
            support: f.os_support.clone(),
        },
        boot: BootReport {
            firmware: f.boot.firmware,
            secure_boot: f.boot.secure_boot,
            strategy: verdict.strategy.map(|k| k.name().to_string()),
            strategies: boot::candidates(f, &a.check_options()),
        },
        disks: DisksReport {
            root: f.disks.root.clone(),
            boot: f.disks.boot.clone(),
            target: checks::disk::target(f, &a.check_options()).ok().cloned(),
        },
        memory: f.memory,
        config: g
            .config
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .map(|c| c.summary()),
        target_device_type: g.target_slug.clone(),
        image: match &g.image {
            ImageInput::Local(Ok(i)) => Some((**i).clone()),
            _ => None,
        },
        download_version: match &g.image {
            ImageInput::Download(v) => Some(v.clone()),
            ImageInput::Local(_) => None,
        },
        networks: g
            .networks
            .as_ref()
            .map(|n| n.profiles.clone())
            .unwrap_or_default(),
        checks: verdict.results.clone(),
        notes: a.ignored_notes(),
    }
}

/// The gather request for these arguments.
pub fn gather_request(a: &MigrateArgs) -> gather::Request {
    gather::Request {
        config: a.config.clone(),
        image: a.image.clone(),
        version: a.version.clone(),
        backup_cfg: a.backup_cfg.clone(),
        networks: a.network_selection(),
        no_keep_name: a.no_keep_name,
        change_dt_to: a.change_dt_to.clone(),
    }
}

/// Probe, gather and check: the library entry point the migrate flow reuses.
pub fn evaluate(root: &std::path::Path, a: &MigrateArgs) -> (Facts, Gathered, Verdict) {
    let facts = probe::probe(root);
    let g = gather::gather(&facts, &gather_request(a));
    let verdict = checks::run(&facts, &g, &a.check_options());
    (facts, g, verdict)
}

/// Print a check report for people.
pub fn print_text(r: &Report) {
    println!(
        "device: {} ({})",
        r.device.model.as_deref().unwrap_or("unknown"),
        if r.device.slugs.is_empty() {
            "no known device types".to_string()
        } else {
            r.device.slugs.join(", ")
        }
    );
    println!(
        "os: {}",
        r.os.pretty_name
            .as_deref()
            .or(r.os.id.as_deref())
            .unwrap_or("unknown")
    );
    println!(
        "boot: {:?}, strategy {}",
        r.boot.firmware,
        r.boot.strategy.as_deref().unwrap_or("none")
    );
    for p in &r.networks {
        let what = p
            .ssid
            .as_deref()
            .map(|s| format!(" {s:?}"))
            .unwrap_or_default();
        match &p.note {
            Some(n) if !p.migrated => println!(
                "network: {:?}{what} from {}: not migrated: {n}",
                p.kind, p.source
            ),
            _ => println!(
                "network: {}{what} ({:?}, {:?}) from {}",
                p.id, p.kind, p.security, p.source
            ),
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    for c in &r.checks {
        let s = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        println!("{s}  {:<14} {}", c.name, c.message);
    }
}

/// Apply `--log-level` (it can only lower what the environment allows).
pub fn apply_log_level(a: &MigrateArgs) {
    log::set_max_level(a.log_level.filter());
}

/// Run `migrd check`.
pub fn run(a: CheckArgs) -> anyhow::Result<()> {
    apply_log_level(&a.migrate);
    let (facts, g, verdict) = evaluate(&a.root, &a.migrate);
    let failed = verdict.failed();
    let r = report(&facts, &g, &a.migrate, &verdict);
    let json = serde_json::to_string_pretty(&r)?;
    if a.migrate.json {
        println!("{json}");
    } else {
        print_text(&r);
    }
    if let Some(f) = &a.migrate.log_file {
        // The report holds no secrets; --log-file keeps it for the operator.
        std::fs::write(f, format!("{json}\n"))
            .map_err(|e| anyhow::anyhow!("--log-file {}: {e}", f.display()))?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed; nothing was changed");
    }
    Ok(())
}
