//! The restore-first mode (`--uboot-restore-first`): where no self-clearing
//! path exists, the board's own boot file is edited to boot the ramdisk,
//! its original bytes ride inside the ramdisk, and stage 2 writes them back
//! first thing (`DisarmAction::RestoreFile`). Until then every boot boots
//! the ramdisk, so this is only done when the operator asked for it.
//!
//! - `extlinux.conf`: a `migrd` label (the running kernel and the ramdisk
//!   copied to `/migrd/` on that filesystem, the device tree lines of the
//!   board's default label, the ramdisk's command line) becomes the
//!   default. Paths are absolute inside the filesystem, which is how
//!   U-Boot's `sysboot` reads them.
//! - BeagleBoard-style `uEnv.txt` (`uname_r=`, `cmdline=`): the board's
//!   U-Boot loads `<dir>/vmlinuz-${uname_r}`, `<dir>/initrd.img-${uname_r}`
//!   and `<dir>/dtbs/${uname_r}/`, with `cmdline` appended to the kernel's
//!   arguments (`<dir>` is the folder of uEnv.txt). `uname_r` becomes
//!   [`UENV_NAME`] and those files are copies of the running kernel, the
//!   ramdisk and the running kernel's device trees.

use super::decide::{BoardFile, Edit};
use super::detect::UbootFacts;
use super::oneshot::{DIR, INITRD, KERNEL};
use crate::change::Change;
use migrd_init::plan::DisarmAction;
use std::path::{Path, PathBuf};

/// The label (extlinux) and `uname_r` (uEnv.txt) of the ramdisk.
pub const UENV_NAME: &str = "migrd";
/// The extlinux label of the ramdisk.
pub const LABEL: &str = "migrd";
/// Where the original board file rides inside the ramdisk.
pub const SAVED: &str = "/migrd/uboot/original";
/// The comment that opens migrd's lines.
pub const MARK: &str =
    "# migrd: boots the migration ramdisk until it puts back the original of this file";

/// Why the board file cannot be edited.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// extlinux.conf without any label.
    #[error("{0} has no LABEL entry, so migrd cannot tell which device tree the board boots with; use --boot-via kexec")]
    NoLabel(String),
    /// uEnv.txt that does not pick the kernel through `uname_r`.
    #[error("{0} has no uname_r= line: it is not the BeagleBoard Debian layout (uname_r picks /boot/vmlinuz-, initrd.img- and dtbs/), the only uEnv.txt migrd can edit; use --boot-via kexec")]
    NoUnameR(String),
    /// uEnv.txt with its own boot command.
    #[error("{0} sets uenvcmd, which boots the board its own way whatever uname_r says; migrd does not rewrite boot commands. Use --boot-via kexec")]
    UenvCmd(String),
    /// The running kernel's device trees are missing.
    #[error("the running kernel's device trees ({0}) are missing; the board's U-Boot loads the ramdisk's device tree from dtbs/<uname_r>/. Reinstall the kernel package or use --boot-via kexec")]
    NoDtbs(String),
    /// A command line that does not fit on one line.
    #[error("the ramdisk command line holds a newline; remove it from the extra kernel arguments")]
    Cmdline,
}

/// What the edit needs besides the facts and the decision.
#[derive(Clone, Debug)]
pub struct EditInputs<'a> {
    /// The board file's current text.
    pub original: &'a str,
    /// The kernel to boot (device path).
    pub kernel: &'a Path,
    /// The migration ramdisk (device path).
    pub initramfs: &'a Path,
    /// The ramdisk's kernel command line.
    pub cmdline: &'a str,
    /// uEnv.txt: the running kernel's device tree files (device paths),
    /// from `<dir>/dtbs/<release>/`.
    pub dtbs: &'a [PathBuf],
}

fn at(mount: &Path, in_fs: &str) -> PathBuf {
    mount.join(in_fs.trim_start_matches('/'))
}

