//! Checks: everything that can make a migration fail, decided before
//! anything on the device changes. Each check reports pass, warn, fail or
//! skip with a reason; only `fail` blocks. The boot-strategy check also
//! chooses the one-shot boot path: `migrd check` reports that choice and
//! `migrd migrate` arms it ([`Verdict`]).
//!
//! ```no_run
//! # use migrd::{probe, inputs::gather, checks};
//! let facts = probe::probe(std::path::Path::new("/"));
//! let g = gather::gather(&facts, &gather::Request::default());
//! let verdict = checks::run(&facts, &g, &checks::Options::default());
//! if verdict.failed() == 0 {
//!     println!("would arm {}", verdict.strategy_to_arm().unwrap());
//! }
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

/// What the checks found: every result, and the one-shot boot strategy
/// the boot-strategy check chose. `migrd check` reports that strategy and
/// `migrd migrate` arms it: the decision is made once, here.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Every check's result, in [`run`]'s order.
    pub results: Vec<CheckResult>,
    /// The strategy the boot-strategy check chose (`None` when it failed).
    pub strategy: Option<StrategyKind>,
}

impl Verdict {
    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.status == Status::Fail)
            .count()
    }

    /// The strategy `migrd migrate` arms: the one the boot-strategy check
    /// chose, or an error when it chose none.
    pub fn strategy_to_arm(&self) -> anyhow::Result<StrategyKind> {
        self.strategy.ok_or_else(|| {
            anyhow::anyhow!("no one-shot boot path is usable on this device; see `migrd check`")
        })
    }
}

/// Run every check, in a fixed order.
pub fn run(facts: &Facts, g: &Gathered, opts: &Options) -> Verdict {
    let mut results = vec![
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
    let (result, strategy) = boot::strategy(facts, opts);
    results.push(result);
    Verdict { results, strategy }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::gather::{gather, Request};
    use crate::probe::firmware::{Firmware, GrubFacts};
    use migrd_bootloaders::kexec::{ImageFacts, ImageKind, KexecFacts};

    fn options(boot_via: Option<StrategyKind>) -> Options {
        Options {
            boot_via,
            ..Options::default()
        }
    }

    /// A BIOS machine with GRUB installed but its grubenv not writable, and
    /// a kernel kexec can start.
    fn bios_with_read_only_grubenv() -> Facts {
        let d = tempfile::tempdir().unwrap();
        let mut f = crate::probe::probe(d.path());
        f.boot.firmware = Firmware::Bios;
        f.boot.grub = Some(GrubFacts {
            dir: "/boot/grub".into(),
            fstype: Some("ext4".into()),
            env_writable: false,
            reason: Some("/boot/grub/grubenv is on a read-only filesystem".into()),
        });
        f.boot.kexec = KexecFacts {
            release: Some("6.1.0-50-amd64".into()),
            syscall: true,
            sysfs: true,
            kexec_file: Some(true),
            sig_verify: Some(true),
            disabled: false,
            lockdown: None,
            secure_boot: None,
            image: Some(ImageFacts {
                path: "/boot/vmlinuz-6.1.0-50-amd64".into(),
                kind: ImageKind::BzImage,
                signed: Some(false),
            }),
        };
        f
    }

    /// `migrate` once chose GRUB whenever GRUB was installed while `check`
    /// reported kexec: the strategy `migrate` arms is now the one `check`
    /// reports.
    #[test]
    fn bios_with_a_read_only_grubenv_arms_kexec_as_check_reports() {
        let f = bios_with_read_only_grubenv();
        let g = gather(&f, &Request::default());
        let v = run(&f, &g, &options(None));
        assert_eq!(v.strategy, Some(StrategyKind::Kexec));
        assert_eq!(v.strategy_to_arm().unwrap(), StrategyKind::Kexec);
        let line = v.results.last().unwrap();
        assert_eq!(line.name, "boot-strategy");
        assert!(line.message.starts_with("kexec: "), "{}", line.message);
        // Asking for GRUB fails the check, and migrate has nothing to arm.
        let v = run(&f, &g, &options(Some(StrategyKind::Grub)));
        assert_eq!(v.strategy, None);
        assert!(v.failed() >= 1);
        let e = v.strategy_to_arm().unwrap_err().to_string();
        assert!(e.contains("migrd check"), "{e}");
    }

    /// On every fixture tree and with every `--boot-via`, the boot-strategy
    /// line names the strategy the verdict carries (the one `migrate`
    /// arms), and fails exactly when there is none.
    #[test]
    fn the_boot_strategy_line_names_the_strategy_migrate_arms_on_every_fixture() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let mut seen = 0;
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let root = entry.unwrap().path();
            if !root.is_dir() {
                continue;
            }
            seen += 1;
            let f = crate::probe::probe(&root);
            let g = gather(&f, &Request::default());
            for via in std::iter::once(None).chain(StrategyKind::ALL.map(Some)) {
                let v = run(&f, &g, &options(via));
                let line = v.results.last().unwrap();
                let at = format!("{} --boot-via {via:?}", root.display());
                match v.strategy {
                    Some(k) => {
                        assert_ne!(line.status, Status::Fail, "{at}");
                        assert!(
                            line.message.starts_with(&format!("{k}: ")),
                            "{at}: {}",
                            line.message
                        );
                        assert!(via.is_none_or(|w| w == k), "{at}");
                    }
                    None => assert_eq!(line.status, Status::Fail, "{at}"),
                }
            }
        }
        assert!(seen >= 5, "only {seen} fixtures in {}", fixtures.display());
    }
}
