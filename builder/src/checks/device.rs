//! Checks on the device itself: who runs us, the OS, the board and device
//! type, Secure Boot.

use super::{CheckResult, Options, Status};
use crate::inputs::gather::Gathered;
use crate::probe::firmware::Firmware;
use crate::probe::os_release::Support;
use crate::probe::{device_types, Facts};

/// Must run as root (on the live system).
pub fn root(f: &Facts) -> CheckResult {
    match f.host.euid {
        Some(0) => CheckResult::new("root", Status::Pass, "running as root"),
        Some(uid) => CheckResult::new(
            "root",
            Status::Fail,
            format!("running as uid {uid}: run migrd with sudo"),
        ),
        None => CheckResult::new(
            "root",
            Status::Skip,
            format!("probing {} rather than the live system", f.root.display()),
        ),
    }
}

/// The source OS is supported (by ID/VERSION_ID range).
pub fn os(f: &Facts, o: &Options) -> CheckResult {
    let name =
        f.os.as_ref()
            .and_then(|o| o.pretty_name.clone())
            .unwrap_or_else(|| "unknown OS".into());
    match &f.os_support {
        Support::Supported { name: n } => {
            CheckResult::new("os", Status::Pass, format!("{name} ({n})"))
        }
        Support::Derivative {
            parent,
            parent_version,
        } => CheckResult::new(
            "os",
            Status::Pass,
            format!("{name}, based on {parent} {parent_version}"),
        ),
        Support::Unsupported { reason } if o.no_os_check => CheckResult::new(
            "os",
            Status::Warn,
            format!("{reason} (allowed by --no-os-check)"),
        ),
        Support::Unsupported { reason } => CheckResult::new(
            "os",
            Status::Fail,
            format!("{reason}; if you have tested this OS, pass --no-os-check"),
        ),
    }
}

/// The board is known and the fleet's device type fits it.
pub fn device_type(f: &Facts, g: &Gathered, o: &Options) -> CheckResult {
    let n = "device-type";
    if o.no_dt_check {
        return CheckResult::new(
            n,
            Status::Skip,
            "--no-dt-check: board and device type not checked",
        );
    }
    let model = f
        .board
        .model
        .clone()
        .unwrap_or_else(|| "unknown board".into());
    let Some(slug) = g.target_slug.as_deref() else {
        return CheckResult::new(
            n,
            Status::Skip,
            format!("{model}: no config.json, so no device type to compare"),
        );
    };
    if device_types::slug_arch(slug).is_none() && !f.board.slugs.iter().any(|s| s == slug) {
        return CheckResult::new(
            n,
            Status::Fail,
            format!("device type '{slug}' is not in migrd's table (builder/data/device-types.json); use --no-dt-check if you are sure it fits this {model}"),
        );
    }
    if f.board.slugs.is_empty() {
        return CheckResult::new(
            n,
            Status::Fail,
            format!("board '{model}' is not in migrd's table; use --no-dt-check if '{slug}' is right for it"),
        );
    }
    if f.board.slugs.iter().any(|s| s == slug) {
        CheckResult::new(n, Status::Pass, format!("{model}: '{slug}' is compatible"))
    } else {
        CheckResult::new(
            n,
            Status::Fail,
            format!(
                "{model} takes {}, not '{slug}': use a config.json for one of those, --change-dt-to, or --no-dt-check",
                f.board.slugs.join(", ")
            ),
        )
    }
}

/// balenaOS will not boot with Secure Boot on (its keys are not enrolled).
pub fn secure_boot(f: &Facts) -> CheckResult {
    let n = "secure-boot";
    if f.boot.firmware != Firmware::Uefi {
        return CheckResult::new(n, Status::Skip, "not a UEFI system");
    }
    match f.boot.secure_boot {
        Some(true) => CheckResult::new(
            n,
            Status::Fail,
            "Secure Boot is enabled: the migration ramdisk and balenaOS would not boot; disable it in the firmware setup",
        ),
        Some(false) => CheckResult::new(n, Status::Pass, "Secure Boot is disabled"),
        None => CheckResult::new(n, Status::Warn, "cannot read the SecureBoot EFI variable (efivarfs not mounted?)"),
    }
}
