//! The undo journal: every change stage 1 makes to the device goes through
//! here. Before a file is touched its original bytes are saved and the
//! journal is written and synced; `migrd cancel` replays it backwards and
//! puts every byte back (or removes what did not exist).

use anyhow::{bail, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_init::efi::vars::{EfiVars, DEFAULT_DIR as EFIVARS_DIR};
use migrd_init::payload::sha256_hex;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Journal format version.
pub const VERSION: u32 = 1;
/// Where the journal lives on the device.
pub const DIR: &str = "/var/lib/migrd";

/// What was at a path before migrd changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "was", rename_all = "kebab-case")]
pub enum Original {
    /// Nothing: migrd created it.
    Absent,
    /// A directory that already existed (left alone on cancel).
    Dir,
    /// A file, saved under the journal folder.
    File {
        /// Copy of the original bytes.
        saved: PathBuf,
        /// SHA-256 of them.
        sha256: String,
        /// Permission bits.
        mode: u32,
        /// Restore by rewriting in place (grubenv).
        in_place: bool,
    },
    /// An EFI variable that did not exist (cancel deletes it).
    NoEfiVar,
    /// An EFI variable's value before migrd set or deleted it.
    EfiVar {
        /// Its attributes.
        attributes: u32,
        /// Its value, hex.
        data: String,
    },
}

/// One journaled change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path on the device.
    pub path: PathBuf,
    /// What was there.
    pub original: Original,
    /// Whether the path is a directory migrd made.
    pub dir: bool,
}

/// The journal file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// Changes in the order they were made.
    pub entries: Vec<Entry>,
}

/// Applies and reverts changes under a root prefix (`/` on a device, a
/// fixture tree in tests).
#[derive(Debug)]
pub struct Journaled {
    root: PathBuf,
    journal: Journal,
}

fn on(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

fn sync_write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("migrd-tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    sync_parent(path);
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(p) = path.parent() {
        if let Ok(d) = File::open(p) {
            let _ = d.sync_all();
        }
    }
}

/// Copy a file and set its mode. Not `std::fs::copy`: that also forces the
/// source's mode on the copy, which vfat (the ESP) refuses with EPERM unless
/// it matches the mount's umask; the mode is best effort there.
fn copy_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let mut from = File::open(src)?;
    let mut to = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(dst)?;
    std::io::copy(&mut from, &mut to)?;
    match to.set_permissions(std::fs::Permissions::from_mode(mode)) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => {
            log::debug!("{}: mode {mode:o} not kept (vfat): {e}", dst.display())
        }
        r => r?,
    }
    to.sync_all()?;
    Ok(())
}

fn write_in_place(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} to rewrite it in place", path.display()))?;
    f.write_all(bytes)?;
    f.set_len(bytes.len() as u64)?;
    f.sync_all()?;
    Ok(())
}

impl Journaled {
    /// Start a journal under `root`. Refuses when one already exists: the
    /// device is armed already (`migrd cancel` first).
    pub fn begin(root: &Path) -> Result<Self> {
        let j = Self::path(root);
        if j.exists() {
            bail!(
                "{} exists: a migration is already armed on this device; run `migrd cancel` first",
                j.display()
            );
        }
        std::fs::create_dir_all(on(root, Path::new(DIR)).join("saved"))?;
        let me = Journaled {
            root: root.to_path_buf(),
            journal: Journal {
                version: VERSION,
                entries: vec![],
            },
        };
        me.save()?;
        Ok(me)
    }

