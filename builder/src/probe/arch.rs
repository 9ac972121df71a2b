//! The kernel's architecture (`uname -m`).

use super::rootfs;
use migrd_init::arch::Arch;
use std::path::Path;

/// `uname -m` of the probed system: `<root>/proc/sys/kernel/arch` when the
/// kernel provides it (and in fixture trees), else `uname(2)` on the live
/// root `/`.
pub fn kernel_machine(root: &Path) -> Option<String> {
    rootfs::read_trimmed(root, "proc/sys/kernel/arch").or_else(|| {
        (root == Path::new("/"))
            .then(|| nix::sys::utsname::uname().ok())
            .flatten()
            .map(|u| u.machine().to_string_lossy().into_owned())
    })
}

/// The migrd architecture for a `uname -m` value; `None` for machines migrd
/// has no stage 2 for (armv6l, i686, ...).
pub fn from_machine(m: &str) -> Option<Arch> {
    match m {
        "x86_64" => Some(Arch::X86_64),
        "aarch64" | "arm64" => Some(Arch::Aarch64),
        "armv7l" | "armv8l" => Some(Arch::Armv7),
        _ => None,
    }
}

/// The balena architecture names an image for this kernel may have. A
/// 64-bit Arm kernel can run armv7hf (and Raspberry Pi's armv6 `rpi`) userland
/// only with compat support, so for aarch64 only aarch64 images are listed
/// unless the board table says otherwise.
pub fn balena_arches(m: &str) -> &'static [&'static str] {
    match m {
        "x86_64" => &["amd64"],
        "aarch64" | "arm64" => &["aarch64", "armv7hf"],
        "armv7l" | "armv8l" => &["armv7hf", "rpi"],
        "armv6l" => &["rpi"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_map_to_arches() {
        assert_eq!(from_machine("armv7l"), Some(Arch::Armv7));
        assert_eq!(from_machine("aarch64"), Some(Arch::Aarch64));
        assert_eq!(from_machine("armv6l"), None);
        assert!(balena_arches("x86_64").contains(&"amd64"));
    }

    #[test]
    fn fixture_arch_file_wins_and_missing_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(kernel_machine(d.path()), None);
        std::fs::create_dir_all(d.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(d.path().join("proc/sys/kernel/arch"), "armv7l\n").unwrap();
        assert_eq!(kernel_machine(d.path()).as_deref(), Some("armv7l"));
    }
}
