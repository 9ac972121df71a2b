//! The files that arm the U-Boot one-shot boot: migrd's boot script (from
//! `templates/uboot/migrd-oneshot.cmd`), the kept original script, the
//! kernel and ramdisk on the boot filesystem, and last the flag file that
//! makes the next boot different.

use super::detect::{Flow, UbootFacts};
use super::script::{script_image, ImageArch};
use crate::change::Change;
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("../../../templates/uboot/migrd-oneshot.cmd");
/// migrd's folder on the boot filesystem.
pub const DIR: &str = "migrd";
/// The flag file, inside the boot filesystem (`migrd_oneshot=1` arms).
pub const FLAG_FILE: &str = "/migrd/oneshot.txt";
/// Where the board's own script is kept while migrd's replaces it.
pub const ORIGINAL_SCRIPT: &str = "/migrd/original.scr";
/// The kernel copy, inside the boot filesystem.
pub const KERNEL: &str = "/migrd/kernel";
/// The ramdisk copy, inside the boot filesystem.
pub const INITRD: &str = "/migrd/initramfs";
/// The flag file's content that arms the one-shot boot.
pub const ARMED: &[u8] = b"migrd_oneshot=1\n";

/// What arming needs besides the facts.
#[derive(Clone, Debug)]
pub struct ArmInputs<'a> {
    /// The kernel to boot (device path).
    pub kernel: &'a Path,
    /// The migration ramdisk (device path).
    pub initramfs: &'a Path,
    /// The ramdisk's kernel command line.
    pub cmdline: &'a str,
    /// The board's current script when [`Flow::ReplaceScript`].
    pub original_script: Option<&'a [u8]>,
}

/// Why the files cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArmError {
    /// A command-line character a U-Boot script cannot quote.
    #[error("the ramdisk command line {0:?} holds '\"', '$', '\\' or a newline, which a U-Boot script cannot quote; remove them from the extra kernel arguments")]
    Cmdline(String),
    /// The original script was not read.
    #[error("internal: the board's boot script was not read before arming")]
    NoOriginal,
}

/// The script text for `flow` (before the image header is added).
pub fn script_text(flow: &Flow, facts: &UbootFacts, cmdline: &str) -> Result<String, ArmError> {
    if cmdline.contains(['"', '$', '\\', '\n']) {
        return Err(ArmError::Cmdline(cmdline.to_string()));
    }
    let fs = &facts.filesystems[flow.fs()];
    let write = if fs.fstype.starts_with("ext") {
        "ext4write"
    } else {
        "fatwrite"
    };
    let boot = match facts.arch {
        ImageArch::Arm64 => "booti",
        ImageArch::Arm => "bootz",
    };
    let chain = match flow {
        Flow::ReplaceScript { .. } => format!(
            "# Not the migration boot: run the board's own boot script.\n\
             if load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{scriptaddr}} {ORIGINAL_SCRIPT}; then\n  \
             source ${{scriptaddr}}\nfi"
        ),
        Flow::BeforeExtlinux { extlinux, .. } => format!(
            "# Not the migration boot: returning lets distro boot go on to {extlinux}."
        ),
    };
    Ok(TEMPLATE
        .replace("@FLAG_FILE@", FLAG_FILE)
        .replace("@WRITE@", write)
        .replace("@KERNEL@", KERNEL)
        .replace("@INITRD@", INITRD)
        .replace("@BOOTARGS@", cmdline)
        .replace("@BOOT@", boot)
        .replace("@CHAIN@", &chain))
}

fn at(mount: &Path, in_fs: &str) -> PathBuf {
    mount.join(in_fs.trim_start_matches('/'))
}

