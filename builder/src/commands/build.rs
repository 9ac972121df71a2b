//! `migrd build`: make a migration ramdisk offline, for a device type, with
//! no device at hand. The result is reusable across a fleet whose devices
//! share the kernel and the target-disk identity rule.

use crate::elf_check;
use crate::init_binary;
use crate::initramfs::SegmentCompression;
use crate::inputs::image_check;
use crate::kernel_source::KernelSource;
use crate::kmod::Needed;
use crate::ramdisk::{self, RamdiskSpec};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use migrd_init::arch::Arch;
use migrd_init::plan::{BootPlan, BootStrategy, LogSettings, TargetDisk, MAX_TARGET_WAIT_SECS};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Compression choice for the ramdisk's small segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// From the kernel config (zstd if RD_ZSTD, else gzip if RD_GZIP).
    Auto,
    /// zstd.
    Zstd,
    /// gzip.
    Gzip,
    /// None.
    None,
}

/// Arguments of `migrd build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// CPU architecture of the device (x86_64/amd64, aarch64/arm64, armv7/armhf).
    #[arg(long, default_value = "x86_64")]
    pub arch: Arch,
    /// Kernel release the ramdisk boots with (e.g. 6.1.0-56-amd64).
    #[arg(long)]
    pub kernel_release: Option<String>,
    /// Folder with that kernel's modules: /lib/modules/<release> or its parent.
    #[arg(long)]
    pub modules_dir: Option<PathBuf>,
    /// The kernel's build config (/boot/config-<release>, /proc/config.gz).
    #[arg(long)]
    pub kernel_config: Option<PathBuf>,
    /// Compression of the ramdisk's main segment.
    #[arg(long, value_enum, default_value_t = CompressionArg::Auto)]
    pub compression: CompressionArg,
    /// Extra kernel module to carry (name or alias; repeatable).
    #[arg(long = "module")]
    pub modules: Vec<String>,
    /// The balenaOS image (raw, .gz, .zst, .xz or dashboard .zip).
    #[arg(long, short = 'i')]
    pub image: PathBuf,
    /// The device's config.json from the balena dashboard.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// The static migrd-init to use (default: the one bundled with migrd).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Target disk identity KEY=VALUE, repeatable; keys: serial, wwn, by-id,
    /// partuuid, size (bytes), name (only with --allow-target-name-only).
    #[arg(long = "target", value_name = "KEY=VALUE")]
    pub target: Vec<String>,
    /// Accept a bare kernel disk name (vda, mmcblk0) as the target identity.
    #[arg(long)]
    pub allow_target_name_only: bool,
    /// Seconds stage 2 waits for the target disk to appear (1 to 600).
    #[arg(long, default_value_t = 30, value_parser = parse_target_wait)]
    pub target_wait: u32,
    /// Run every step up to the point of no return, then go back.
    #[arg(long)]
    pub pretend: bool,
    /// Kernel arguments to add to the ramdisk's command line (the device's
    /// console, e.g. "console=ttyS0,115200").
    #[arg(long)]
    pub cmdline_extra: Option<String>,
    /// Folder for initramfs.img, plan.json and cmdline.txt.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parse `--target-wait`: whole seconds, 1 to
/// [`MAX_TARGET_WAIT_SECS`]. A longer wait only delays the fallback to the
/// old OS when the disk is not coming (clap names the flag in the error).
pub fn parse_target_wait(s: &str) -> Result<u32, String> {
    let max = MAX_TARGET_WAIT_SECS;
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=u64::from(max)).contains(&n) => u32::try_from(n).map_err(|e| e.to_string()),
        Ok(n) => Err(format!(
            "{n} seconds is outside 1..={max}: stage 2 waits at most {max} s (10 minutes) for \
             the target disk; a disk that has not appeared by then is not coming, and the \
             ramdisk goes back to the old OS"
        )),
        Err(_) => Err(format!(
            "'{s}' is not a whole number of seconds (1 to {max})"
        )),
    }
}