/// The first word of a line, lowercase, and the rest.
fn keyword(line: &str) -> (String, &str) {
    let t = line.trim_start();
    let (k, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    (k.to_ascii_lowercase(), rest.trim())
}

/// The device tree lines of the label the board boots by default.
fn default_label_fdt(text: &str) -> Option<Vec<String>> {
    let mut default = None;
    let mut labels: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let (k, rest) = keyword(line);
        match k.as_str() {
            "label" => labels.push((rest.to_string(), Vec::new())),
            "default" | "ontimeout" if labels.is_empty() => default = Some(rest.to_string()),
            "menu" if rest.eq_ignore_ascii_case("default") => {
                if let Some((name, _)) = labels.last() {
                    default = Some(name.clone());
                }
            }
            _ => {
                if let Some((_, body)) = labels.last_mut() {
                    body.push(line);
                }
            }
        }
    }
    let (_, body) = labels
        .iter()
        .find(|(n, _)| Some(n) == default.as_ref())
        .or(labels.first())?;
    Some(
        body.iter()
            .filter(|l| {
                matches!(
                    keyword(l).0.as_str(),
                    "fdt" | "devicetree" | "fdtdir" | "devicetree-dir" | "fdtoverlays"
                )
            })
            .map(|l| format!("\t{}", l.trim()))
            .collect(),
    )
}

