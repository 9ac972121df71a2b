//! The one decision `migrd check` reports and `migrd migrate` arms: the
//! self-clearing one-shot where [`detect`] finds a place for it, else the
//! restore-first edit of the board's own boot file when the operator
//! accepted it, else a refusal that says why and what to do.

use super::detect::{detect, Flow, UbootError, UbootFacts};

/// The `migrd migrate` flag that accepts the restore-first mode.
pub const RESTORE_FIRST_FLAG: &str = "--uboot-restore-first";

/// Which kind of board file the restore-first mode edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardFile {
    /// `extlinux.conf`: a new default label boots the ramdisk.
    Extlinux,
    /// BeagleBoard-style `uEnv.txt`: `uname_r` and `cmdline` pick the
    /// ramdisk's files and command line.
    UEnv,
}

/// The board file the restore-first mode edits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// Index into [`UbootFacts::filesystems`].
    pub fs: usize,
    /// The file, inside the filesystem (`/extlinux/extlinux.conf`,
    /// `/boot/uEnv.txt`).
    pub path: String,
    /// What kind of file it is.
    pub file: BoardFile,
    /// Its partition's PARTUUID (stage 2 finds the partition by it).
    pub partuuid: String,
}

/// How migrd arms this board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// migrd's self-clearing boot script (nothing for stage 2 to undo).
    OneShot(Flow),
    /// The board's own file is edited; the ramdisk restores it first thing.
    RestoreFirst(Edit),
}

/// Why migrd does not arm this board.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No way at all (or not one migrd can restore).
    #[error(transparent)]
    Unsupported(UbootError),
    /// Only the restore-first mode would work, and it was not accepted.
    #[error(
        "{cause}. Or accept the restore-first mode with {RESTORE_FIRST_FLAG}: migrd then edits {path} \
         to boot its ramdisk and keeps the original inside the ramdisk, which puts it back first thing. \
         The risk: until that restore has run, every boot boots the ramdisk again, so a ramdisk that fails \
         before restoring (a kernel panic, a missing driver, a power cut during its boot) boots again on \
         every reset; if the restore itself fails, the ramdisk powers the device off instead of looping. \
         `migrd cancel` undoes the edit before the reboot"
    )]
    RestoreFirstOnly {
        /// Why no self-clearing path exists.
        cause: UbootError,
        /// The file that would be edited, as the device sees it.
        path: String,
    },
    /// The restore-first mode was accepted but the file's partition has no
    /// known PARTUUID.
    #[error(
        "{RESTORE_FIRST_FLAG}: the partition holding {path} has no known PARTUUID (no /dev/disk/by-partuuid \
         link), and the ramdisk finds the partition by it to put the file back; use --boot-via kexec"
    )]
    NoPartuuid {
        /// The file, as the device sees it.
        path: String,
    },
}

/// The board file migrd could edit instead, for the refusals that allow it.
fn board_file(facts: &UbootFacts, e: &UbootError) -> Option<(usize, String, BoardFile)> {
    let (suffix, kind) = match e {
        UbootError::ExtlinuxFirst { .. } => ("/extlinux/extlinux.conf", BoardFile::Extlinux),
        UbootError::UEnvOnly { .. } => ("uEnv.txt", BoardFile::UEnv),
        UbootError::NotWritable { .. } | UbootError::NotFound { .. } => return None,
    };
    facts.filesystems.iter().enumerate().find_map(|(i, fs)| {
        let f = fs.files.iter().find(|f| match kind {
            // The one distro boot reads first: at the filesystem's root.
            BoardFile::Extlinux => f.as_str() == suffix,
            BoardFile::UEnv => f.ends_with(suffix),
        })?;
        Some((i, f.clone(), kind))
    })
}

/// Decide how to arm: the self-clearing one-shot where possible, the
/// restore-first edit where only that works and `restore_first` is set.
pub fn decide(facts: &UbootFacts, restore_first: bool) -> Result<Decision, Refusal> {
    let cause = match detect(facts) {
        Ok(flow) => return Ok(Decision::OneShot(flow)),
        Err(e) => e,
    };
    let Some((fs, path, file)) = board_file(facts, &cause) else {
        return Err(Refusal::Unsupported(cause));
    };
    let on_device = facts.filesystems[fs]
        .mount_point
        .join(path.trim_start_matches('/'))
        .display()
        .to_string();
    if !restore_first {
        return Err(Refusal::RestoreFirstOnly {
            cause,
            path: on_device,
        });
    }
    let partuuid = facts.filesystems[fs]
        .partuuid
        .clone()
        .ok_or(Refusal::NoPartuuid { path: on_device })?;
    Ok(Decision::RestoreFirst(Edit {
        fs,
        path,
        file,
        partuuid,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::detect::{BootFs, EnvState};
    use super::super::script::ImageArch;
    use super::*;

    fn facts(mp: &str, files: &[&str], partuuid: Option<&str>) -> UbootFacts {
        UbootFacts {
            filesystems: vec![BootFs {
                mount_point: mp.into(),
                fstype: "ext4".into(),
                files: files.iter().map(|s| s.to_string()).collect(),
                partuuid: partuuid.map(str::to_string),
            }],
            env: EnvState::NotConfigured,
            arch: ImageArch::Arm,
        }
    }

    #[test]
    fn a_self_clearing_path_wins_whatever_the_flag() {
        let f = facts("/boot", &["/boot.scr", "/uEnv.txt"], Some("p-01"));
        for flag in [false, true] {
            assert!(matches!(decide(&f, flag), Ok(Decision::OneShot(_))));
        }
    }

    #[test]
    fn uenv_only_needs_the_flag_and_names_it_with_the_risk() {
        let f = facts("/", &["/boot/uEnv.txt"], Some("5e6a7b8c-01"));
        let e = decide(&f, false).unwrap_err().to_string();
        assert!(e.contains(RESTORE_FIRST_FLAG), "{e}");
        assert!(e.contains("/boot/uEnv.txt") && e.contains("boots again on every reset"));
        assert!(e.contains("powers the device off"), "{e}");
        assert_eq!(
            decide(&f, true),
            Ok(Decision::RestoreFirst(Edit {
                fs: 0,
                path: "/boot/uEnv.txt".into(),
                file: BoardFile::UEnv,
                partuuid: "5e6a7b8c-01".into(),
            }))
        );
    }

    #[test]
    fn extlinux_first_edits_that_extlinux_conf() {
        let f = facts(
            "/boot",
            &["/extlinux/extlinux.conf", "/boot.scr"],
            Some("p-01"),
        );
        assert!(matches!(
            decide(&f, false),
            Err(Refusal::RestoreFirstOnly { path, .. }) if path == "/boot/extlinux/extlinux.conf"
        ));
        assert!(matches!(
            decide(&f, true),
            Ok(Decision::RestoreFirst(Edit { file: BoardFile::Extlinux, ref path, .. }))
                if path == "/extlinux/extlinux.conf"
        ));
    }

    #[test]
    fn no_partuuid_or_no_boot_file_is_refused_even_with_the_flag() {
        let f = facts("/", &["/boot/uEnv.txt"], None);
        assert!(matches!(decide(&f, true), Err(Refusal::NoPartuuid { .. })));
        let f = facts("/", &[], Some("p"));
        let e = decide(&f, true).unwrap_err();
        assert!(matches!(
            e,
            Refusal::Unsupported(UbootError::NotFound { .. })
        ));
        assert!(!e.to_string().contains(RESTORE_FIRST_FLAG));
    }
}
