//! The `migrd migrate` arguments: every takeover flag with the same meaning
//! (see docs/coming-from-takeover.md), plus migrd's own. `migrd check` and
//! `migrd download` flatten the same struct so one command line works for all
//! three.

use crate::checks::Options as CheckOptions;
use crate::inputs::network::Selection;
use clap::{Args, ValueEnum};
use migrd_bootloaders::StrategyKind;
use std::path::PathBuf;
use std::time::Duration;

/// Log levels, as takeover names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// Errors only.
    Error,
    /// Warnings.
    Warn,
    /// Normal.
    Info,
    /// Debug.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// The `log` crate filter.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
            Level::Trace => log::LevelFilter::Trace,
        }
    }

    /// The same level for stage 2's plan.
    pub fn stage2(self) -> migrd_init::plan::LogLevel {
        use migrd_init::plan::LogLevel;
        match self {
            Level::Error => LogLevel::Error,
            Level::Warn => LogLevel::Warn,
            Level::Info => LogLevel::Info,
            Level::Debug => LogLevel::Debug,
            Level::Trace => LogLevel::Trace,
        }
    }
}

fn parse_strategy(s: &str) -> Result<StrategyKind, String> {
    s.parse::<StrategyKind>().map_err(|e| e.to_string())
}

/// Inputs and switches of a migration (takeover's flag set).
#[derive(Clone, Debug, Args)]
pub struct MigrateArgs {
    /// Working directory for the downloaded image, the rewritten config.json,
    /// network profiles and backup.tgz.
    #[arg(
        short = 'w',
        long = "work-dir",
        value_name = "DIRECTORY",
        default_value = "."
    )]
    pub work_dir: PathBuf,
    /// Use this balenaOS image (gz, zst, xz, zip or raw) instead of downloading one.
    #[arg(short = 'i', long = "image", value_name = "IMAGE")]
    pub image: Option<PathBuf>,
    /// balenaOS version to download: `default` (newest final), exact
    /// (`5.1.20+rev1`) or a range (`~5.1`, `^5`).
    #[arg(
        short = 'v',
        long = "version",
        value_name = "VERSION",
        default_value = "default"
    )]
    pub version: String,
    /// The fleet's config.json (default on balenaOS: /mnt/boot/config.json).
    #[arg(short = 'c', long = "config", value_name = "CONFIG_JSON")]
    pub config: Option<PathBuf>,
    /// Stage 1 log level.
    #[arg(long = "log-level", value_enum, default_value = "info")]
    pub log_level: Level,
    /// Also write the stage 1 log to this file.
    #[arg(long = "log-file", value_name = "LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Backup definition (takeover's YAML) → backup.tgz restored into volumes.
    #[arg(long = "backup-cfg", value_name = "BACKUP-CONFIG")]
    pub backup_cfg: Option<PathBuf>,
    /// Stage 2 log level (default: --log-level).
    #[arg(long = "s2-log-level", value_enum)]
    pub s2_log_level: Option<Level>,
    /// Do not ask for confirmation.
    #[arg(long = "no-ack")]
    pub no_ack: bool,
    /// Do everything except writing the disk: the ramdisk boots, verifies
    /// the payload and the target, then reboots into the old OS.
    #[arg(long)]
    pub pretend: bool,
    /// takeover's internal stage-2 switch: accepted and ignored (migrd's
    /// stage 2 is a separate ramdisk program).
    #[arg(long, hide = true)]
    pub stage2: bool,
    /// Accepted and ignored: migrd always builds the backup with the tar crate.
    #[arg(long = "tar-internal")]
    pub tar_internal: bool,
    /// Keep the work files after a failure (for debugging).
    #[arg(long = "no-cleanup")]
    pub no_cleanup: bool,
    /// Do not fail on an unsupported source OS (reported as a warning).
    #[arg(long = "no-os-check")]
    pub no_os_check: bool,
    /// Skip board and device-type checks (config.json deviceType vs this board).
    #[arg(long = "no-dt-check")]
    pub no_dt_check: bool,
    /// Skip the API reachability check.
    #[arg(long = "no-api-check")]
    pub no_api_check: bool,
    /// Skip the VPN reachability check.
    #[arg(long = "no-vpn-check")]
    pub no_vpn_check: bool,
    /// Do not create the UEFI boot entry for balenaOS after flashing.
    #[arg(long = "no-efi-setup")]
    pub no_efi_setup: bool,
    /// Do not fail when no network profile would be migrated.
    #[arg(long = "no-nwmgr-check")]
    pub no_nwmgr_check: bool,
    /// Do not carry the hostname into config.json.
    #[arg(long = "no-keep-name")]
    pub no_keep_name: bool,
    /// Download the image and stop.
    #[arg(short = 'd', long = "download-only")]
    pub download_only: bool,
    /// Timeout in seconds for the API and VPN checks.
    #[arg(long = "check-timeout", value_name = "TIMEOUT", default_value_t = 10)]
    pub check_timeout: u64,
    /// Write the stage 2 log to this partition (vfat, ext3 or ext4; not on the target disk).
    #[arg(short = 'l', long = "log-to", value_name = "LOG_DEVICE")]
    pub log_to: Option<PathBuf>,
    /// Flash balenaOS to this disk (default: the disk holding /).
    #[arg(short = 'f', long = "flash-to", value_name = "INSTALL_DEVICE")]
    pub flash_to: Option<PathBuf>,
    /// Do not migrate Wi-Fi profiles (unless --wifi names some).
    #[arg(long = "no-wifis")]
    pub no_wifis: bool,
    /// Migrate only the Wi-Fi with this SSID (repeatable).
    #[arg(long = "wifi", value_name = "SSID")]
    pub wifi: Vec<String>,
    /// Add this NetworkManager keyfile, verbatim (repeatable).
    #[arg(long = "nwmgr-cfg", value_name = "NWMGR_FILE")]
    pub nwmgr_cfg: Vec<PathBuf>,
    /// Migrate to this device type: image for it, deviceType in config.json,
    /// and the device's type changed in the API.
    #[arg(long = "change-dt-to", value_name = "DT_SLUG")]
    pub change_dt_to: Option<String>,
    /// Arm the one-shot boot but do not reboot.
    #[arg(long = "no-reboot")]
    pub no_reboot: bool,
    /// Use this one-shot boot strategy: grub, efi, rpi-tryboot, rpi-config, uboot, kexec.
    #[arg(long = "boot-via", value_name = "STRATEGY", value_parser = parse_strategy)]
    pub boot_via: Option<StrategyKind>,
    /// U-Boot boards without a self-clearing path (extlinux.conf read first,
    /// or only uEnv.txt): arm by editing the board's own boot file, which the
    /// ramdisk restores first thing. Until then every boot boots the ramdisk
    /// again (see docs/platforms.md).
    #[arg(long = "uboot-restore-first")]
    pub uboot_restore_first: bool,
    /// Do not arm the device's hardware watchdog in the ramdisk (for a
    /// watchdog whose driver misbehaves). The ramdisk's own deadlines and
    /// the kernel's hang panics still bring it back to the old OS.
    #[arg(long = "no-watchdog")]
    pub no_watchdog: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl MigrateArgs {
    /// Notes about takeover flags that are accepted but have no effect.
    pub fn ignored_notes(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.stage2 {
            v.push("--stage2 is takeover's internal switch; migrd ignores it (stage 2 runs from the ramdisk)".into());
        }
        if self.tar_internal {
            v.push(
                "--tar-internal is ignored: migrd always builds backup.tgz with the tar crate"
                    .into(),
            );
        }
        v
    }

    /// The stage 2 log level.
    pub fn stage2_level(&self) -> Level {
        self.s2_log_level.unwrap_or(self.log_level)
    }

    /// Which network profiles to take.
    pub fn network_selection(&self) -> Selection {
        Selection {
            no_wifis: self.no_wifis,
            wifi: self.wifi.clone(),
            nwmgr_cfg: self.nwmgr_cfg.clone(),
        }
    }

    /// Options for the checks.
    pub fn check_options(&self) -> CheckOptions {
        CheckOptions {
            no_os_check: self.no_os_check,
            no_dt_check: self.no_dt_check,
            no_api_check: self.no_api_check,
            no_vpn_check: self.no_vpn_check,
            no_nwmgr_check: self.no_nwmgr_check,
            timeout: Duration::from_secs(self.check_timeout.max(1)),
            boot_via: self.boot_via,
            uboot_restore_first: self.uboot_restore_first,
            log_to: self.log_to.clone(),
            flash_to: self.flash_to.clone(),
            no_watchdog: self.no_watchdog,
        }
    }
}
