//! EFI variables through efivarfs: each variable is a file `Name-GUID`
//! whose content is a 4-byte little-endian attribute word followed by the
//! value. A write must hand the kernel attributes and value in one
//! `write()`; deleting is `unlink`.

use super::immutable;
use super::load_option::LoadOption;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The EFI global variable GUID (`EFI_GLOBAL_VARIABLE`).
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Where efivarfs is mounted on Linux.
pub const DEFAULT_DIR: &str = "/sys/firmware/efi/efivars";

/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS: what boot variables
/// carry.
pub const NV_BS_RT: u32 = 0x7;

/// `Name-8be4df61-…` for a global variable.
pub fn global(name: &str) -> String {
    format!("{name}-{GLOBAL}")
}

/// The efivarfs name of `Boot####`.
pub fn boot_var(n: u16) -> String {
    global(&format!("Boot{n:04X}"))
}

/// The number of a `Boot####-<global guid>` name (hex digits, either case).
pub fn boot_number(var: &str) -> Option<u16> {
    let rest = var.strip_prefix("Boot")?;
    let (hex, guid) = rest.split_at_checked(4)?;
    if !guid.strip_prefix('-')?.eq_ignore_ascii_case(GLOBAL) {
        return None;
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

/// A list of u16 (BootOrder) from little-endian bytes.
pub fn u16_list(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Little-endian bytes of a u16 list.
pub fn u16_bytes(list: &[u16]) -> Vec<u8> {
    list.iter().flat_map(|n| n.to_le_bytes()).collect()
}

/// An error on one variable, naming it.
#[derive(Debug, thiserror::Error)]
#[error("EFI variable {name} ({path}): {what}: {source}")]
pub struct VarError {
    /// Variable name with GUID.
    pub name: String,
    /// Its file.
    pub path: String,
    /// What was being done.
    pub what: &'static str,
    /// The cause.
    pub source: std::io::Error,
}

/// A `Boot####` number and its option (or why it does not decode).
pub type BootEntry = (u16, Result<LoadOption, String>);

/// A value read from efivarfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    /// `EFI_VARIABLE_*` attribute bits.
    pub attributes: u32,
    /// The value.
    pub data: Vec<u8>,
}

/// efivarfs under a folder (`/sys/firmware/efi/efivars`, a temporary
/// folder in tests).
#[derive(Clone, Debug)]
pub struct EfiVars {
    dir: PathBuf,
}

impl Default for EfiVars {
    fn default() -> Self {
        EfiVars::new(DEFAULT_DIR)
    }
}

impl EfiVars {
    /// Variables in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EfiVars { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn err(&self, name: &str, what: &'static str, source: std::io::Error) -> VarError {
        VarError {
            name: name.to_string(),
            path: self.path(name).display().to_string(),
            what,
            source,
        }
    }

    /// Read `name` (with GUID); None when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Var>, VarError> {
        match std::fs::read(self.path(name)) {
            Ok(b) if b.len() >= 4 => Ok(Some(Var {
                attributes: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                data: b[4..].to_vec(),
            })),
            Ok(_) => Err(self.err(
                name,
                "reading",
                std::io::Error::new(ErrorKind::InvalidData, "shorter than its attribute word"),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(name, "reading", e)),
        }
    }

    /// Create or replace `name` with `data` and `attributes`. An immutable
    /// existing variable is made writable for the write and immutable again
    /// after it.
    pub fn write(&self, name: &str, attributes: u32, data: &[u8]) -> Result<(), VarError> {
        let path = self.path(name);
        let existing = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(self.err(name, "opening", e)),
        };
        let was_immutable = match &existing {
            Some(f) => immutable::clear(f).map_err(|e| self.err(name, "clearing immutable", e))?,
            None => false,
        };
        let mut buf = Vec::with_capacity(4 + data.len());
        buf.extend_from_slice(&attributes.to_le_bytes());
        buf.extend_from_slice(data);
        let res = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut f| {
                // One write() call: efivarfs takes each call as a whole
                // SetVariable(), so a split write would set a short value.
                let n = f.write(&buf)?;
                if n != buf.len() {
                    return Err(std::io::Error::new(
                        ErrorKind::WriteZero,
                        format!("short write ({n} of {} bytes)", buf.len()),
                    ));
                }
                // Plain files (tests) keep stale tail bytes otherwise.
                if f.metadata()?.len() > buf.len() as u64 {
                    f.set_len(buf.len() as u64)?;
                }
                Ok(())
            })
            .map_err(|e| self.err(name, "writing", e));
        if let (Some(f), true) = (&existing, was_immutable) {
            let restored =
                immutable::restore(f).map_err(|e| self.err(name, "restoring immutable", e));
            res?;
            return restored;
        }
        res
    }

    /// Delete `name`. Returns false when it was already gone.
    pub fn delete(&self, name: &str) -> Result<bool, VarError> {
        let path = self.path(name);
        match File::open(&path) {
            Ok(f) => {
                immutable::clear(&f).map_err(|e| self.err(name, "clearing immutable", e))?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.err(name, "opening", e)),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(name, "deleting", e)),
        }
    }

    /// A global u16-list variable (`BootOrder`); None when absent.
    pub fn u16s(&self, var: &str) -> Result<Option<Vec<u16>>, VarError> {
        Ok(self.read(&global(var))?.map(|v| u16_list(&v.data)))
    }

    /// `BootOrder`, empty when absent.
    pub fn boot_order(&self) -> Result<Vec<u16>, VarError> {
        Ok(self.u16s("BootOrder")?.unwrap_or_default())
    }

    /// Replace `BootOrder`.
    pub fn set_boot_order(&self, order: &[u16]) -> Result<(), VarError> {
        self.write(&global("BootOrder"), NV_BS_RT, &u16_bytes(order))
    }

    /// `BootCurrent`: the entry the firmware booted this time.
    pub fn boot_current(&self) -> Result<Option<u16>, VarError> {
        Ok(self.u16s("BootCurrent")?.and_then(|l| l.first().copied()))
    }

    /// `BootNext`, when set.
    pub fn boot_next(&self) -> Result<Option<u16>, VarError> {
        Ok(self.u16s("BootNext")?.and_then(|l| l.first().copied()))
    }

    /// Numbers of the existing `Boot####` variables, sorted.
    pub fn boot_numbers(&self) -> Result<Vec<u16>, VarError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| self.err("*", "listing", e))?;
        let mut v: Vec<u16> = rd
            .flatten()
            .filter_map(|e| boot_number(&e.file_name().to_string_lossy()))
            .collect();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }

    /// Every `Boot####` entry with its decoded option; entries that do not
    /// decode are returned as errors, not skipped silently.
    pub fn boot_entries(&self) -> Result<Vec<BootEntry>, VarError> {
        let mut out = Vec::new();
        for n in self.boot_numbers()? {
            if let Some(v) = self.read(&boot_var(n))? {
                out.push((n, LoadOption::decode(&v.data).map_err(|e| e.to_string())));
            }
        }
        Ok(out)
    }

    /// The lowest number with no `Boot####` variable.
    pub fn first_free_boot(&self) -> Result<u16, VarError> {
        first_free(&self.boot_numbers()?).ok_or_else(|| {
            self.err(
                "Boot####",
                "choosing a number",
                std::io::Error::other("all 65536 Boot#### numbers are taken"),
            )
        })
    }
}

