//! The kexec strategy: the running kernel jumps straight into itself with
//! migrd's ramdisk (`kexec_file_load`, then a clean shutdown that ends in
//! `reboot(LINUX_REBOOT_CMD_KEXEC)`). Nothing on disk changes, so any reset
//! or firmware reboot — including the one stage 2 makes when it gives up —
//! boots the old OS as it was; stage 2 has nothing to disarm.
//!
//! This file decides, from facts the probe gathered, whether the running
//! kernel can do it, and says what is missing otherwise.

use crate::OneShot;
use serde::Serialize;
use std::fmt;

/// Kernel lockdown mode (`/sys/kernel/security/lockdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lockdown {
    /// `[none]`: no restriction.
    None,
    /// `[integrity]`: nothing may change the running kernel; `kexec_file_load`
    /// only accepts images whose signature the kernel verifies.
    Integrity,
    /// `[confidentiality]`: integrity plus no reading kernel memory; same
    /// rule for kexec.
    Confidentiality,
}

impl Lockdown {
    /// Parse the securityfs file: the active mode is the bracketed word
    /// (`none [integrity] confidentiality`). `None` when no word is
    /// bracketed.
    pub fn parse(text: &str) -> Option<Lockdown> {
        let start = text.find('[')?;
        let rest = &text[start + 1..];
        let word = &rest[..rest.find(']')?];
        match word {
            "none" => Some(Lockdown::None),
            "integrity" => Some(Lockdown::Integrity),
            "confidentiality" => Some(Lockdown::Confidentiality),
            _ => Option::None,
        }
    }
}

impl fmt::Display for Lockdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lockdown::None => "none",
            Lockdown::Integrity => "integrity",
            Lockdown::Confidentiality => "confidentiality",
        })
    }
}

/// What the kernel image file is, as far as `kexec_file_load` cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// x86 bzImage (setup header `HdrS`), with or without an EFI stub.
    BzImage,
    /// arm64 `Image` (magic `ARM\x64`), with or without an EFI stub.
    Arm64Image,
    /// gzip-compressed (`vmlinuz` on some arm64 distros): the kernel's
    /// kexec loader does not decompress.
    Gzip,
    /// Anything else, or unreadable.
    Unknown,
}

impl ImageKind {
    /// Recognise an image from its first bytes (at least 0x210 of them for
    /// a bzImage).
    pub fn sniff(head: &[u8]) -> ImageKind {
        if head.starts_with(&[0x1f, 0x8b]) {
            ImageKind::Gzip
        } else if head.get(0x202..0x206) == Some(b"HdrS") {
            ImageKind::BzImage
        } else if head.get(56..60) == Some(b"ARM\x64") {
            ImageKind::Arm64Image
        } else {
            ImageKind::Unknown
        }
    }
}

/// The kernel image that would be loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    /// Its path on the device (`/boot/vmlinuz-<release>`).
    pub path: String,
    /// What it is.
    pub kind: ImageKind,
    /// It carries an Authenticode signature (a PE certificate table):
    /// `None` when it is not a PE file or could not be read.
    pub signed: Option<bool>,
}

/// Everything the kexec strategy needs to know about the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KexecFacts {
    /// `uname -r`, if readable.
    pub release: Option<String>,
    /// This migrd can make the `kexec_file_load` syscall on this CPU
    /// architecture (x86_64, aarch64).
    pub syscall: bool,
    /// `/sys/kernel/kexec_loaded` exists: the kernel was built with kexec.
    pub sysfs: bool,
    /// `CONFIG_KEXEC_FILE=y` in the kernel's config; `None` when no config
    /// was found.
    pub kexec_file: Option<bool>,
    /// The kernel can verify a kexec image's signature (`CONFIG_KEXEC_SIG`,
    /// or `CONFIG_KEXEC_VERIFY_SIG` before 5.4); `None` without a config.
    pub sig_verify: Option<bool>,
    /// `kernel.kexec_load_disabled` is 1: kexec was switched off until the
    /// next boot.
    pub disabled: bool,
    /// Lockdown mode; `None` when securityfs does not say (not mounted, or
    /// no lockdown LSM).
    pub lockdown: Option<Lockdown>,
    /// Secure Boot as the probe found it (`None`: not UEFI or unknown).
    pub secure_boot: Option<bool>,
    /// The running kernel's image, if found.
    pub image: Option<ImageFacts>,
}