/// The changes that arm the one-shot boot, in order; the flag file comes
/// last (before it is written the new script only hands over to the old
/// boot).
pub fn arm(flow: &Flow, facts: &UbootFacts, inputs: &ArmInputs) -> Result<Vec<Change>, ArmError> {
    let fs = &facts.filesystems[flow.fs()];
    let mp = &fs.mount_point;
    let text = script_text(flow, facts, inputs.cmdline)?;
    let image = script_image(&text, facts.arch, "migrd one-shot", 0);
    let mut out = vec![
        Change::MkDir { path: at(mp, DIR) },
        Change::Copy {
            from: inputs.kernel.to_path_buf(),
            to: at(mp, KERNEL),
            mode: 0o644,
        },
        Change::Copy {
            from: inputs.initramfs.to_path_buf(),
            to: at(mp, INITRD),
            mode: 0o644,
        },
    ];
    let script_path = match flow {
        Flow::ReplaceScript { script, .. } => {
            let orig = inputs.original_script.ok_or(ArmError::NoOriginal)?;
            out.push(Change::Write {
                path: at(mp, ORIGINAL_SCRIPT),
                bytes: orig.to_vec(),
                mode: 0o644,
                in_place: false,
            });
            at(mp, script)
        }
        Flow::BeforeExtlinux { .. } => at(mp, "/boot.scr"),
    };
    out.push(Change::Write {
        path: script_path,
        bytes: image,
        mode: 0o644,
        in_place: false,
    });
    out.push(Change::Write {
        path: at(mp, FLAG_FILE),
        bytes: ARMED.to_vec(),
        mode: 0o644,
        in_place: false,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::detect::{BootFs, EnvState};
    use super::*;

    fn facts(fstype: &str, arch: ImageArch) -> UbootFacts {
        UbootFacts {
            filesystems: vec![BootFs {
                mount_point: "/boot".into(),
                fstype: fstype.into(),
                files: vec!["/boot.scr".into()],
                partuuid: None,
            }],
            env: EnvState::NotConfigured,
            arch,
        }
    }

    #[test]
    fn write_and_boot_commands_follow_filesystem_and_arch() {
        let flow = Flow::ReplaceScript {
            fs: 0,
            script: "/boot.scr".into(),
        };
        let t = script_text(&flow, &facts("vfat", ImageArch::Arm64), "quiet").unwrap();
        assert!(
            t.contains("if fatwrite ${devtype}") && t.contains("\n        booti ${kernel_addr_r}")
        );
        assert!(!t.contains('@'), "placeholder left: {t}");
        let t = script_text(&flow, &facts("ext4", ImageArch::Arm), "quiet").unwrap();
        assert!(t.contains("if ext4write ") && t.contains("bootz "));
    }

    #[test]
    fn unquotable_cmdline_is_refused() {
        let flow = Flow::ReplaceScript {
            fs: 0,
            script: "/boot.scr".into(),
        };
        let e = script_text(&flow, &facts("vfat", ImageArch::Arm64), "a=\"b\"").unwrap_err();
        assert!(e.to_string().contains("cannot quote"));
    }

    #[test]
    fn flag_is_the_last_change_and_original_is_kept() {
        let flow = Flow::ReplaceScript {
            fs: 0,
            script: "/boot.scr".into(),
        };
        let f = facts("vfat", ImageArch::Arm64);
        let inputs = ArmInputs {
            kernel: Path::new("/boot/vmlinuz"),
            initramfs: Path::new("/var/lib/migrd/initramfs"),
            cmdline: "quiet",
            original_script: Some(b"orig"),
        };
        let ch = arm(&flow, &f, &inputs).unwrap();
        assert_eq!(
            ch.last().map(|c| c.path().clone()),
            Some(PathBuf::from("/boot/migrd/oneshot.txt"))
        );
        assert!(ch
            .iter()
            .any(|c| matches!(c, Change::Write { path, bytes, .. }
            if path == Path::new("/boot/migrd/original.scr") && bytes == b"orig")));
        let missing = ArmInputs {
            original_script: None,
            ..inputs
        };
        assert_eq!(arm(&flow, &f, &missing), Err(ArmError::NoOriginal));
    }
}
