//! Facts for the kexec strategy: does the running kernel have
//! `kexec_file_load`, is it switched off or locked down, and is its image
//! one the kernel's loader accepts (and, under lockdown, signed).

use super::rootfs;
use crate::kconfig::KernelConfig;
use migrd_bootloaders::kexec::{ImageFacts, ImageKind, KexecFacts, Lockdown};
use std::io::Read;
use std::path::Path;

/// Whether this build of migrd has the syscall for the CPU it runs on.
pub const SYSCALL: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(rootfs::join(root, Path::new(rel))).ok()
}

/// The first 64 KiB of a file: enough for the bzImage setup header and the
/// PE headers.
fn head(path: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// Whether a PE image has a certificate table (an Authenticode signature);
/// `None` when it is not a PE file.
pub fn pe_signed(head: &[u8]) -> Option<bool> {
    let h = goblin::pe::header::Header::parse(head).ok()?;
    let opt = h.optional_header?;
    Some(
        opt.data_directories
            .get_certificate_table()
            .is_some_and(|d| d.size > 0),
    )
}

fn image(root: &Path, release: &str) -> Option<ImageFacts> {
    let path = format!("/boot/vmlinuz-{release}");
    let head = head(&rootfs::resolve(root, Path::new(&path)))?;
    Some(ImageFacts {
        kind: ImageKind::sniff(&head),
        signed: pe_signed(&head),
        path,
    })
}

/// Gather the kexec facts under `root`; `secure_boot` comes from the
/// firmware probe.
pub fn probe(root: &Path, secure_boot: Option<bool>) -> KexecFacts {
    let release = read(root, "proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
    let config = release
        .as_ref()
        .map(|r| format!("boot/config-{r}"))
        .into_iter()
        .chain(["proc/config.gz".to_string()])
        .find_map(|p| KernelConfig::read(&rootfs::join(root, Path::new(&p))).ok());
    KexecFacts {
        syscall: SYSCALL,
        sysfs: rootfs::exists(root, "sys/kernel/kexec_loaded"),
        kexec_file: config.as_ref().map(|c| c.builtin("KEXEC_FILE")),
        sig_verify: config
            .as_ref()
            .map(|c| c.builtin("KEXEC_SIG") || c.builtin("KEXEC_VERIFY_SIG")),
        disabled: read(root, "proc/sys/kernel/kexec_load_disabled")
            .is_some_and(|s| s.trim() == "1"),
        lockdown: read(root, "sys/kernel/security/lockdown").and_then(|t| Lockdown::parse(&t)),
        secure_boot,
        image: release.as_deref().and_then(|r| image(root, r)),
        release,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(signed: bool) -> Vec<u8> {
        // A minimal PE32+ with the bzImage setup header signature: DOS
        // header (e_lfanew at 0x3c → 0x80), "PE\0\0", COFF header, optional
        // header with 16 data directories.
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        if signed {
            // Data directory 4 (certificate table): offset, size.
            let dd = opt + 112 + 4 * 8;
            b[dd..dd + 4].copy_from_slice(&0x1000u32.to_le_bytes());
            b[dd + 4..dd + 8].copy_from_slice(&0x700u32.to_le_bytes());
        }
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b
    }

    fn tree(config: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for p in ["proc/sys/kernel", "sys/kernel/security", "boot"] {
            std::fs::create_dir_all(r.join(p)).unwrap();
        }
        std::fs::write(r.join("proc/sys/kernel/osrelease"), "6.1.0-41-amd64\n").unwrap();
        std::fs::write(r.join("proc/sys/kernel/kexec_load_disabled"), "0\n").unwrap();
        std::fs::write(r.join("sys/kernel/kexec_loaded"), "0\n").unwrap();
        std::fs::write(
            r.join("sys/kernel/security/lockdown"),
            "[none] integrity confidentiality\n",
        )
        .unwrap();
        std::fs::write(r.join("boot/vmlinuz-6.1.0-41-amd64"), bzimage(true)).unwrap();
        if let Some(c) = config {
            std::fs::write(r.join("boot/config-6.1.0-41-amd64"), c).unwrap();
        }
        d
    }

    #[test]
    fn signature_table_read_from_pe_headers() {
        assert_eq!(pe_signed(&bzimage(true)), Some(true));
        assert_eq!(pe_signed(&bzimage(false)), Some(false));
        assert_eq!(pe_signed(b"\x1f\x8b not a PE"), None);
    }

    #[test]
    fn debian_like_tree() {
        let d = tree(Some(
            "CONFIG_KEXEC=y\nCONFIG_KEXEC_FILE=y\nCONFIG_KEXEC_SIG=y\n",
        ));
        let f = probe(d.path(), None);
        assert_eq!(f.release.as_deref(), Some("6.1.0-41-amd64"));
        assert!(f.sysfs && !f.disabled);
        assert_eq!(f.kexec_file, Some(true));
        assert_eq!(f.sig_verify, Some(true));
        assert_eq!(f.lockdown, Some(Lockdown::None));
        let img = f.image.clone().unwrap();
        assert_eq!(img.path, "/boot/vmlinuz-6.1.0-41-amd64");
        assert_eq!(img.kind, ImageKind::BzImage);
        assert_eq!(img.signed, Some(true));
        assert_eq!(
            f.syscall,
            cfg!(target_arch = "x86_64") || cfg!(target_arch = "aarch64")
        );
    }

    #[test]
    fn missing_pieces_recorded() {
        let d = tree(Some("# CONFIG_KEXEC_FILE is not set\nCONFIG_KEXEC=y\n"));
        let r = d.path();
        std::fs::remove_file(r.join("sys/kernel/kexec_loaded")).unwrap();
        std::fs::write(r.join("proc/sys/kernel/kexec_load_disabled"), "1\n").unwrap();
        std::fs::write(
            r.join("sys/kernel/security/lockdown"),
            "none [integrity] confidentiality\n",
        )
        .unwrap();
        let f = probe(r, Some(true));
        assert!(!f.sysfs && f.disabled);
        assert_eq!(f.kexec_file, Some(false));
        assert_eq!(f.sig_verify, Some(false));
        assert_eq!(f.lockdown, Some(Lockdown::Integrity));
        assert_eq!(f.secure_boot, Some(true));

        let d = tree(None);
        let f = probe(d.path(), None);
        assert_eq!(f.kexec_file, None);
        std::fs::remove_file(d.path().join("boot/vmlinuz-6.1.0-41-amd64")).unwrap();
        assert_eq!(probe(d.path(), None).image, None);
    }
}