/// Why kexec cannot start the ramdisk here. Each message says what is
/// missing and what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KexecError {
    /// No syscall wrapper for this architecture.
    #[error("this migrd cannot call kexec_file_load on this CPU architecture (only x86_64 and aarch64); use --boot-via grub, efi or uboot")]
    Arch,
    /// Kernel built without kexec.
    #[error("the running kernel{0} was built without kexec (/sys/kernel/kexec_loaded is missing); use --boot-via grub or efi, or boot a kernel with CONFIG_KEXEC_FILE=y")]
    NoKexec(String),
    /// Kernel has only the old `kexec_load`.
    #[error("the running kernel{0} lacks kexec_file_load (CONFIG_KEXEC_FILE is not set in its config; migrd does not use the older kexec_load); use --boot-via grub or efi, or boot a kernel with CONFIG_KEXEC_FILE=y")]
    NoKexecFile(String),
    /// kexec switched off at runtime.
    #[error("kexec is switched off until the next boot (kernel.kexec_load_disabled = 1); reboot first, or use --boot-via grub or efi")]
    Disabled,
    /// No image to load.
    #[error("the running kernel's image was not found under /boot; reinstall the kernel package, or use --boot-via grub or efi")]
    NoImage,
    /// The image is not something the kernel's loader takes.
    #[error("{path} is {what}, which kexec_file_load cannot load (it takes an uncompressed bzImage or arm64 Image); use --boot-via grub, efi or uboot")]
    BadImage {
        /// The image.
        path: String,
        /// What it is.
        what: String,
    },
    /// Lockdown forbids loading this image.
    #[error("kernel lockdown is '{mode}'{sb}: kexec_file_load only accepts a kernel whose signature the running kernel verifies, and {why}. \
             Use --boot-via grub (the signed shim → GRUB chain keeps Secure Boot), or turn Secure Boot off in the firmware setup")]
    Lockdown {
        /// The lockdown mode (or "unknown").
        mode: String,
        /// ", because Secure Boot is on" or empty.
        sb: String,
        /// What fails: the kernel cannot verify, or the image is unsigned.
        why: String,
    },
}

