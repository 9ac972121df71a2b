//! `migrd status` and `migrd cancel`: what the device's migration state is,
//! and undoing an armed migration.

use crate::journal::Journaled;
use crate::migrate::kexec_file::{self, Loaded};
use anyhow::Result;
use migrd_bootloaders::grub::{env::GrubEnv, ENTRY_ID};
use migrd_bootloaders::rpi::oneshot as rpi_oneshot;
use migrd_bootloaders::uboot::restore_first as uboot_restore_first;
use migrd_init::efi::vars::{EfiVars, DEFAULT_DIR as EFIVARS_DIR};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where stage 2 leaves its result on a GRUB device.
pub const STATUS_PATH: &str = "/boot/migrd/status.json";

/// The migration state of a device.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct State {
    /// A migration is armed (the undo journal exists).
    pub armed: bool,
    /// GRUB will boot the ramdisk next (`next_entry` set to migrd's entry).
    pub next_boot_is_ramdisk: bool,
    /// The result stage 2 left, if it came back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<serde_json::Value>,
    /// The migration ramdisk migrd loaded for kexec, while it is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kexec_loaded: Option<Loaded>,
    /// Boot files migrd edited that boot the ramdisk until the ramdisk
    /// puts their originals back (U-Boot's restore-first extlinux.conf or
    /// uEnv.txt, the Raspberry Pi's config.txt), found by migrd's marks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore_first: Vec<PathBuf>,
    /// Whether the device has GRUB's environment block (`next_entry` is
    /// only meaningful then).
    #[serde(skip)]
    pub grub: bool,
    /// When the arming set the firmware's `BootNext` (the undo journal
    /// holds it): whether `BootNext` is still set. The firmware deletes it
    /// as it starts the entry it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootnext_set: Option<bool>,
}

/// If the undo journal under `root` holds the firmware's `BootNext`:
/// whether that variable is set now.
fn bootnext_state(root: &Path) -> Option<bool> {
    let j = Journaled::load(root).ok()?;
    let name = j.entries().iter().find_map(|e| {
        let n = e.path.strip_prefix(EFIVARS_DIR).ok()?.to_str()?;
        n.starts_with("BootNext-").then(|| n.to_string())
    })?;
    let vars = EfiVars::new(under(root, EFIVARS_DIR));
    Some(matches!(vars.read(&name), Ok(Some(_))))
}

/// Whether `path` with `text` is a boot file migrd edited to boot the
/// ramdisk until the ramdisk restores it: marked by U-Boot's restore-first
/// edit, or a config.txt with the Raspberry Pi lines (the same lines in
/// tryboot.txt boot only with the one-shot tryboot flag).
fn boots_ramdisk_until_restored(path: &Path, text: &str) -> bool {
    text.contains(uboot_restore_first::MARK)
        || (path.file_name().is_some_and(|n| n == "config.txt") && text.contains(rpi_oneshot::MARK))
}

/// The journaled files under `root` that now carry a restore-first mark.
fn restore_first_files(root: &Path) -> Vec<PathBuf> {
    let Ok(j) = Journaled::load(root) else {
        return Vec::new();
    };
    j.entries()
        .iter()
        .filter(|e| !e.dir)
        .filter(|e| {
            std::fs::read(root.join(e.path.strip_prefix("/").unwrap_or(&e.path)))
                .map(|b| boots_ramdisk_until_restored(&e.path, &String::from_utf8_lossy(&b)))
                .unwrap_or(false)
        })
        .map(|e| e.path.clone())
        .collect()
}

