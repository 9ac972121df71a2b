//! The two Raspberry Pi one-shot strategies as pure functions from what is
//! on the boot partition to the [`Change`]s that arm them.
//!
//! Both boot the migration ramdisk with the firmware's own kernel file, an
//! explicit `initramfs <file> followkernel` (never `auto_initramfs`, which
//! picked the wrong file on some boards) and `cmdline=<file>` naming a
//! command-line file of our own, so `cmdline.txt` is never edited. The
//! lines go at the end of the file, after `[all]`, so they hold for every
//! model whatever section the file ends in, and win over earlier lines
//! (the firmware keeps the last value of a setting).
//!
//! - **tryboot** writes `tryboot.txt` = config.txt + those lines; the
//!   one-shot flag is set at reboot time. `config.txt` is not touched.
//! - **config.txt** appends the lines to config.txt itself; its original
//!   bytes ride in the ramdisk and stage 2 restores them first thing.

use super::config::ConfigTxt;
use super::effective::{evaluate, Effective};
use super::filter::Board;
use super::model::Model;
use crate::change::Change;
use migrd_init::plan::DisarmAction;
use std::path::{Path, PathBuf};

/// The ramdisk's file on the boot partition (under `os_prefix`).
pub const INITRAMFS_FILE: &str = "migrd-initrd.img";
/// The ramdisk's command-line file on the boot partition (under `os_prefix`).
pub const CMDLINE_FILE: &str = "migrd-cmdline.txt";
/// A kernel copied for the ramdisk when the firmware's kernel file is not
/// the running kernel (under `os_prefix`).
pub const KERNEL_FILE: &str = "migrd-kernel.img";
/// Where the ramdisk carries config.txt's original bytes.
pub const SAVED_CONFIG: &str = "/migrd/rpi/config.txt";
/// The firmware reads at most this many characters of a config.txt line
/// (documented as 80 for older firmware).
pub const MAX_LINE: usize = 80;
/// The comment that opens migrd's lines.
pub const MARK: &str = "# migrd: boot the migration ramdisk once (lines added by migrd)";

/// Why a Raspberry Pi strategy cannot arm.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpiError {
    /// The model's bootloader has no tryboot flag.
    #[error("{0} has no tryboot (only the Pi 4, 400, CM4 and Pi 5 bootloaders have it); use --boot-via rpi-config")]
    NoTryboot(Model),
    /// A generated line would be cut by the firmware.
    #[error("config.txt line '{0}' is longer than {MAX_LINE} characters, which older firmware cuts; use a shorter os_prefix")]
    LineTooLong(String),
    /// The ramdisk command line is unusable.
    #[error("the ramdisk's kernel command line {0}")]
    BadCmdline(&'static str),
    /// autoboot.txt makes a tryboot boot another partition or config.txt.
    #[error("autoboot.txt on the boot partition sets '{0}' for tryboot boots (A/B partitions), so the firmware would not read tryboot.txt; use --boot-via rpi-config")]
    AutobootAb(String),
    /// An existing `os_prefix` would put files outside the boot partition.
    #[error("os_prefix '{0}' in config.txt leaves the boot partition; fix config.txt first")]
    BadPrefix(String),
}

/// What the firmware boots now, read from config.txt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentBoot {
    /// The settings in force.
    pub effective: Effective,
    /// `os_prefix` ("" when unset).
    pub os_prefix: String,
    /// The kernel file name the firmware loads (without the prefix).
    pub kernel: String,
}