/// Parse `--target KEY=VALUE` flags into a target identity.
pub fn parse_target(items: &[String], allow_name_only: bool, wait: u32) -> Result<TargetDisk> {
    let mut t = TargetDisk {
        wait_secs: wait,
        allow_name_only,
        ..Default::default()
    };
    for it in items {
        let Some((k, v)) = it.split_once('=') else {
            bail!("--target {it}: expected KEY=VALUE (serial=..., wwn=..., by-id=..., partuuid=..., size=..., name=...)");
        };
        let v = v.trim().to_string();
        if v.is_empty() {
            bail!("--target {it}: empty value");
        }
        match k.trim() {
            "serial" => t.serial = Some(v),
            "wwn" => t.wwn = Some(v),
            "by-id" => t.by_id = Some(v),
            "partuuid" => t.partuuid = Some(v.to_ascii_lowercase()),
            "name" => t.name_hint = Some(v),
            "size" => {
                t.size_bytes = Some(v.parse().with_context(|| format!("--target {it}: size is a number of bytes"))?)
            }
            other => bail!("--target {it}: unknown key '{other}' (use serial, wwn, by-id, partuuid, size, name)"),
        }
    }
    if !t.is_identified() {
        bail!(
            "no target disk identity: pass --target serial=..., wwn=..., by-id=... or partuuid=... \
             (a bare name=... needs --allow-target-name-only: disk names can change between boots)"
        );
    }
    Ok(t)
}

