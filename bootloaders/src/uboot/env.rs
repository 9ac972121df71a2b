//! The U-Boot environment as stored on flash, in a file or at an offset of
//! a block device: `u32 CRC32 (little-endian)`, one flag byte when the
//! environment is redundant (two copies), then `key=value` strings each
//! ended by NUL, an empty string (a second NUL) after the last one, and
//! padding up to the configured size. The CRC covers everything after the
//! header (variables and padding).
//!
//! Written by hand: the format is a few lines, and the crates that read it
//! (rugix's `UBootEnv`) do not pad to the size or handle the flag byte the
//! way `fw_setenv` does. CRC32 comes from `crc32fast`.

use std::fmt;

/// Padding byte U-Boot and `mkenvimage` use (erased flash reads 0xff).
const PAD: u8 = 0xff;

/// Why an environment copy cannot be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// Fewer bytes than the header and one empty variable list.
    #[error(
        "{what}: {len} bytes is too small for a U-Boot environment (header plus at least 2 bytes)"
    )]
    TooSmall {
        /// What was read.
        what: String,
        /// Its length.
        len: usize,
    },
    /// The CRC does not match: erased, damaged or a wrong offset/size in
    /// fw_env.config.
    #[error("{what}: CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x}): the environment is damaged or fw_env.config names the wrong offset or size")]
    BadCrc {
        /// What was read.
        what: String,
        /// CRC in the header.
        stored: u32,
        /// CRC of the data.
        computed: u32,
    },
    /// A string without `=` or not UTF-8.
    #[error("{what}: entry {index} is not a `name=value` string")]
    BadEntry {
        /// What was read.
        what: String,
        /// Index of the entry.
        index: usize,
    },
    /// The variables do not fit the configured size.
    #[error("the U-Boot environment needs {need} bytes but the environment area holds {size}; remove variables or use a larger area")]
    TooLarge {
        /// Bytes needed.
        need: usize,
        /// Area size.
        size: usize,
    },
    /// A name or value that cannot be stored.
    #[error("U-Boot variable {0:?} cannot be stored: names must be non-empty without '=' and neither may contain NUL")]
    BadVariable(String),
}

/// The variables of one environment, in stored order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

/// One stored copy: its variables and, for a redundant environment, its
/// flag byte (the copy with the newer flag is the active one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// The variables.
    pub env: Env,
    /// The flag byte, `None` for a single (non-redundant) environment.
    pub flag: Option<u8>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Set `name` (replacing it in place, or appending it).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EnvError> {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(EnvError::BadVariable(name.to_string()));
        }
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Remove `name`; returns whether it was set.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.vars.len();
        self.vars.retain(|(k, _)| k != name);
        before != self.vars.len()
    }

    /// The variables in stored order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Read one copy of `bytes.len()` bytes. `redundant` says whether the
    /// header has the flag byte. `what` names the source in errors.
    pub fn decode(bytes: &[u8], redundant: bool, what: &str) -> Result<Copy, EnvError> {
        let header = header_len(redundant);
        if bytes.len() < header + 2 {
            return Err(EnvError::TooSmall {
                what: what.to_string(),
                len: bytes.len(),
            });
        }
        let stored = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let data = &bytes[header..];
        let computed = crc32fast::hash(data);
        if stored != computed {
            return Err(EnvError::BadCrc {
                what: what.to_string(),
                stored,
                computed,
            });
        }
        let mut env = Env::new();
        for (index, entry) in data.split(|b| *b == 0).enumerate() {
            if entry.is_empty() {
                break; // the empty string after the last variable
            }
            let bad = || EnvError::BadEntry {
                what: what.to_string(),
                index,
            };
            let text = std::str::from_utf8(entry).map_err(|_| bad())?;
            let (k, v) = text.split_once('=').ok_or_else(bad)?;
            env.vars.push((k.to_string(), v.to_string()));
        }
        Ok(Copy {
            env,
            flag: redundant.then_some(bytes[4]),
        })
    }

    /// Write a copy of exactly `size` bytes, with the flag byte when
    /// `flag` is `Some`.
    pub fn encode(&self, size: usize, flag: Option<u8>) -> Result<Vec<u8>, EnvError> {
        let header = header_len(flag.is_some());
        let mut data = Vec::with_capacity(size);
        for (k, v) in &self.vars {
            data.extend_from_slice(k.as_bytes());
            data.push(b'=');
            data.extend_from_slice(v.as_bytes());
            data.push(0);
        }
        data.push(0);
        let need = header + data.len().max(2);
        if need > size {
            return Err(EnvError::TooLarge { need, size });
        }
        data.resize(size - header, PAD);
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        if let Some(f) = flag {
            out.push(f);
        }
        out.extend_from_slice(&data);
        Ok(out)
    }
}

