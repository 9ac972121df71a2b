//! Checks that a binary can be PID 1 of a ramdisk for a given architecture:
//! right ELF machine, and fully static (no program interpreter, no shared
//! libraries). A dynamic init would make the kernel panic at boot with
//! "No working init found", far from the cause.

use goblin::elf::{header, program_header::PT_INTERP, Elf};
use migrd_init::arch::Arch;
use std::path::Path;

/// Why a binary cannot be the ramdisk's init.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Not readable.
    #[error("cannot read init binary {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not an ELF file.
    #[error("init binary {path} is not an ELF executable: {reason}")]
    NotElf {
        /// The file.
        path: String,
        /// Parser's reason.
        reason: String,
    },
    /// Built for another CPU.
    #[error("init binary {path} is built for {found}, but the ramdisk is for {wanted}; build migrd-init for {triple}")]
    WrongMachine {
        /// The file.
        path: String,
        /// Machine found.
        found: String,
        /// Architecture wanted.
        wanted: Arch,
        /// Triple to build for.
        triple: &'static str,
    },
    /// Needs a dynamic loader.
    #[error("init binary {path} is dynamically linked (interpreter {interp}); PID 1 in the ramdisk has no libraries: build it static ({triple})")]
    Interpreter {
        /// The file.
        path: String,
        /// The interpreter it asks for.
        interp: String,
        /// Triple to build for.
        triple: &'static str,
    },
    /// Needs shared libraries.
    #[error("init binary {path} needs shared libraries ({libs}); build it static ({triple})")]
    Needed {
        /// The file.
        path: String,
        /// The libraries.
        libs: String,
        /// Triple to build for.
        triple: &'static str,
    },
}

fn expected_machine(arch: Arch) -> (u16, bool) {
    match arch {
        Arch::X86_64 => (header::EM_X86_64, true),
        Arch::Aarch64 => (header::EM_AARCH64, true),
        Arch::Armv7 => (header::EM_ARM, false),
    }
}

/// Check the bytes of a would-be init for `arch`. `path` only names it in errors.
pub fn check_init_bytes(bytes: &[u8], path: &str, arch: Arch) -> Result<(), ElfError> {
    let elf = Elf::parse(bytes).map_err(|e| ElfError::NotElf {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if elf.header.e_type != header::ET_EXEC && elf.header.e_type != header::ET_DYN {
        return Err(ElfError::NotElf {
            path: path.into(),
            reason: "not an executable".into(),
        });
    }
    let (machine, is64) = expected_machine(arch);
    if elf.header.e_machine != machine || elf.is_64 != is64 {
        return Err(ElfError::WrongMachine {
            path: path.into(),
            found: format!(
                "{} ({}-bit)",
                header::machine_to_str(elf.header.e_machine),
                if elf.is_64 { 64 } else { 32 }
            ),
            wanted: arch,
            triple: arch.init_triple(),
        });
    }
    if elf.program_headers.iter().any(|p| p.p_type == PT_INTERP) {
        return Err(ElfError::Interpreter {
            path: path.into(),
            interp: elf.interpreter.unwrap_or("?").to_string(),
            triple: arch.init_triple(),
        });
    }
    if !elf.libraries.is_empty() {
        return Err(ElfError::Needed {
            path: path.into(),
            libs: elf.libraries.join(", "),
            triple: arch.init_triple(),
        });
    }
    Ok(())
}

/// Read and check a would-be init file.
pub fn check_init_file(path: &Path, arch: Arch) -> Result<Vec<u8>, ElfError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ElfError::Io {
        path: name.clone(),
        source,
    })?;
    check_init_bytes(&bytes, &name, arch)?;
    Ok(bytes)
}

/// Minimal ELF images for tests: a header and program headers, enough for the
/// parser, not for running.
#[cfg(test)]
pub(crate) mod tiny_elf {
    /// A 64-bit little-endian ET_EXEC for `machine`, optionally with a
    /// PT_INTERP segment.
    pub fn elf64(machine: u16, interp: Option<&str>) -> Vec<u8> {
        let phnum: u16 = if interp.is_some() { 2 } else { 1 };
        let phoff = 64u64;
        let data_off = phoff + 56 * u64::from(phnum);
        let mut b = Vec::new();
        b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b.extend_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0x400000u64.to_le_bytes()); // entry
        b.extend_from_slice(&phoff.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // shoff
        b.extend_from_slice(&0u32.to_le_bytes()); // flags
        b.extend_from_slice(&64u16.to_le_bytes()); // ehsize
        b.extend_from_slice(&56u16.to_le_bytes()); // phentsize
        b.extend_from_slice(&phnum.to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes()); // shentsize
        b.extend_from_slice(&0u16.to_le_bytes()); // shnum
        b.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
        let interp_bytes = interp.map(|s| {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            v
        });
        let mut ph = |ty: u32, off: u64, size: u64| {
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&5u32.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&(0x400000 + off).to_le_bytes());
            b.extend_from_slice(&(0x400000 + off).to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&0x1000u64.to_le_bytes());
        };
        if let Some(i) = &interp_bytes {
            ph(3, data_off, i.len() as u64); // PT_INTERP
        }
        ph(1, 0, data_off + 16); // PT_LOAD
        if let Some(i) = interp_bytes {
            b.extend_from_slice(&i);
        }
        b.resize(b.len() + 16, 0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::tiny_elf::elf64;
    use super::*;

    #[test]
    fn accepts_a_static_binary_of_the_right_machine() {
        check_init_bytes(&elf64(header::EM_X86_64, None), "init", Arch::X86_64).unwrap();
        check_init_bytes(&elf64(header::EM_AARCH64, None), "init", Arch::Aarch64).unwrap();
    }

    #[test]
    fn refuses_the_wrong_machine_naming_both() {
        let e =
            check_init_bytes(&elf64(header::EM_X86_64, None), "init", Arch::Aarch64).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ElfError::WrongMachine { .. }));
        assert!(
            m.contains("X86_64") && m.contains("aarch64-unknown-linux-musl"),
            "{m}"
        );
    }

    #[test]
    fn refuses_a_program_interpreter() {
        let b = elf64(header::EM_X86_64, Some("/lib64/ld-linux-x86-64.so.2"));
        let e = check_init_bytes(&b, "init", Arch::X86_64).unwrap_err();
        assert!(e.to_string().contains("ld-linux"), "{e}");
    }

    #[test]
    fn refuses_the_hosts_own_dynamic_binaries() {
        // Any Debian /bin binary is dynamic: exactly what must be refused.
        let bytes = std::fs::read("/bin/sh").unwrap();
        let e = check_init_bytes(&bytes, "/bin/sh", Arch::host().unwrap()).unwrap_err();
        assert!(
            matches!(e, ElfError::Interpreter { .. } | ElfError::Needed { .. }),
            "{e}"
        );
    }

    #[test]
    fn refuses_non_elf() {
        let e = check_init_bytes(b"#!/bin/sh\necho hi\n", "init.sh", Arch::X86_64).unwrap_err();
        assert!(matches!(e, ElfError::NotElf { .. }));
    }
}
