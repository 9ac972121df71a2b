//! Checks on the inputs: config.json, the image, network profiles, backup.

use super::{CheckResult, Options, Status};
use crate::inputs::gather::{Gathered, ImageInput};
use crate::probe::{arch, device_types, Facts};

/// config.json parsed and has what is needed.
pub fn config(g: &Gathered) -> CheckResult {
    let n = "config";
    match &g.config {
        None => CheckResult::new(n, Status::Fail, "no config.json: pass the fleet's config.json with -c (dashboard → Add device → download configuration file)"),
        Some(Err(e)) => CheckResult::new(n, Status::Fail, e.clone()),
        Some(Ok(c)) if c.api_key.is_none() => CheckResult::new(
            n,
            Status::Warn,
            format!("{}: no apiKey or deviceApiKey; API calls will be anonymous", c.path.display()),
        ),
        Some(Ok(c)) => CheckResult::new(
            n,
            Status::Pass,
            format!("{}: fleet {}, device type {}", c.path.display(), c.application_id, c.device_type),
        ),
    }
}

/// The balena arches a board (or else the kernel) can run.
fn allowed_arches(f: &Facts) -> Vec<&'static str> {
    match f.board.arch.as_deref() {
        Some("armv6") => vec!["rpi"],
        Some("armv7") => vec!["armv7hf", "rpi"],
        Some("aarch64") => vec!["aarch64", "armv7hf", "rpi"],
        Some("x86_64") => vec!["amd64"],
        _ => f
            .kernel_machine
            .as_deref()
            .map(arch::balena_arches)
            .unwrap_or(&[])
            .to_vec(),
    }
}

/// How the whole-image validation went, for the report.
fn decoded(info: &crate::inputs::image_check::ImageInfo) -> String {
    format!(
        "decoded whole ({} bytes) in {:.1} s",
        info.decoded_size, info.check_secs
    )
}

/// A local image is a balenaOS image for this device.
pub fn image(f: &Facts, g: &Gathered, o: &Options) -> CheckResult {
    let n = "image";
    let info = match &g.image {
        ImageInput::Download(v) => {
            return CheckResult::new(
                n,
                Status::Skip,
                format!("no -i: balenaOS '{v}' will be downloaded"),
            )
        }
        ImageInput::Local(Err(e)) => return CheckResult::new(n, Status::Fail, e.clone()),
        ImageInput::Local(Ok(i)) => i,
    };
    // Damage, format, layout and balenaOS partitions were checked when the
    // image was decoded to its end (inputs::image_check::inspect).
    let what = info.path.display();
    if info.flasher {
        return CheckResult::new(
            n,
            Status::Fail,
            format!("{what} is a flasher image: written to this disk it would boot the installer; use the raw image (let migrd download it)"),
        );
    }
    let allowed = allowed_arches(f);
    if let Some(a) = info.arch.as_deref() {
        if !allowed.is_empty() && !allowed.contains(&a) {
            return CheckResult::new(
                n,
                Status::Fail,
                format!(
                    "{what} is for {a}, but this device runs {}",
                    allowed.join("/")
                ),
            );
        }
    }
    if let (Some(img), Some(want)) = (info.device_type.as_deref(), g.target_slug.as_deref()) {
        if img != want {
            let fits = f.board.slugs.iter().any(|s| s == img);
            if !(o.no_dt_check || fits) {
                return CheckResult::new(
                    n,
                    Status::Fail,
                    format!("{what} is a '{img}' image but the device type is '{want}'; use a matching image or --change-dt-to {img}"),
                );
            }
            return CheckResult::new(
                n,
                Status::Warn,
                format!(
                    "{what} is a '{img}' image, config.json says '{want}'; {}",
                    decoded(info)
                ),
            );
        }
    }
    let dt = info.device_type.as_deref().unwrap_or("unknown type");
    let known = device_types::slug_arch(dt).is_some();
    CheckResult::new(
        n,
        Status::Pass,
        format!(
            "{what}: balenaOS {} for {dt}{}, needs {} MiB; {}",
            info.os_version.as_deref().unwrap_or("?"),
            if known { "" } else { " (not in migrd's table)" },
            info.required_bytes >> 20,
            decoded(info)
        ),
    )
}

/// The new OS will have a way onto the network.
pub fn network(f: &Facts, g: &Gathered, o: &Options) -> CheckResult {
    let n = "network";
    let set = match &g.networks {
        Ok(s) => s,
        Err(e) => return CheckResult::new(n, Status::Fail, e.clone()),
    };
    let migrated: Vec<String> = set.migrated().map(|p| p.id.clone()).collect();
    let skipped = set.profiles.iter().filter(|p| !p.migrated).count();
    if !migrated.is_empty() {
        return CheckResult::new(
            n,
            Status::Pass,
            format!(
                "{} profile(s) will be migrated: {}{}",
                migrated.len(),
                migrated.join(", "),
                if skipped > 0 {
                    format!("; {skipped} not migrated (see networks)")
                } else {
                    String::new()
                }
            ),
        );
    }
    let wired_dhcp = f.host.default_route_iface.is_some()
        && !f.host.default_route_wireless
        && f.host.static_ip_hints.is_empty();
    if wired_dhcp {
        return CheckResult::new(
            n,
            Status::Pass,
            format!(
                "no profile to migrate, but the default route is wired ({}) and balenaOS configures wired interfaces by DHCP",
                f.host.default_route_iface.as_deref().unwrap_or("?")
            ),
        );
    }
    let why = if f.host.static_ip_hints.is_empty() {
        "no network profile found to migrate".to_string()
    } else {
        format!(
            "no profile to migrate and static addresses are configured outside NetworkManager ({})",
            f.host.static_ip_hints.join("; ")
        )
    };
    if o.no_nwmgr_check {
        CheckResult::new(
            n,
            Status::Warn,
            format!("{why} (allowed by --no-nwmgr-check)"),
        )
    } else {
        CheckResult::new(
            n,
            Status::Fail,
            format!("{why}: the new OS might not come online; add a keyfile with --nwmgr-cfg, or --no-nwmgr-check"),
        )
    }
}

/// The backup definition is readable and its sources exist.
pub fn backup(g: &Gathered) -> CheckResult {
    let n = "backup";
    match &g.backup {
        None => CheckResult::new(n, Status::Skip, "no --backup-cfg"),
        Some(Err(e)) => CheckResult::new(n, Status::Fail, e.clone()),
        Some(Ok((s, size))) => CheckResult::new(
            n,
            Status::Pass,
            format!(
                "{} volume(s), at most {} KiB",
                s.volumes.len(),
                size.div_ceil(1024)
            ),
        ),
    }
}