/// The lowest number not in `used` (sorted or not).
pub fn first_free(used: &[u16]) -> Option<u16> {
    (0..=u16::MAX).find(|n| !used.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::efi::load_option::{HardDrive, PartSignature};

    #[test]
    fn names_and_lists() {
        assert_eq!(boot_var(0x1a), format!("Boot001A-{GLOBAL}"));
        assert_eq!(boot_number(&boot_var(0xbeef)), Some(0xbeef));
        assert_eq!(boot_number(&format!("Boot001a-{GLOBAL}")), Some(0x1a));
        assert_eq!(boot_number(&format!("BootOrder-{GLOBAL}")), None);
        assert_eq!(boot_number(&format!("BootNext-{GLOBAL}")), None);
        assert_eq!(
            boot_number("Boot0001-00000000-0000-0000-0000-000000000000"),
            None
        );
        assert_eq!(u16_list(&[1, 0, 0x10, 0x20, 9]), vec![1, 0x2010]);
        assert_eq!(u16_bytes(&[1, 0x2010]), vec![1, 0, 0x10, 0x20]);
        assert_eq!(first_free(&[0, 1, 3]), Some(2));
        assert_eq!(first_free(&[]), Some(0));
    }

    #[test]
    fn write_read_delete_with_attribute_prefix() {
        let d = tempfile::tempdir().unwrap();
        let v = EfiVars::new(d.path());
        assert_eq!(v.read(&global("BootNext")).unwrap(), None);
        assert_eq!(v.boot_next().unwrap(), None);
        v.write(&global("BootNext"), NV_BS_RT, &[4, 0]).unwrap();
        assert_eq!(
            std::fs::read(d.path().join(global("BootNext"))).unwrap(),
            [7, 0, 0, 0, 4, 0]
        );
        assert_eq!(v.boot_next().unwrap(), Some(4));
        // A shorter value replaces the old one entirely.
        v.set_boot_order(&[3, 1, 2]).unwrap();
        v.set_boot_order(&[9]).unwrap();
        assert_eq!(v.boot_order().unwrap(), [9]);
        assert!(v.delete(&global("BootNext")).unwrap());
        assert!(!v.delete(&global("BootNext")).unwrap());
        assert_eq!(v.boot_next().unwrap(), None);
    }

    /// efivarfs marks variables immutable; so can ext4 (where the tests'
    /// temporary folder is, as root): a write clears the flag and sets it
    /// back, a delete clears it.
    #[test]
    fn immutable_variables_are_rewritten_and_deleted() {
        let d = tempfile::tempdir().unwrap();
        let v = EfiVars::new(d.path());
        let name = global("BootOrder");
        v.write(&name, NV_BS_RT, &[1, 0]).unwrap();
        let path = d.path().join(&name);
        let lock = |p: &Path| immutable::restore(&File::open(p).unwrap()).unwrap();
        let locked = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .err()
                .and_then(|e| e.raw_os_error())
                == Some(nix::libc::EPERM)
        };
        lock(&path);
        assert!(
            locked(&path),
            "the test needs a filesystem with inode flags, as root"
        );
        v.write(&name, NV_BS_RT, &[2, 0, 1, 0]).unwrap();
        assert_eq!(v.boot_order().unwrap(), [2, 1]);
        assert!(locked(&path), "immutable flag not restored");
        assert!(std::fs::remove_file(&path).is_err());
        assert!(v.delete(&name).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn boot_entries_and_first_free_number() {
        let d = tempfile::tempdir().unwrap();
        let v = EfiVars::new(d.path());
        let o = LoadOption::new(
            "x",
            HardDrive {
                partition: 1,
                start: 2048,
                size: 1,
                signature: PartSignature::Mbr(1),
            },
            r"\a.efi",
            None,
        );
        for n in [0u16, 1, 3] {
            v.write(&boot_var(n), NV_BS_RT, &o.encode()).unwrap();
        }
        std::fs::write(d.path().join(boot_var(4)), [7, 0, 0, 0, 1]).unwrap();
        v.write(&global("BootOrder"), NV_BS_RT, &[0, 0]).unwrap();
        assert_eq!(v.boot_numbers().unwrap(), [0, 1, 3, 4]);
        assert_eq!(v.first_free_boot().unwrap(), 2);
        let e = v.boot_entries().unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].1.as_ref().unwrap(), &o);
        assert!(e[3].1.as_ref().unwrap_err().contains("truncated"));
    }

    #[test]
    fn short_and_unreadable_variables_are_errors_naming_them() {
        let d = tempfile::tempdir().unwrap();
        let v = EfiVars::new(d.path());
        std::fs::write(d.path().join(global("BootCurrent")), [7, 0]).unwrap();
        let e = v.boot_current().unwrap_err().to_string();
        assert!(e.contains("BootCurrent") && e.contains("attribute"), "{e}");
        let missing = EfiVars::new(d.path().join("nope"));
        let e = missing.boot_numbers().unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("listing"), "{e}");
    }
}