fn under(root: &Path, p: &str) -> std::path::PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Read the state under `root`.
pub fn read(root: &Path) -> State {
    let armed = Journaled::path(root).exists();
    let grubenv = std::fs::read(under(root, "/boot/grub/grubenv")).ok();
    let grub = grubenv.is_some();
    let next_boot_is_ramdisk = grubenv
        .and_then(|b| GrubEnv::parse(&b).ok())
        .is_some_and(|e| e.get("next_entry") == Some(ENTRY_ID));
    let last_run = std::fs::read_to_string(under(root, STATUS_PATH))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    State {
        armed,
        next_boot_is_ramdisk,
        last_run,
        kexec_loaded: kexec_file::loaded_by_migrd(root),
        restore_first: if armed {
            restore_first_files(root)
        } else {
            Vec::new()
        },
        grub,
        bootnext_set: if armed { bootnext_state(root) } else { None },
    }
}

/// One paragraph for people.
pub fn describe(s: &State) -> String {
    let mut out = Vec::new();
    if let Some(k) = &s.kexec_loaded {
        out.push(format!(
            "loaded for kexec: {} with the migration ramdisk {} ({} bytes); `systemctl kexec` starts it, \
             any other reboot boots this OS; `migrd cancel` unloads it",
            k.kernel.display(),
            k.initramfs.display(),
            k.initramfs_size
        ));
    }
    match (&s.last_run, s.next_boot_is_ramdisk) {
        (_, true) => out.push("armed: the next boot runs the migration ramdisk once".to_string()),
        (Some(r), false) => {
            let outcome = r["outcome"].as_str().unwrap_or("?");
            let step = r["step"].as_str().unwrap_or("?");
            let reason = r["reason"].as_str().unwrap_or("");
            out.push(match outcome {
                "pretend-ok" => "last run: pretend succeeded — every step before the point of no return passed; nothing was written".to_string(),
                "fallback" => format!("last run: FAILED at step '{step}': {reason}; nothing was written to the disk, this OS was booted again"),
                "started" => "last run: the migration ramdisk started but never reported back: a power cut, a reset, or a hang its deadline guard rebooted (see its console or the log device); nothing was written to the disk, this OS was booted again".to_string(),
                o => format!("last run: {o} at {step}: {reason}"),
            });
        }
        (None, false) if s.armed && !s.restore_first.is_empty() => out.push(format!(
            "armed (restore-first): {} boots the migration ramdisk on every boot until the ramdisk puts \
             the original back. This OS is running, so either the device has not rebooted since arming, \
             or the ramdisk failed before that restore and the board's own recovery (U-Boot's altbootcmd \
             once bootcount exceeds bootlimit) booted this OS",
            s.restore_first
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (None, false) if s.armed && s.bootnext_set == Some(true) => out.push(
            "armed: the firmware's BootNext starts the migration ramdisk once, on the next boot"
                .to_string(),
        ),
        (None, false) if s.armed && s.bootnext_set == Some(false) => out.push(
            "armed, but the firmware's BootNext is no longer set: the firmware started the \
             migration ramdisk (or someone cleared BootNext), and the ramdisk left no result: a \
             power cut or reset before its first steps. This OS boots from now on"
                .to_string(),
        ),
        (None, false) if s.armed && s.grub => out.push("armed, but GRUB will not boot the ramdisk (next_entry is not set): GRUB used it up without finding the ramdisk's entry (a power cut while or right after migrd armed, before the entry reached the disk: see docs/migration.md, \"Power cuts\"), the ramdisk ran without leaving a result, or someone changed grubenv".to_string()),
        (None, false) if s.armed => out.push(format!(
            "armed (the undo journal {} exists); the boot loader's one-shot state is not read here",
            Journaled::path(Path::new("/")).display()
        )),
        (None, false) if s.kexec_loaded.is_none() => {
            out.push("no migration armed on this device".to_string())
        }
        (None, false) => {}
    }
    if s.armed {
        out.push("run `migrd cancel` to remove migrd's boot entry and files".to_string());
    }
    out.join("\n")
}

/// Undo an armed migration (unload a kexec'd ramdisk, revert the journal);
/// keeps the last result as `/var/lib/migrd/last-status.json`.
pub fn cancel(root: &Path) -> Result<Vec<String>> {
    cancel_with(root, kexec_file::unload)
}

fn cancel_with(root: &Path, unload: impl FnOnce() -> Result<()>) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if let Some(k) = kexec_file::loaded_by_migrd(root) {
        unload()?;
        let _ = std::fs::remove_file(kexec_file::marker(root));
        done.push(format!(
            "unloaded the kexec image ({} with {})",
            k.kernel.display(),
            k.initramfs.display()
        ));
    }
    // kexec leaves no journal: then there is nothing more to revert.
    if !done.is_empty() && !Journaled::path(root).exists() {
        return Ok(done);
    }
    let j = Journaled::load(root)?;
    let status = under(root, STATUS_PATH);
    if let Ok(bytes) = std::fs::read(&status) {
        let keep = under(root, "/var/lib/migrd/last-status.json");
        std::fs::write(&keep, bytes)?;
        std::fs::remove_file(&status)?;
    }
    done.extend(j.revert()?);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrd_bootloaders::change::Change;

    #[test]
    fn states_read_and_described() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("boot/grub")).unwrap();
        assert!(describe(&read(r)).contains("no migration armed"));
        let mut env = GrubEnv::default();
        env.set("next_entry", ENTRY_ID);
        let mut j = Journaled::begin(r).unwrap();
        j.apply(&Change::Write {
            path: "/boot/grub/grubenv".into(),
            bytes: env.to_block().unwrap(),
            mode: 0o644,
            in_place: true,
        })
        .unwrap();
        j.apply(&Change::MkDir {
            path: "/boot/migrd".into(),
        })
        .unwrap();
        let s = read(r);
        assert!(s.armed && s.next_boot_is_ramdisk);
        assert!(describe(&s).contains("next boot runs"));
        // GRUB cleared next_entry, stage 2 wrote its result.
        env.set("next_entry", "");
        std::fs::write(r.join("boot/grub/grubenv"), env.to_block().unwrap()).unwrap();
        std::fs::write(r.join("boot/migrd/status.json"), r#"{"outcome":"fallback","step":"verify","reason":"payload file /payload/balena.img.gz has sha256 x"}"#).unwrap();
        let text = describe(&read(r));
        assert!(
            text.contains("FAILED at step 'verify'")
                && text.contains("sha256")
                && text.contains("migrd cancel"),
            "{text}"
        );
        let undone = cancel(r).unwrap();
        assert!(!r.join("boot/migrd").exists(), "{undone:?}");
        assert!(!r.join("boot/grub/grubenv").exists());
        assert!(r.join("var/lib/migrd/last-status.json").exists());
        assert!(describe(&read(r)).contains("no migration armed"));
    }

    #[test]
    fn bootnext_is_read_from_the_firmware_not_from_grub() {
        use migrd_init::efi::vars::global;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // A UEFI device with Debian's grubenv, armed through BootNext.
        std::fs::create_dir_all(r.join("boot/grub")).unwrap();
        let env = GrubEnv::default();
        std::fs::write(r.join("boot/grub/grubenv"), env.to_block().unwrap()).unwrap();
        let vars = r.join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&vars).unwrap();
        let mut j = Journaled::begin(r).unwrap();
        j.apply(&Change::EfiVar {
            name: global("BootNext"),
            attributes: 7,
            data: Some(vec![6, 0]),
        })
        .unwrap();
        let text = describe(&read(r));
        assert!(
            text.contains("BootNext starts the migration ramdisk once") && !text.contains("GRUB"),
            "{text}"
        );
        // The firmware deleted BootNext as it started the ramdisk, which
        // then lost its power before its status step.
        std::fs::remove_file(vars.join(global("BootNext"))).unwrap();
        let text = describe(&read(r));
        assert!(
            text.contains("BootNext is no longer set")
                && text.contains("power cut")
                && text.contains("migrd cancel")
                && !text.contains("GRUB"),
            "{text}"
        );
    }

    #[test]
    fn a_ramdisk_that_started_and_never_reported_is_explained() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("boot/migrd")).unwrap();
        std::fs::write(
            r.join("boot/migrd/status.json"),
            r#"{"outcome":"started","step":"disarm","reason":"the migration ramdisk started"}"#,
        )
        .unwrap();
        let text = describe(&read(r));
        assert!(
            text.contains("started but never reported back")
                && text.contains("nothing was written"),
            "{text}"
        );
    }

    #[test]
    fn a_restore_first_edit_is_named_and_no_grub_message_on_a_board_without_grub() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("boot/firmware/extlinux")).unwrap();
        std::fs::write(
            r.join("boot/firmware/extlinux/extlinux.conf"),
            "default debian\n",
        )
        .unwrap();
        let mut j = Journaled::begin(r).unwrap();
        j.apply(&Change::Write {
            path: "/boot/firmware/uboot.env".into(),
            bytes: b"env".to_vec(),
            mode: 0o644,
            in_place: true,
        })
        .unwrap();
        // Armed, the board file not edited (yet): no GRUB talk.
        let text = describe(&read(r));
        assert!(
            text.starts_with("armed (the undo journal") && !text.contains("GRUB"),
            "{text}"
        );
        j.apply(&Change::Write {
            path: "/boot/firmware/extlinux/extlinux.conf".into(),
            bytes: format!("{}\ndefault migrd\n", uboot_restore_first::MARK).into_bytes(),
            mode: 0o644,
            in_place: false,
        })
        .unwrap();
        let s = read(r);
        assert_eq!(
            s.restore_first,
            [PathBuf::from("/boot/firmware/extlinux/extlinux.conf")]
        );
        let text = describe(&s);
        assert!(
            text.contains("armed (restore-first): /boot/firmware/extlinux/extlinux.conf boots")
                && text.contains("altbootcmd")
                && text.contains("migrd cancel")
                && !text.contains("GRUB"),
            "{text}"
        );
        cancel(r).unwrap();
        assert!(read(r).restore_first.is_empty());
        let pi = format!("{}\nkernel=kernel8.img\n", rpi_oneshot::MARK);
        assert!(boots_ramdisk_until_restored(
            Path::new("/boot/firmware/config.txt"),
            &pi
        ));
        assert!(!boots_ramdisk_until_restored(
            Path::new("/boot/firmware/tryboot.txt"),
            &pi
        ));
    }

    #[test]
    fn kexec_load_reported_and_cancel_unloads_it() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("sys/kernel")).unwrap();
        std::fs::write(r.join("sys/kernel/kexec_loaded"), "1\n").unwrap();
        let l = Loaded {
            kernel: "/boot/vmlinuz-6.1.0-41-amd64".into(),
            initramfs: "/root/ramdisk/initramfs.img".into(),
            initramfs_size: 42,
            cmdline: "rootfstype=ramfs panic=10".into(),
        };
        kexec_file::write_marker(r, &l).unwrap();
        let s = read(r);
        assert_eq!(s.kexec_loaded.as_ref(), Some(&l));
        assert!(!s.armed);
        let text = describe(&s);
        assert!(
            text.contains("loaded for kexec")
                && text.contains("systemctl kexec")
                && !text.contains("no migration armed"),
            "{text}"
        );
        let mut unloaded = false;
        let done = cancel_with(r, || {
            unloaded = true;
            std::fs::write(r.join("sys/kernel/kexec_loaded"), "0\n")?;
            Ok(())
        })
        .unwrap();
        assert!(unloaded && done[0].contains("unloaded"), "{done:?}");
        assert!(!kexec_file::marker(r).exists());
        assert!(describe(&read(r)).contains("no migration armed"));
        // Nothing left: cancel says so instead of pretending.
        assert!(cancel_with(r, || Ok(())).is_err());
    }
}