impl CurrentBoot {
    /// Read config.txt for `model` on a normal (not tryboot) boot.
    /// `running_64bit` decides the default kernel when config.txt has no
    /// `arm_64bit` (a Pi 4 running a 32-bit kernel was booted with
    /// kernel7l.img).
    pub fn read(
        config_txt: &str,
        model: Model,
        running_64bit: bool,
        include: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CurrentBoot, RpiError> {
        let effective = evaluate(
            &ConfigTxt::parse(config_txt),
            Board {
                model,
                tryboot: false,
            },
            include,
        );
        let os_prefix = effective.os_prefix.clone().unwrap_or_default();
        if os_prefix.starts_with('/') || os_prefix.split('/').any(|c| c == "..") {
            return Err(RpiError::BadPrefix(os_prefix));
        }
        let arm_64bit = effective.arm_64bit.unwrap_or(running_64bit);
        let kernel = effective
            .kernel
            .clone()
            .unwrap_or_else(|| model.default_kernel(arm_64bit).to_string());
        Ok(CurrentBoot {
            effective,
            os_prefix,
            kernel,
        })
    }

    /// The path of a firmware file named `name` on the boot partition
    /// mounted at `boot_dir` (the prefix applied).
    pub fn path(&self, boot_dir: &Path, name: &str) -> PathBuf {
        boot_dir.join(format!("{}{name}", self.os_prefix))
    }
}

/// Refuse tryboot when `autoboot.txt` (EEPROM bootloaders) changes what a
/// tryboot boot reads: `tryboot_a_b=1` (config.txt of another partition
/// instead of tryboot.txt) or a `boot_partition` for tryboot boots.
pub fn check_autoboot(autoboot_txt: Option<&str>) -> Result<(), RpiError> {
    let Some(text) = autoboot_txt else {
        return Ok(());
    };
    let mut state = super::filter::State::default();
    for l in &ConfigTxt::parse(text).lines {
        match &l.line {
            super::config::Line::Filter(f) => state.apply(f),
            super::config::Line::Setting { key, value }
                if state.is_all() || state == tryboot_only() =>
            {
                let set = value.trim() != "0";
                if (key == "tryboot_a_b" && set) || key == "boot_partition" {
                    return Err(RpiError::AutobootAb(l.text.trim().to_string()));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn tryboot_only() -> super::filter::State {
    let mut s = super::filter::State::default();
    s.apply("tryboot");
    s
}

/// What to boot the ramdisk with.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// Where the boot partition is mounted (`/boot/firmware`, `/boot`).
    pub boot_dir: &'a Path,
    /// config.txt's text.
    pub config_txt: &'a str,
    /// What the firmware boots now.
    pub current: &'a CurrentBoot,
    /// The built ramdisk, copied to the boot partition.
    pub initramfs: &'a Path,
    /// The ramdisk's kernel command line.
    pub cmdline: &'a str,
    /// A kernel image to copy because the firmware's kernel file is not the
    /// running kernel; `None` boots the firmware's kernel file.
    pub kernel_copy: Option<&'a Path>,
}

/// The lines that boot the ramdisk (names are relative to `os_prefix`:
/// the firmware adds it).
pub fn entry_lines(kernel: &str) -> Result<Vec<String>, RpiError> {
    let lines = vec![
        String::new(),
        MARK.to_string(),
        "[all]".to_string(),
        format!("kernel={kernel}"),
        format!("initramfs {INITRAMFS_FILE} followkernel"),
        format!("cmdline={CMDLINE_FILE}"),
    ];
    match lines.iter().find(|l| l.len() > MAX_LINE) {
        Some(l) => Err(RpiError::LineTooLong(l.clone())),
        None => Ok(lines),
    }
}

/// `config_txt` with the ramdisk's lines appended.
pub fn with_entry(config_txt: &str, kernel: &str) -> Result<String, RpiError> {
    let mut c = ConfigTxt::parse(config_txt);
    c.append(entry_lines(kernel)?);
    Ok(c.render())
}

/// The ramdisk's command-line file: one line.
pub fn cmdline_file(cmdline: &str) -> Result<Vec<u8>, RpiError> {
    let c = cmdline.trim();
    if c.is_empty() {
        return Err(RpiError::BadCmdline("is empty"));
    }
    if c.contains(['\n', '\r']) {
        return Err(RpiError::BadCmdline("spans several lines"));
    }
    Ok(format!("{c}\n").into_bytes())
}

/// The files both strategies put on the boot partition, and the kernel
/// name for `kernel=`.
fn boot_files(i: &Inputs) -> Result<(Vec<Change>, String), RpiError> {
    let cur = i.current;
    let mut changes = vec![Change::Copy {
        from: i.initramfs.to_path_buf(),
        to: cur.path(i.boot_dir, INITRAMFS_FILE),
        mode: 0o644,
    }];
    let kernel = match i.kernel_copy {
        Some(src) => {
            changes.push(Change::Copy {
                from: src.to_path_buf(),
                to: cur.path(i.boot_dir, KERNEL_FILE),
                mode: 0o644,
            });
            KERNEL_FILE.to_string()
        }
        None => cur.kernel.clone(),
    };
    changes.push(Change::Write {
        path: cur.path(i.boot_dir, CMDLINE_FILE),
        bytes: cmdline_file(i.cmdline)?,
        mode: 0o644,
        in_place: false,
    });
    Ok((changes, kernel))
}

/// Arm tryboot: the ramdisk's files, then `tryboot.txt`. The flag itself
/// is set when rebooting (`reboot "0 tryboot"`), not here.
pub fn tryboot(model: Model, i: &Inputs) -> Result<Vec<Change>, RpiError> {
    if !model.has_tryboot() {
        return Err(RpiError::NoTryboot(model));
    }
    let (mut changes, kernel) = boot_files(i)?;
    changes.push(Change::Write {
        path: i.boot_dir.join("tryboot.txt"),
        bytes: with_entry(i.config_txt, &kernel)?.into_bytes(),
        mode: 0o644,
        in_place: false,
    });
    Ok(changes)
}

/// Arm the config.txt edit: the ramdisk's files, then config.txt with the
/// lines appended (the last change: the one that makes the next boot
/// different).
pub fn config_edit(i: &Inputs) -> Result<Vec<Change>, RpiError> {
    let (mut changes, kernel) = boot_files(i)?;
    changes.push(Change::Write {
        path: i.boot_dir.join("config.txt"),
        bytes: with_entry(i.config_txt, &kernel)?.into_bytes(),
        mode: 0o644,
        in_place: false,
    });
    Ok(changes)
}

/// Stage 2's undo for the config.txt edit: config.txt's original bytes,
/// carried in the ramdisk at [`SAVED_CONFIG`], written back to the boot
/// partition (`partuuid`, vfat) before anything else.
pub fn config_disarm(partuuid: &str, original: &[u8]) -> (DisarmAction, (String, Vec<u8>)) {
    (
        DisarmAction::RestoreFile {
            partuuid: partuuid.to_string(),
            fstype: "vfat".into(),
            path: "config.txt".into(),
            original: SAVED_CONFIG.into(),
        },
        (SAVED_CONFIG.to_string(), original.to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_include(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn current_kernel_from_config_model_and_running_arch() {
        let c = CurrentBoot::read("arm_64bit=1\n", Model::Pi3, false, &no_include).unwrap();
        assert_eq!(c.kernel, "kernel8.img");
        let c = CurrentBoot::read("", Model::Pi4, false, &no_include).unwrap();
        assert_eq!(c.kernel, "kernel7l.img");
        let c = CurrentBoot::read(
            "[pi4]\nkernel=k.img\nos_prefix=v2/\n",
            Model::Pi4,
            true,
            &no_include,
        )
        .unwrap();
        assert_eq!((c.kernel.as_str(), c.os_prefix.as_str()), ("k.img", "v2/"));
        assert_eq!(
            c.path(Path::new("/boot/firmware"), INITRAMFS_FILE),
            Path::new("/boot/firmware/v2/migrd-initrd.img")
        );
        let e = CurrentBoot::read("os_prefix=../x/\n", Model::Pi4, true, &no_include).unwrap_err();
        assert!(e.to_string().contains("../x/"));
    }

    #[test]
    fn tryboot_refused_on_a_pi3_and_bad_cmdlines_refused() {
        let cur = CurrentBoot::read("", Model::Pi3, true, &no_include).unwrap();
        let i = Inputs {
            boot_dir: Path::new("/boot"),
            config_txt: "",
            current: &cur,
            initramfs: Path::new("/w/initramfs.img"),
            cmdline: "console=ttyAMA0 panic=10",
            kernel_copy: None,
        };
        assert_eq!(
            tryboot(Model::Pi3, &i),
            Err(RpiError::NoTryboot(Model::Pi3))
        );
        let bad = Inputs {
            cmdline: " ",
            ..i.clone()
        };
        assert!(matches!(config_edit(&bad), Err(RpiError::BadCmdline(_))));
        let bad = Inputs {
            cmdline: "a\nb",
            ..i
        };
        assert!(matches!(config_edit(&bad), Err(RpiError::BadCmdline(_))));
    }

    #[test]
    fn autoboot_a_b_setups_refuse_tryboot() {
        assert_eq!(check_autoboot(None), Ok(()));
        assert_eq!(check_autoboot(Some("# nothing\n[all]\n")), Ok(()));
        assert_eq!(check_autoboot(Some("tryboot_a_b=0\n")), Ok(()));
        for t in [
            "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n",
            "[tryboot]\nboot_partition=3\n",
        ] {
            assert!(
                matches!(check_autoboot(Some(t)), Err(RpiError::AutobootAb(_))),
                "{t}"
            );
        }
        // Settings for other models only do not count.
        assert_eq!(check_autoboot(Some("[pi5]\nboot_partition=2\n")), Ok(()));
    }

    #[test]
    fn long_kernel_names_are_refused() {
        let long = "k".repeat(80);
        assert!(matches!(entry_lines(&long), Err(RpiError::LineTooLong(_))));
    }
}