/// `--module` names, then what the device type restarts through (from
/// config.json's `deviceType`; a Raspberry Pi's ramdisk must carry its
/// watchdog driver or its reboot halts).
fn needed_modules(a: &BuildArgs) -> Result<Vec<Needed>> {
    let mut out: Vec<Needed> = a.modules.iter().map(|m| Needed::asked(m)).collect();
    let Some(path) = &a.config else {
        return Ok(out);
    };
    let text =
        std::fs::read(path).with_context(|| format!("reading config.json {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not JSON: download config.json from the balena dashboard again",
            path.display()
        )
    })?;
    if let Some(slug) = json.get("deviceType").and_then(|v| v.as_str()) {
        for n in crate::kmod::needed::restart_for_slug(slug) {
            if !out.iter().any(|o| o.name == n.name) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// Run `migrd build`.
pub fn run(a: BuildArgs) -> Result<()> {
    let spec = spec(&a)?;
    let built = ramdisk::build(&spec, &a.output)?;
    let mut o = std::io::stdout().lock();
    if a.json {
        writeln!(o, "{}", serde_json::to_string_pretty(&built)?)?;
        return Ok(());
    }
    print_summary(&mut o, &built, &a.output)?;
    Ok(())
}

/// The ramdisk these arguments describe, its inputs checked: the target,
/// the init binary, the whole image, the kernel and its modules.
fn spec(a: &BuildArgs) -> Result<RamdiskSpec> {
    let target = parse_target(&a.target, a.allow_target_name_only, a.target_wait)?;
    let init_path = match &a.init {
        Some(p) => p.clone(),
        None => init_binary::locate(a.arch)?,
    };
    let init = elf_check::check_init_file(&init_path, a.arch)?;
    // The same whole-image validation as `check` and `migrate`, before the
    // kernel and its modules are read.
    let checked = image_check::inspect(&a.image)?;
    eprintln!(
        "image {}: decoded {} bytes ({:?}) in {:.1} s, partitions fit, balenaOS {}",
        checked.path.display(),
        checked.decoded_size,
        checked.compression,
        checked.check_secs,
        checked.os_version.as_deref().unwrap_or("?")
    );
    let kernel = KernelSource::resolve(
        a.kernel_release.as_deref(),
        a.modules_dir.as_deref(),
        a.kernel_config.as_deref(),
    )?;
    let compression = match a.compression {
        CompressionArg::Auto => None,
        CompressionArg::Zstd => Some(SegmentCompression::Zstd),
        CompressionArg::Gzip => Some(SegmentCompression::Gzip),
        CompressionArg::None => Some(SegmentCompression::None),
    };
    Ok(RamdiskSpec {
        arch: a.arch,
        init,
        kernel,
        compression,
        extra_modules: needed_modules(a)?,
        image: a.image.clone(),
        image_check: Some(checked),
        files: match &a.config {
            Some(c) => vec![ramdisk::CarriedFile::config_json(c)?],
            None => vec![],
        },
        target,
        boot: BootPlan {
            strategy: BootStrategy::None,
            disarm: Vec::new(),
        },
        log: LogSettings::default(),
        pretend: a.pretend,
        efi_setup: None,
        status: None,
        test: Default::default(),
        watchdog: Default::default(),
        cmdline_extra: a.cmdline_extra.clone().unwrap_or_default(),
        ramdisk_files: vec![],
    })
}

/// What was built, for people.
fn print_summary(o: &mut dyn Write, built: &ramdisk::Built, output: &Path) -> Result<()> {
    writeln!(
        o,
        "initramfs  {} ({} bytes)",
        built.initramfs.display(),
        built.initramfs_size
    )?;
    for (c, s) in &built.segments {
        writeln!(
            o,
            "  segment  offset {:>10}  length {:>10}  {:?}",
            s.offset, s.length, c
        )?;
    }
    writeln!(o, "plan       {}", output.join("plan.json").display())?;
    writeln!(
        o,
        "kernel     {}",
        built
            .kernel_release
            .as_deref()
            .unwrap_or("(unknown release)")
    )?;
    writeln!(
        o,
        "modules    {} carried, {} built in{}",
        built.modules.files.len(),
        built.modules.builtin.len(),
        if built.modules.absent.is_empty() {
            String::new()
        } else {
            format!(", not in this kernel: {}", built.modules.absent.join(" "))
        }
    )?;
    writeln!(
        o,
        "target     {}",
        migrd_init::target::describe(&built.plan.target)
    )?;
    writeln!(o, "cmdline    {}", built.cmdline)?;
    writeln!(
        o,
        "           (add the device's console=, e.g. console=ttyS0,115200 or console=ttyAMA0)"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> BuildArgs {
        use clap::Parser;
        let mut v = vec!["migrd", "build", "-i", "x.img", "-o", "out"];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v).unwrap().command {
            crate::cli::Command::Build(b) => b,
            other => panic!("{other:?}"),
        }
    }

    /// A Raspberry Pi's ramdisk built offline carries the driver it
    /// restarts through, after the operator's `--module`s.
    #[test]
    fn a_pi_device_type_adds_its_restart_driver() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("config.json");
        std::fs::write(&cfg, r#"{"deviceType":"raspberrypi3"}"#).unwrap();
        let c = cfg.display().to_string();
        let n = needed_modules(&args(&["-c", &c, "--module", "zfs"])).unwrap();
        let names: Vec<&str> = n.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["zfs", "bcm2835_wdt"]);
        std::fs::write(&cfg, r#"{"deviceType":"genericx86-64-ext"}"#).unwrap();
        assert!(needed_modules(&args(&["-c", &c])).unwrap().is_empty());
        std::fs::write(&cfg, "not json").unwrap();
        let e = format!("{:#}", needed_modules(&args(&["-c", &c])).unwrap_err());
        assert!(e.contains("config.json") || e.contains(&c), "{e}");
    }

    #[test]
    fn target_flags_make_an_identity() {
        let t = parse_target(&["serial=ABC".into(), "size=1024".into()], false, 7).unwrap();
        assert_eq!(
            (t.serial.as_deref(), t.size_bytes, t.wait_secs),
            (Some("ABC"), Some(1024), 7)
        );
        let t = parse_target(&["partuuid=1234ABCD-02".into()], false, 7).unwrap();
        assert_eq!(t.partuuid.as_deref(), Some("1234abcd-02"));
    }

    #[test]
    fn bad_target_flags_say_what_to_do() {
        for (items, allow, needle) in [
            (vec![], false, "no target disk identity"),
            (
                vec!["name=sda".to_string()],
                false,
                "--allow-target-name-only",
            ),
            (vec!["serial".to_string()], false, "KEY=VALUE"),
            (
                vec!["colour=red".to_string()],
                false,
                "unknown key 'colour'",
            ),
            (
                vec!["size=big".to_string(), "serial=x".to_string()],
                false,
                "number of bytes",
            ),
        ] {
            let e = format!("{:#}", parse_target(&items, allow, 1).unwrap_err());
            assert!(e.contains(needle), "{items:?}: {e}");
        }
        assert!(parse_target(&["name=sda".into()], true, 1).is_ok());
    }
}