fn header_len(redundant: bool) -> usize {
    if redundant {
        5
    } else {
        4
    }
}

/// Which copy of a redundant environment U-Boot uses: the valid one, or of
/// two valid ones the newer flag (the counter wraps: 0 is newer than 255).
/// Returns the index (0 or 1) of the active copy.
pub fn active_copy(a: Option<&Copy>, b: Option<&Copy>) -> Option<usize> {
    match (a, b) {
        (Some(x), Some(y)) => {
            let (fa, fb) = (x.flag.unwrap_or(0), y.flag.unwrap_or(0));
            let b_newer = fb == fa.wrapping_add(1) || (fb > fa && !(fa == 0 && fb == 255));
            Some(usize::from(b_newer))
        }
        (Some(_), None) => Some(0),
        (None, Some(_)) => Some(1),
        (None, None) => None,
    }
}

impl fmt::Display for Env {
    /// `fw_printenv`'s format: `name=value` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.vars {
            writeln!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Env {
        let mut e = Env::new();
        e.set("bootcmd", "run distro_bootcmd").unwrap();
        e.set("bootdelay", "2").unwrap();
        e
    }

    #[test]
    fn round_trip_single_and_redundant() {
        let e = sample();
        let single = e.encode(64, None).unwrap();
        assert_eq!(single.len(), 64);
        assert_eq!(
            Env::decode(&single, false, "t").unwrap(),
            Copy {
                env: e.clone(),
                flag: None
            }
        );
        let red = e.encode(64, Some(7)).unwrap();
        assert_eq!(red[4], 7);
        assert_eq!(
            Env::decode(&red, true, "t").unwrap(),
            Copy {
                env: e,
                flag: Some(7)
            }
        );
    }

    #[test]
    fn layout_is_crc_then_strings_then_padding() {
        let bytes = sample().encode(48, None).unwrap();
        let body = b"bootcmd=run distro_bootcmd\0bootdelay=2\0\0";
        assert_eq!(&bytes[4..4 + body.len()], body);
        assert!(bytes[4 + body.len()..].iter().all(|b| *b == 0xff));
        let crc = crc32fast::hash(&bytes[4..]);
        assert_eq!(bytes[..4], crc.to_le_bytes());
    }

    #[test]
    fn damaged_copy_is_refused_with_the_crcs() {
        let mut bytes = sample().encode(64, None).unwrap();
        bytes[10] ^= 1;
        let e = Env::decode(&bytes, false, "/dev/mmcblk0").unwrap_err();
        assert!(matches!(e, EnvError::BadCrc { .. }));
        assert!(e.to_string().contains("/dev/mmcblk0") && e.to_string().contains("fw_env.config"));
        assert!(matches!(
            Env::decode(&[0; 5], false, "x"),
            Err(EnvError::TooSmall { .. })
        ));
    }

    #[test]
    fn too_large_and_bad_names_are_refused() {
        let e = sample();
        assert_eq!(
            e.encode(20, None),
            Err(EnvError::TooLarge { need: 44, size: 20 })
        );
        let mut e = Env::new();
        assert!(e.set("a=b", "1").is_err());
        assert!(e.set("", "1").is_err());
        assert!(e.set("a", "x\0y").is_err());
    }

    #[test]
    fn set_replaces_in_place_and_remove_drops() {
        let mut e = sample();
        e.set("bootcmd", "boot").unwrap();
        e.set("new", "1").unwrap();
        assert_eq!(e.to_string(), "bootcmd=boot\nbootdelay=2\nnew=1\n");
        assert!(e.remove("bootdelay"));
        assert!(!e.remove("bootdelay"));
        assert_eq!(e.get("new"), Some("1"));
        assert_eq!(e.get("bootdelay"), None);
    }

    #[test]
    fn active_copy_prefers_valid_then_newer_flag_with_wrap() {
        let c = |flag| Copy {
            env: Env::new(),
            flag: Some(flag),
        };
        assert_eq!(active_copy(Some(&c(1)), Some(&c(2))), Some(1));
        assert_eq!(active_copy(Some(&c(2)), Some(&c(1))), Some(0));
        assert_eq!(active_copy(Some(&c(255)), Some(&c(0))), Some(1));
        assert_eq!(active_copy(Some(&c(0)), Some(&c(255))), Some(0));
        assert_eq!(active_copy(None, Some(&c(0))), Some(1));
        assert_eq!(active_copy(Some(&c(9)), None), Some(0));
        assert_eq!(active_copy(None, None), None);
    }
}