fn rel(f: &KexecFacts) -> String {
    f.release
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// The lockdown mode kexec has to live with: the reported one, or —
/// when securityfs does not say but Secure Boot is on — integrity, which is
/// what distro kernels enforce under Secure Boot.
fn effective_lockdown(f: &KexecFacts) -> Option<Lockdown> {
    match (f.lockdown, f.secure_boot) {
        (Some(Lockdown::None), _) => None,
        (Some(m), _) => Some(m),
        (None, Some(true)) => Some(Lockdown::Integrity),
        (None, _) => None,
    }
}

/// Can kexec start the ramdisk here? `Ok` says how (for `migrd check`),
/// `Err` says what is missing and what to do.
pub fn usable(f: &KexecFacts) -> Result<String, KexecError> {
    if !f.syscall {
        return Err(KexecError::Arch);
    }
    if !f.sysfs {
        return Err(KexecError::NoKexec(rel(f)));
    }
    if f.kexec_file == Some(false) {
        return Err(KexecError::NoKexecFile(rel(f)));
    }
    if f.disabled {
        return Err(KexecError::Disabled);
    }
    let img = f.image.as_ref().ok_or(KexecError::NoImage)?;
    let what = match img.kind {
        ImageKind::BzImage | ImageKind::Arm64Image => None,
        ImageKind::Gzip => Some("gzip-compressed"),
        ImageKind::Unknown => Some("not a kernel image migrd recognises"),
    };
    if let Some(what) = what {
        return Err(KexecError::BadImage {
            path: img.path.clone(),
            what: what.into(),
        });
    }
    let mut notes = Vec::new();
    if let Some(mode) = effective_lockdown(f) {
        let why = match (f.sig_verify, img.signed) {
            (Some(true), Some(true)) => None,
            (Some(false), _) => Some("this kernel was built without CONFIG_KEXEC_SIG".to_string()),
            (None, _) => Some("no kernel config was found to show CONFIG_KEXEC_SIG".to_string()),
            (_, _) => Some(format!("{} carries no signature", img.path)),
        };
        if let Some(why) = why {
            return Err(KexecError::Lockdown {
                mode: if f.lockdown.is_some() {
                    mode.to_string()
                } else {
                    "unknown (securityfs unreadable)".into()
                },
                sb: if f.secure_boot == Some(true) {
                    ", because Secure Boot is on".into()
                } else {
                    String::new()
                },
                why,
            });
        }
        notes.push(format!(
            "lockdown {mode}: the kernel verifies {}'s signature when loading it; the ramdisk's modules are the distro's signed ones",
            img.path
        ));
    }
    if f.kexec_file.is_none() {
        notes.push(
            "CONFIG_KEXEC_FILE not confirmed (no kernel config found); loading will tell".into(),
        );
    }
    let mut s = format!(
        "kexec_file_load of {} with the ramdisk: nothing on disk changes, any reboot boots this OS",
        img.path
    );
    for n in notes {
        s.push_str("; ");
        s.push_str(&n);
    }
    Ok(s)
}

/// Marker type for [`OneShot`].
pub struct Kexec;

impl OneShot for Kexec {
    type Error = KexecError;
    type Facts = KexecFacts;
    fn detect(facts: &KexecFacts) -> Result<(), KexecError> {
        usable(facts).map(|_| ())
    }
}

/// Check that kexec can start the ramdisk with these facts.
pub fn detect(facts: &KexecFacts) -> Result<(), KexecError> {
    Kexec::detect(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> KexecFacts {
        KexecFacts {
            release: Some("6.1.0-41-amd64".into()),
            syscall: true,
            sysfs: true,
            kexec_file: Some(true),
            sig_verify: Some(true),
            disabled: false,
            lockdown: Some(Lockdown::None),
            secure_boot: None,
            image: Some(ImageFacts {
                path: "/boot/vmlinuz-6.1.0-41-amd64".into(),
                kind: ImageKind::BzImage,
                signed: Some(true),
            }),
        }
    }

    fn err(f: &KexecFacts) -> String {
        usable(f).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn lockdown_file_parsed() {
        assert_eq!(
            Lockdown::parse("[none] integrity confidentiality\n"),
            Some(Lockdown::None)
        );
        assert_eq!(
            Lockdown::parse("none [integrity] confidentiality\n"),
            Some(Lockdown::Integrity)
        );
        assert_eq!(
            Lockdown::parse("none integrity [confidentiality]"),
            Some(Lockdown::Confidentiality)
        );
        assert_eq!(Lockdown::parse("none integrity"), None);
        assert_eq!(Lockdown::parse("[bogus]"), None);
    }

    #[test]
    fn images_sniffed() {
        let mut bz = vec![0u8; 0x300];
        bz[..2].copy_from_slice(b"MZ");
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(ImageKind::sniff(&bz), ImageKind::BzImage);
        let mut arm = vec![0u8; 64];
        arm[56..60].copy_from_slice(b"ARM\x64");
        assert_eq!(ImageKind::sniff(&arm), ImageKind::Arm64Image);
        assert_eq!(ImageKind::sniff(&[0x1f, 0x8b, 8, 0]), ImageKind::Gzip);
        assert_eq!(ImageKind::sniff(b"MZ"), ImageKind::Unknown);
    }

    #[test]
    fn a_plain_debian_kernel_is_usable() {
        let ok = usable(&debian()).unwrap();
        assert!(ok.contains("/boot/vmlinuz-6.1.0-41-amd64"), "{ok}");
        assert!(detect(&debian()).is_ok());
    }

    #[test]
    fn missing_kexec_named_with_what_to_do() {
        let mut f = debian();
        f.sysfs = false;
        let e = err(&f);
        assert!(
            e.contains("/sys/kernel/kexec_loaded") && e.contains("--boot-via grub"),
            "{e}"
        );
        let mut f = debian();
        f.kexec_file = Some(false);
        let e = err(&f);
        assert!(
            e.contains("CONFIG_KEXEC_FILE") && e.contains("6.1.0-41-amd64"),
            "{e}"
        );
        let mut f = debian();
        f.disabled = true;
        assert!(err(&f).contains("kexec_load_disabled"));
        let mut f = debian();
        f.syscall = false;
        assert!(err(&f).contains("x86_64 and aarch64"));
        let mut f = debian();
        f.image = None;
        assert!(err(&f).contains("image was not found"));
    }

    #[test]
    fn unknown_config_is_allowed_with_a_note() {
        let mut f = debian();
        f.kexec_file = None;
        f.sig_verify = None;
        let ok = usable(&f).unwrap();
        assert!(ok.contains("not confirmed"), "{ok}");
    }

    #[test]
    fn compressed_image_refused() {
        let mut f = debian();
        if let Some(i) = f.image.as_mut() {
            i.kind = ImageKind::Gzip;
        }
        let e = err(&f);
        assert!(
            e.contains("gzip-compressed") && e.contains("uncompressed"),
            "{e}"
        );
    }

    #[test]
    fn lockdown_needs_a_verifiable_signed_image() {
        // Secure Boot on, lockdown integrity, signed distro kernel with
        // CONFIG_KEXEC_SIG: the kernel verifies it, so kexec is allowed.
        let mut f = debian();
        f.lockdown = Some(Lockdown::Integrity);
        f.secure_boot = Some(true);
        let ok = usable(&f).unwrap();
        assert!(ok.contains("lockdown integrity"), "{ok}");

        // Unsigned image: refused, saying why and what to do.
        let mut g = f.clone();
        if let Some(i) = g.image.as_mut() {
            i.signed = Some(false);
        }
        let e = err(&g);
        assert!(
            e.contains("'integrity'")
                && e.contains("Secure Boot is on")
                && e.contains("carries no signature")
                && e.contains("--boot-via grub"),
            "{e}"
        );

        // No signature checking in the kernel: refused.
        let mut g = f.clone();
        g.sig_verify = Some(false);
        g.lockdown = Some(Lockdown::Confidentiality);
        g.secure_boot = None;
        let e = err(&g);
        assert!(
            e.contains("'confidentiality'")
                && e.contains("CONFIG_KEXEC_SIG")
                && !e.contains("Secure Boot is on"),
            "{e}"
        );

        // Secure Boot on but lockdown unreadable: treated as integrity.
        let mut g = f.clone();
        g.lockdown = None;
        g.sig_verify = None;
        let e = err(&g);
        assert!(
            e.contains("unknown") && e.contains("no kernel config"),
            "{e}"
        );

        // Lockdown none with Secure Boot on (a kernel without the lockdown
        // hook): nothing to verify.
        let mut g = f.clone();
        g.lockdown = Some(Lockdown::None);
        g.sig_verify = Some(false);
        assert!(usable(&g).is_ok());
    }
}
