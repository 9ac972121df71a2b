//! `/etc/fw_env.config`, where `fw_printenv`/`fw_setenv` (and migrd) find
//! the U-Boot environment: one line per copy,
//! `device offset env_size [sector_size [sectors]]`, `#` comments. A second
//! line makes the environment redundant. Numbers are decimal or `0x` hex;
//! a negative offset counts from the end of a block device.

/// Where one copy of the environment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvLocation {
    /// The device or file (`/dev/mmcblk0`, `/boot/uboot.env`).
    pub device: String,
    /// Byte offset into it (negative: from the end).
    pub offset: i64,
    /// Size of the environment area in bytes.
    pub size: usize,
    /// Erase sector size, when given.
    pub sector_size: Option<u64>,
    /// Number of sectors, when given.
    pub sectors: Option<u64>,
}

/// The parsed file: one or two copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwEnvConfig {
    /// The copies, in file order (one, or two for a redundant environment).
    pub copies: Vec<EnvLocation>,
}

impl FwEnvConfig {
    /// Whether the environment has two copies (the header then carries a
    /// flag byte).
    pub fn redundant(&self) -> bool {
        self.copies.len() == 2
    }
}

/// A line that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwConfigError {
    /// Unreadable field.
    #[error(
        "{file} line {line}: {why}; the format is `device offset env_size [sector_size [sectors]]`"
    )]
    Line {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// No copy, or more than two.
    #[error("{file}: {count} environment lines; fw_env.config needs one (or two for a redundant environment)")]
    Count {
        /// The file.
        file: String,
        /// Lines found.
        count: usize,
    },
}

fn number(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// Parse fw_env.config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<FwEnvConfig, FwConfigError> {
    let mut copies = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |why: String| FwConfigError::Line {
            file: file.to_string(),
            line: i + 1,
            why,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f.len() > 5 {
            return Err(err(format!("{} fields", f.len())));
        }
        let num = |idx: usize, what: &str| {
            number(f[idx]).ok_or_else(|| err(format!("{what} {:?} is not a number", f[idx])))
        };
        let offset = num(1, "offset")?;
        let size = usize::try_from(num(2, "env_size")?)
            .ok()
            .filter(|s| *s > 5)
            .ok_or_else(|| err(format!("env_size {:?} is not a positive size", f[2])))?;
        let unsigned = |idx: usize, what: &str| -> Result<Option<u64>, FwConfigError> {
            if idx >= f.len() {
                return Ok(None);
            }
            u64::try_from(num(idx, what)?)
                .map(Some)
                .map_err(|_| err(format!("{what} {:?} is negative", f[idx])))
        };
        copies.push(EnvLocation {
            device: f[0].to_string(),
            offset,
            size,
            sector_size: unsigned(3, "sector_size")?,
            sectors: unsigned(4, "sectors")?,
        });
    }
    if copies.is_empty() || copies.len() > 2 {
        return Err(FwConfigError::Count {
            file: file.to_string(),
            count: copies.len(),
        });
    }
    Ok(FwEnvConfig { copies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_files_hex_negative_and_comments() {
        let c = parse(
            "# MTD device name  Device offset  Env. size  Flash sector size  Number of sectors\n\
             /dev/mmcblk0   0x3fe000   0x2000   0x200   16 # eMMC\n\
             \n\
             /dev/mmcblk0\t-0x4000 8192\n",
            "/etc/fw_env.config",
        )
        .unwrap();
        assert!(c.redundant());
        assert_eq!(
            c.copies[0],
            EnvLocation {
                device: "/dev/mmcblk0".into(),
                offset: 0x3fe000,
                size: 0x2000,
                sector_size: Some(0x200),
                sectors: Some(16),
            }
        );
        assert_eq!(c.copies[1].offset, -0x4000);
        assert_eq!(c.copies[1].size, 8192);
        assert_eq!(c.copies[1].sector_size, None);
        let single = parse("/boot/uboot.env 0x0000 0x4000\n", "f").unwrap();
        assert!(!single.redundant());
    }

    #[test]
    fn bad_lines_name_the_file_line_and_format() {
        let e = parse("/dev/mmcblk0 0x3fe000\n", "/etc/fw_env.config").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/etc/fw_env.config line 1") && s.contains("device offset env_size"),
            "{s}"
        );
        let e = parse("/dev/x zz 0x2000\n", "f").unwrap_err().to_string();
        assert!(e.contains("offset \"zz\""), "{e}");
        let e = parse("/dev/x 0 -5\n", "f").unwrap_err().to_string();
        assert!(e.contains("env_size"), "{e}");
        assert!(matches!(
            parse("# only comments\n", "f"),
            Err(FwConfigError::Count { count: 0, .. })
        ));
        assert!(matches!(
            parse("a 0 64\nb 0 64\nc 0 64\n", "f"),
            Err(FwConfigError::Count { count: 3, .. })
        ));
    }
}
