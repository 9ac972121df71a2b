//! CPU architectures migrd builds ramdisks for.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A target CPU architecture, named as Rust and the kernel's `uname -m` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64-bit x86 (`x86_64`, Debian `amd64`).
    X86_64,
    /// 64-bit ARM (`aarch64`, Debian `arm64`).
    Aarch64,
    /// 32-bit ARM with hardware float (`armv7l`, Debian `armhf`).
    Armv7,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Armv7];

    /// The name used on the command line and in the plan.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
        }
    }

    /// The Rust target triple the static migrd-init is built for.
    pub fn init_triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
            Arch::Armv7 => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// The architecture of the machine this code was compiled for, if supported.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            "arm" => Some(Arch::Armv7),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an architecture name migrd does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown architecture '{0}': use one of x86_64 (amd64), aarch64 (arm64), armv7 (armhf)")]
pub struct UnknownArch(String);

impl FromStr for Arch {
    type Err = UnknownArch;

    /// Accepts Rust, kernel and Debian spellings (`aarch64`, `arm64`, `armhf`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "armv7" | "armv7l" | "armhf" | "arm" => Ok(Arch::Armv7),
            _ => Err(UnknownArch(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!("amd64".parse::<Arch>().ok(), Some(Arch::X86_64));
        assert_eq!("ARM64".parse::<Arch>().ok(), Some(Arch::Aarch64));
        assert_eq!("armv7l".parse::<Arch>().ok(), Some(Arch::Armv7));
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>().ok(), Some(a));
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_choices() {
        let e = "riscv64".parse::<Arch>().err().map(|e| e.to_string());
        let msg = e.unwrap_or_default();
        assert!(msg.contains("riscv64") && msg.contains("aarch64"), "{msg}");
    }
}