/// extlinux.conf with a `migrd` label as the default: every `default`/
/// `ontimeout` names it, other labels lose `menu default`, the rest of the
/// file is kept line for line.
pub fn extlinux_text(original: &str, name: &str, cmdline: &str) -> Result<String, EditError> {
    if cmdline.contains('\n') {
        return Err(EditError::Cmdline);
    }
    let fdt = default_label_fdt(original).ok_or_else(|| EditError::NoLabel(name.to_string()))?;
    let mut out = format!("{MARK}\n");
    let mut had_default = false;
    for line in original.lines() {
        let (k, rest) = keyword(line);
        match k.as_str() {
            "default" | "ontimeout" => {
                let kw = line.split_whitespace().next().unwrap_or("default");
                out.push_str(&format!("{kw} {LABEL}\n"));
                had_default = true;
            }
            "menu" if rest.eq_ignore_ascii_case("default") => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !had_default {
        out = format!("{MARK}\ndefault {LABEL}\n{}", &out[MARK.len() + 1..]);
    }
    out.push_str(&format!(
        "\n{MARK}\nlabel {LABEL}\n\tmenu label migrd migration ramdisk\n\tlinux {KERNEL}\n\tinitrd {INITRD}\n"
    ));
    for l in fdt {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(&format!("\tappend {cmdline}\n"));
    Ok(out)
}

/// uEnv.txt with `uname_r` naming the ramdisk's files and `cmdline` its
/// command line; every other line kept.
pub fn uenv_text(original: &str, name: &str, cmdline: &str) -> Result<String, EditError> {
    if cmdline.contains('\n') {
        return Err(EditError::Cmdline);
    }
    let active = |l: &str, var: &str| l.trim_start().starts_with(&format!("{var}="));
    if original.lines().any(|l| active(l, "uenvcmd")) {
        return Err(EditError::UenvCmd(name.to_string()));
    }
    if !original.lines().any(|l| active(l, "uname_r")) {
        return Err(EditError::NoUnameR(name.to_string()));
    }
    let mut out = String::new();
    let mut cmdline_set = false;
    for line in original.lines() {
        if active(line, "uname_r") {
            out.push_str(&format!("{MARK}\nuname_r={UENV_NAME}\n"));
        } else if active(line, "cmdline") {
            out.push_str(&format!("cmdline={cmdline}\n"));
            cmdline_set = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !cmdline_set {
        out.push_str(&format!("cmdline={cmdline}\n"));
    }
    Ok(out)
}

/// The changes that arm the restore-first boot, in order; the board file
/// comes last (before it is written nothing boots differently).
pub fn arm(edit: &Edit, facts: &UbootFacts, i: &EditInputs) -> Result<Vec<Change>, EditError> {
    let mp = &facts.filesystems[edit.fs].mount_point;
    let file = at(mp, &edit.path);
    let shown = file.display().to_string();
    let mut out = Vec::new();
    let text = match edit.file {
        BoardFile::Extlinux => {
            out.push(Change::MkDir { path: at(mp, DIR) });
            out.push(Change::Copy {
                from: i.kernel.to_path_buf(),
                to: at(mp, KERNEL),
                mode: 0o644,
            });
            out.push(Change::Copy {
                from: i.initramfs.to_path_buf(),
                to: at(mp, INITRD),
                mode: 0o644,
            });
            extlinux_text(i.original, &shown, i.cmdline)?
        }
        BoardFile::UEnv => {
            let text = uenv_text(i.original, &shown, i.cmdline)?;
            if i.dtbs.is_empty() {
                return Err(EditError::NoDtbs(format!(
                    "{}/dtbs/<release>/",
                    file.parent().unwrap_or(mp).display()
                )));
            }
            let dir = file.parent().unwrap_or(mp).to_path_buf();
            let dtb_dir = dir.join("dtbs").join(UENV_NAME);
            out.push(Change::Copy {
                from: i.kernel.to_path_buf(),
                to: dir.join(format!("vmlinuz-{UENV_NAME}")),
                mode: 0o644,
            });
            out.push(Change::Copy {
                from: i.initramfs.to_path_buf(),
                to: dir.join(format!("initrd.img-{UENV_NAME}")),
                mode: 0o644,
            });
            out.push(Change::MkDir {
                path: dtb_dir.clone(),
            });
            for d in i.dtbs {
                if let Some(n) = d.file_name() {
                    out.push(Change::Copy {
                        from: d.clone(),
                        to: dtb_dir.join(n),
                        mode: 0o644,
                    });
                }
            }
            text
        }
    };
    out.push(Change::Write {
        path: file,
        bytes: text.into_bytes(),
        mode: 0o644,
        in_place: false,
    });
    Ok(out)
}

/// The disarm step that puts the original back, and the file carried in
/// the ramdisk for it.
pub fn disarm(
    edit: &Edit,
    facts: &UbootFacts,
    original: &[u8],
) -> (DisarmAction, (String, Vec<u8>)) {
    (
        DisarmAction::RestoreFile {
            partuuid: edit.partuuid.clone(),
            fstype: facts.filesystems[edit.fs].fstype.clone(),
            path: edit.path.trim_start_matches('/').to_string(),
            original: SAVED.into(),
        },
        (SAVED.to_string(), original.to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extlinux_gets_a_default_migrd_label_with_the_boards_device_tree() {
        let orig = "TIMEOUT 30\nDEFAULT debian\nMENU TITLE boot\n\nLABEL rescue\n  LINUX /r\n  FDT /dtbs/rescue.dtb\n\nLABEL debian\n  LINUX /vmlinuz\n  FDTDIR /dtbs\n  MENU DEFAULT\n  APPEND root=/dev/mmcblk0p2\n";
        let t = extlinux_text(orig, "x", "console=ttyS0 panic=10").unwrap();
        assert!(
            t.contains("\nDEFAULT migrd\n") && !t.contains("DEFAULT debian"),
            "{t}"
        );
        assert!(!t.contains("MENU DEFAULT"), "{t}");
        // The board's default label's device tree, not the rescue one.
        assert!(t.ends_with(
            "label migrd\n\tmenu label migrd migration ramdisk\n\tlinux /migrd/kernel\n\tinitrd /migrd/initramfs\n\tFDTDIR /dtbs\n\tappend console=ttyS0 panic=10\n"
        ), "{t}");
        // The other lines are kept as they were.
        assert!(t.contains(
            "LABEL debian\n  LINUX /vmlinuz\n  FDTDIR /dtbs\n  APPEND root=/dev/mmcblk0p2\n"
        ));
        // No DEFAULT line: one is added at the top.
        let t = extlinux_text("label a\n linux /a\n", "x", "q").unwrap();
        assert!(
            t.starts_with(&format!("{MARK}\ndefault migrd\nlabel a\n")),
            "{t}"
        );
        assert_eq!(
            extlinux_text("timeout 1\n", "/boot/extlinux/extlinux.conf", "q"),
            Err(EditError::NoLabel("/boot/extlinux/extlinux.conf".into()))
        );
    }

    #[test]
    fn uenv_names_the_ramdisk_through_uname_r_and_cmdline() {
        let orig = "#Docs: x\n\nuname_r=5.10.168-ti-r71\nenable_uboot_overlays=1\ncmdline=coherent_pool=1M quiet\n";
        let t = uenv_text(orig, "x", "console=ttyS0 panic=10").unwrap();
        assert_eq!(
            t,
            format!("#Docs: x\n\n{MARK}\nuname_r=migrd\nenable_uboot_overlays=1\ncmdline=console=ttyS0 panic=10\n")
        );
        let t = uenv_text("uname_r=1\n#cmdline=x\n", "x", "q").unwrap();
        assert!(t.ends_with("#cmdline=x\ncmdline=q\n"), "{t}");
        assert!(matches!(
            uenv_text("cmdline=x\n", "f", "q"),
            Err(EditError::NoUnameR(_))
        ));
        assert!(matches!(
            uenv_text("uname_r=1\nuenvcmd=run x\n", "f", "q"),
            Err(EditError::UenvCmd(_))
        ));
        assert_eq!(
            uenv_text("uname_r=1\n", "f", "a\nb"),
            Err(EditError::Cmdline)
        );
    }
}