    /// Load the journal of an armed device.
    pub fn load(root: &Path) -> Result<Self> {
        let p = Self::path(root);
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("reading {} (is a migration armed?)", p.display()))?;
        let journal: Journal =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        if journal.version != VERSION {
            bail!(
                "{} has format {} but this migrd reads {VERSION}",
                p.display(),
                journal.version
            );
        }
        Ok(Journaled {
            root: root.to_path_buf(),
            journal,
        })
    }

    /// Where the journal file is.
    pub fn path(root: &Path) -> PathBuf {
        on(root, Path::new(DIR)).join("journal.json")
    }

    /// The entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.journal.entries
    }

    fn save(&self) -> Result<()> {
        sync_write(
            &Self::path(&self.root),
            serde_json::to_string_pretty(&self.journal)?.as_bytes(),
            0o600,
        )
    }

    fn record(&mut self, path: &Path, dir: bool, in_place: bool) -> Result<()> {
        let real = on(&self.root, path);
        let original = match std::fs::symlink_metadata(&real) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Original::Absent,
            Err(e) => return Err(e).with_context(|| format!("checking {}", real.display())),
            Ok(m) if m.is_dir() => Original::Dir,
            Ok(m) => {
                let n = self.journal.entries.len();
                let saved = on(&self.root, Path::new(DIR))
                    .join("saved")
                    .join(format!("{n:03}"));
                let bytes =
                    std::fs::read(&real).with_context(|| format!("saving {}", real.display()))?;
                sync_write(&saved, &bytes, 0o600)?;
                Original::File {
                    saved: Path::new(DIR).join("saved").join(format!("{n:03}")),
                    sha256: sha256_hex(&bytes[..])?,
                    mode: m.permissions().mode() & 0o7777,
                    in_place,
                }
            }
        };
        self.journal.entries.push(Entry {
            path: path.to_path_buf(),
            original,
            dir,
        });
        self.save()
    }

    /// Journal, then apply, one change.
    pub fn apply(&mut self, c: &Change) -> Result<()> {
        match c {
            Change::MkDir { path } => {
                // Record every missing ancestor so cancel removes exactly those.
                let mut missing = Vec::new();
                let mut p = path.as_path();
                while !on(&self.root, p).exists() {
                    missing.push(p.to_path_buf());
                    match p.parent() {
                        Some(q) => p = q,
                        None => break,
                    }
                }
                for m in missing.iter().rev() {
                    self.record(m, true, false)?;
                    std::fs::create_dir(on(&self.root, m))
                        .with_context(|| format!("creating {}", m.display()))?;
                }
            }
            Change::Write {
                path,
                bytes,
                mode,
                in_place,
            } => {
                let real = on(&self.root, path);
                let exists = real.exists();
                self.record(path, false, *in_place && exists)?;
                if *in_place && exists {
                    write_in_place(&real, bytes)?;
                } else {
                    sync_write(&real, bytes, *mode)?;
                }
            }
            Change::Copy { from, to, mode } => {
                self.record(to, false, false)?;
                let real = on(&self.root, to);
                let src = on(&self.root, from);
                copy_file(&src, &real, *mode)
                    .with_context(|| format!("copying {} to {}", src.display(), real.display()))?;
                sync_parent(&real);
            }
            Change::EfiVar {
                name,
                attributes,
                data,
            } => {
                let vars = self.efivars();
                let original = match vars.read(name)? {
                    None => Original::NoEfiVar,
                    Some(v) => Original::EfiVar {
                        attributes: v.attributes,
                        data: hex::encode(&v.data),
                    },
                };
                self.journal.entries.push(Entry {
                    path: Path::new(EFIVARS_DIR).join(name),
                    original,
                    dir: false,
                });
                self.save()?;
                match data {
                    Some(d) => vars.write(name, *attributes, d)?,
                    None => {
                        vars.delete(name)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn efivars(&self) -> EfiVars {
        EfiVars::new(on(&self.root, Path::new(EFIVARS_DIR)))
    }

    fn revert_var(&self, e: &Entry) -> Result<Option<String>> {
        let name = e
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("journal entry {} names no variable", e.path.display()))?;
        let vars = self.efivars();
        Ok(match &e.original {
            Original::EfiVar { attributes, data } => {
                let bytes = hex::decode(data)
                    .with_context(|| format!("the saved value of {name} is damaged"))?;
                vars.write(&name, *attributes, &bytes)?;
                Some(format!("restored EFI variable {name}"))
            }
            // Gone already: BootNext after the firmware consumed it, the
            // ramdisk's entry after stage 2 deleted it.
            _ => vars
                .delete(&name)?
                .then(|| format!("deleted EFI variable {name}")),
        })
    }

    /// Undo everything, newest first, then remove the journal.
    pub fn revert(self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for e in self.journal.entries.iter().rev() {
            let real = on(&self.root, &e.path);
            match &e.original {
                Original::NoEfiVar | Original::EfiVar { .. } => {
                    done.extend(self.revert_var(e)?);
                }
                Original::Absent if e.dir => {
                    // Only if empty: never delete what someone else put there.
                    match std::fs::remove_dir(&real) {
                        Ok(()) => done.push(format!("removed {}", e.path.display())),
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => bail!("cannot remove {}: {err}", real.display()),
                    }
                }
                Original::Absent => match std::fs::remove_file(&real) {
                    Ok(()) => done.push(format!("removed {}", e.path.display())),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => bail!("cannot remove {}: {err}", real.display()),
                },
                Original::Dir => {}
                Original::File {
                    saved,
                    sha256,
                    mode,
                    in_place,
                } => {
                    let bytes = std::fs::read(on(&self.root, saved)).with_context(|| {
                        format!("reading the saved copy of {}", e.path.display())
                    })?;
                    if &sha256_hex(&bytes[..])? != sha256 {
                        bail!(
                            "the saved copy of {} is damaged (hash mismatch); not restoring it",
                            e.path.display()
                        );
                    }
                    if *in_place && real.exists() {
                        write_in_place(&real, &bytes)?;
                    } else {
                        sync_write(&real, &bytes, *mode)?;
                    }
                    done.push(format!("restored {}", e.path.display()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(on(&self.root, Path::new(DIR)).join("saved"));
        std::fs::remove_file(Self::path(&self.root))?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use walkdir_lite::snapshot;

    /// Every file under a folder with its bytes and mode.
    mod walkdir_lite {
        use std::collections::BTreeMap;
        use std::os::unix::fs::PermissionsExt;
        use std::path::Path;
        pub fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
            let mut m = BTreeMap::new();
            let mut stack = vec![dir.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let p = e.path();
                    let meta = e.metadata().unwrap();
                    let key = p.strip_prefix(dir).unwrap().display().to_string();
                    if meta.is_dir() {
                        m.insert(key + "/", (vec![], meta.permissions().mode()));
                        stack.push(p);
                    } else {
                        m.insert(key, (std::fs::read(&p).unwrap(), meta.permissions().mode()));
                    }
                }
            }
            m
        }
    }

    fn device() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("boot/grub")).unwrap();
        std::fs::write(d.path().join("boot/grub/grub.cfg"), "menuentry debian {}\n").unwrap();
        std::fs::write(d.path().join("boot/grub/grubenv"), vec![b'#'; 1024]).unwrap();
        std::fs::write(d.path().join("boot/vmlinuz"), b"kernel").unwrap();
        d
    }

    fn changes() -> Vec<Change> {
        vec![
            Change::MkDir {
                path: "/boot/migrd/sub".into(),
            },
            Change::Copy {
                from: "/boot/vmlinuz".into(),
                to: "/boot/migrd/vmlinuz".into(),
                mode: 0o644,
            },
            Change::Write {
                path: "/boot/grub/custom.cfg".into(),
                bytes: b"entry\n".to_vec(),
                mode: 0o644,
                in_place: false,
            },
            Change::Write {
                path: "/boot/grub/grubenv".into(),
                bytes: vec![b'x'; 1024],
                mode: 0o644,
                in_place: true,
            },
        ]
    }

    #[test]
    fn cancel_restores_every_byte() {
        let d = device();
        let before: BTreeMap<_, _> = snapshot(&d.path().join("boot"));
        let mut j = Journaled::begin(d.path()).unwrap();
        for c in changes() {
            j.apply(&c).unwrap();
        }
        assert_eq!(
            std::fs::read(d.path().join("boot/grub/grubenv")).unwrap(),
            vec![b'x'; 1024]
        );
        assert_eq!(
            std::fs::read(d.path().join("boot/migrd/vmlinuz")).unwrap(),
            b"kernel"
        );
        // A second arm is refused while this one stands.
        assert!(Journaled::begin(d.path())
            .unwrap_err()
            .to_string()
            .contains("migrd cancel"));
        let done = Journaled::load(d.path()).unwrap().revert().unwrap();
        assert!(
            done.iter().any(|l| l == "restored /boot/grub/grubenv"),
            "{done:?}"
        );
        assert_eq!(snapshot(&d.path().join("boot")), before);
        assert!(!Journaled::path(d.path()).exists());
    }

    #[test]
    fn grubenv_keeps_its_inode_when_rewritten_in_place() {
        use std::os::unix::fs::MetadataExt;
        let d = device();
        let ino = std::fs::metadata(d.path().join("boot/grub/grubenv"))
            .unwrap()
            .ino();
        let mut j = Journaled::begin(d.path()).unwrap();
        for c in changes() {
            j.apply(&c).unwrap();
        }
        assert_eq!(
            std::fs::metadata(d.path().join("boot/grub/grubenv"))
                .unwrap()
                .ino(),
            ino
        );
        j.revert().unwrap();
        assert_eq!(
            std::fs::metadata(d.path().join("boot/grub/grubenv"))
                .unwrap()
                .ino(),
            ino
        );
    }

    #[test]
    fn damaged_saved_copy_is_not_restored() {
        let d = device();
        let mut j = Journaled::begin(d.path()).unwrap();
        for c in changes() {
            j.apply(&c).unwrap();
        }
        let saved = d.path().join("var/lib/migrd/saved");
        for e in std::fs::read_dir(&saved).unwrap().flatten() {
            std::fs::write(e.path(), b"tampered").unwrap();
        }
        let e = Journaled::load(d.path())
            .unwrap()
            .revert()
            .unwrap_err()
            .to_string();
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn efi_variables_are_journaled_and_cancel_restores_or_deletes_them() {
        use migrd_init::efi::vars::{boot_var, global};
        let d = device();
        let dir = d.path().join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(global("BootNext")), [7, 0, 0, 0, 1, 0]).unwrap();
        std::fs::write(dir.join(global("BootOrder")), [7, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        std::fs::write(dir.join(boot_var(9)), [7, 0, 0, 0, 0xaa]).unwrap();
        let before = snapshot(&dir);
        let mut j = Journaled::begin(d.path()).unwrap();
        let set = |name: String, data: Option<Vec<u8>>| Change::EfiVar {
            name,
            attributes: 7,
            data,
        };
        j.apply(&set(boot_var(3), Some(vec![1, 2, 3]))).unwrap();
        j.apply(&set(global("BootNext"), Some(vec![3, 0]))).unwrap();
        j.apply(&set(boot_var(9), None)).unwrap();
        assert_eq!(
            std::fs::read(dir.join(boot_var(3))).unwrap(),
            [7, 0, 0, 0, 1, 2, 3]
        );
        assert_eq!(
            std::fs::read(dir.join(global("BootNext"))).unwrap(),
            [7, 0, 0, 0, 3, 0]
        );
        assert!(!dir.join(boot_var(9)).exists());
        let done = Journaled::load(d.path()).unwrap().revert().unwrap();
        assert!(
            done.contains(&format!("deleted EFI variable {}", boot_var(3))),
            "{done:?}"
        );
        assert!(done.contains(&format!("restored EFI variable {}", global("BootNext"))));
        assert_eq!(snapshot(&dir), before);
    }

    #[test]
    fn cancel_after_the_firmware_consumed_bootnext_is_fine() {
        use migrd_init::efi::vars::global;
        let d = device();
        let dir = d.path().join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&dir).unwrap();
        let mut j = Journaled::begin(d.path()).unwrap();
        j.apply(&Change::EfiVar {
            name: global("BootNext"),
            attributes: 7,
            data: Some(vec![3, 0]),
        })
        .unwrap();
        std::fs::remove_file(dir.join(global("BootNext"))).unwrap();
        let done = j.revert().unwrap();
        assert!(done.is_empty(), "{done:?}");
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    }

    #[test]
    fn no_journal_means_nothing_armed() {
        let d = device();
        let e = Journaled::load(d.path()).err().unwrap().to_string();
        assert!(e.contains("is a migration armed"), "{e}");
    }
}
