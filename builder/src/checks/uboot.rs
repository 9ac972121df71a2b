//! The U-Boot decision `migrd check` reports and `migrd migrate` arms: one
//! function, so the two cannot disagree. It takes the probe's U-Boot facts,
//! runs `migrd_bootloaders::uboot::decide`, and reads what arming will need
//! (the board's script or the file the restore-first mode edits, checked by
//! running the edit), so every refusal shows up in `migrd check` already.

use super::uboot_counter::{self, Counter, Unarmed};
use crate::probe::firmware::Firmware;
use crate::probe::{rootfs, Facts};
use migrd_bootloaders::uboot::decide::RESTORE_FIRST_FLAG;
use migrd_bootloaders::uboot::restore_first;
use migrd_bootloaders::uboot::{self, BoardFile, Decision, Flow, UbootFacts};
use std::path::{Path, PathBuf};

/// What was decided, with what arming needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The facts decided from.
    pub facts: UbootFacts,
    /// The decision.
    pub decision: Decision,
    /// The board's script ([`Flow::ReplaceScript`]) or the board file the
    /// restore-first mode edits, as read now.
    pub original: Option<Vec<u8>>,
    /// uEnv.txt restore-first: the running kernel's device trees (device
    /// paths).
    pub dtbs: Vec<PathBuf>,
    /// Restore-first: the board's boot counter, when it counts boots (see
    /// [`uboot_counter`]).
    pub counter: Option<Result<Counter, Unarmed>>,
}

impl Decided {
    /// Whether a reset before stage 2 ran boots the old OS by itself.
    pub fn self_clearing(&self) -> bool {
        matches!(self.decision, Decision::OneShot(_))
    }

    /// A file of the decision's filesystem, as the device sees it.
    fn on_device(&self, fs: usize, in_fs: &str) -> PathBuf {
        self.facts.filesystems[fs]
            .mount_point
            .join(in_fs.trim_start_matches('/'))
    }
}

fn read(root: &Path, device_path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(rootfs::join(root, device_path))
        .map_err(|e| format!("reading {}: {e}", device_path.display()))
}

/// The `.dtb` files of `dir` (a device path), sorted.
fn dtbs(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(rootfs::join(root, dir)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| dir.join(e.file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "dtb"))
        .collect();
    v.sort();
    v
}

/// How migrd arms this U-Boot board (`restore_first`: the operator passed
/// `--uboot-restore-first`), or why it does not.
pub fn decide(f: &Facts, restore_first: bool) -> Result<Decided, String> {
    if f.boot.firmware != Firmware::Uboot {
        return Err("not a U-Boot board".into());
    }
    let facts = match &f.boot.uboot {
        Some(Ok(u)) => u.clone(),
        Some(Err(e)) => return Err(e.clone()),
        None => return Err("not a U-Boot board".into()),
    };
    let decision = uboot::decide(&facts, restore_first).map_err(|e| e.to_string())?;
    let mut d = Decided {
        facts,
        decision: decision.clone(),
        original: None,
        dtbs: Vec::new(),
        counter: None,
    };
    match &decision {
        Decision::OneShot(Flow::ReplaceScript { fs, script }) => {
            d.original = Some(read(&f.root, &d.on_device(*fs, script))?);
        }
        Decision::OneShot(Flow::BeforeExtlinux { .. }) => {}
        Decision::RestoreFirst(edit) => {
            let path = d.on_device(edit.fs, &edit.path);
            let bytes = read(&f.root, &path)?;
            let text = String::from_utf8_lossy(&bytes);
            let shown = path.display().to_string();
            match edit.file {
                BoardFile::Extlinux => {
                    restore_first::extlinux_text(&text, &shown, "").map_err(|e| e.to_string())?;
                }
                BoardFile::UEnv => {
                    restore_first::uenv_text(&text, &shown, "").map_err(|e| e.to_string())?;
                    let release = rootfs::read_trimmed(&f.root, "proc/sys/kernel/osrelease")
                        .unwrap_or_default();
                    let dir = path
                        .parent()
                        .unwrap_or(Path::new("/"))
                        .join("dtbs")
                        .join(&release);
                    d.dtbs = dtbs(&f.root, &dir);
                    if d.dtbs.is_empty() {
                        return Err(
                            restore_first::EditError::NoDtbs(dir.display().to_string()).to_string()
                        );
                    }
                }
            }
            d.original = Some(bytes);
            d.counter = uboot_counter::counter(&f.root, &d.facts);
        }
    }
    Ok(d)
}

/// `migrd check`'s reason for a usable U-Boot strategy.
pub fn reason(d: &Decided) -> String {
    match &d.decision {
        Decision::OneShot(Flow::ReplaceScript { fs, script }) => format!(
            "self-clearing boot script in place of {} (the board's script is kept and runs on every other boot)",
            d.on_device(*fs, script).display()
        ),
        Decision::OneShot(Flow::BeforeExtlinux { fs, extlinux }) => format!(
            "self-clearing {} runs before {}",
            d.on_device(*fs, "/boot.scr").display(),
            d.on_device(*fs, extlinux).display()
        ),
        Decision::RestoreFirst(edit) => {
            let mut r = format!(
                "restore-first ({RESTORE_FIRST_FLAG}): {} is edited to boot the ramdisk, which puts the original \
                 back first thing; until then every boot boots the ramdisk again",
                d.on_device(edit.fs, &edit.path).display()
            );
            r.push_str(&uboot_counter::describe(&d.counter));
            r
        }
    }
}
