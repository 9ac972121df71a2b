//! `migrd migrate`: probe, gather, check, plan, build the ramdisk, arm a
//! one-shot boot through the undo journal, reboot.
//!
//! Nothing on the device changes before every check has passed and the
//! operator (or `--no-ack`) agreed; every change after that is journaled.

pub mod arm;
pub mod grub_facts;
pub mod kernel;
pub mod kexec_file;
pub mod restart2;
pub mod status;

use crate::commands::check::{apply_log_level, evaluate, print_text, report};
use crate::commands::migrate_args::MigrateArgs;
use crate::elf_check;
use crate::init_binary;
use crate::inputs::gather::{Gathered, ImageInput};
use crate::inputs::image_check::ImageInfo;
use crate::journal::Journaled;
use crate::kernel_source::KernelSource;
use crate::ramdisk::{self, CarriedFile, RamdiskSpec};
use anyhow::{bail, Context, Result};
use migrd_init::arch::Arch;
use migrd_init::plan::{BootPlan, InjectTarget, LogSettings, PayloadRole, StatusLocation};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// Status file name in migrd's folder on /boot.
pub const STATUS_FILE: &str = "status.json";

mod lab_hooks;
use lab_hooks::{corrupt_for_lab, pause_for_lab, test_hooks};
pub use lab_hooks::{CORRUPT_HOOK, CORRUPT_IMAGE_HOOK, PAUSE_HOOK, TEST_HOOK_ENV};

fn confirm(summary: &str) -> Result<()> {
    println!("{summary}");
    if !std::io::stdin().is_terminal() {
        bail!("not confirmed: stdin is not a terminal; pass --no-ack to migrate without asking");
    }
    print!("Type 'yes' to arm the migration: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "yes" {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

/// The device type change `--change-dt-to` asks of the API after the
/// flash: the fleet's config.json, the device's UUID and the new slug.
type DtChange = (crate::inputs::config_json::ConfigJson, String, String);

/// config.json as the new OS gets it (hostname carried, device type
/// changed) and the network profiles, as payload files; and the device
/// type change to make in the API, if any.
fn config_and_network_files(
    g: &crate::inputs::gather::Gathered,
    a: &MigrateArgs,
) -> Result<(Vec<CarriedFile>, Option<DtChange>)> {
    let mut files = Vec::new();
    let mut dt_change = None;
    if let Some(cfg) = &g.config {
        let mut cfg = cfg
            .clone()
            .map_err(|e| anyhow::anyhow!("config.json: {e}"))?;
        if let (Some(slug), Some(uuid)) = (&a.change_dt_to, &cfg.uuid) {
            dt_change = Some((cfg.clone(), uuid.clone(), slug.clone()));
        }
        if let Some(h) = &g.hostname {
            cfg.set_hostname(h);
        }
        if let Some(dt) = &a.change_dt_to {
            cfg.set_device_type(dt);
        }
        files.push(CarriedFile::config_json_bytes(
            cfg.to_json().into_bytes(),
            Path::new("config.json"),
        )?);
    }
    if let Ok(nets) = &g.networks {
        for (name, content) in nets.files() {
            files.push(CarriedFile {
                role: PayloadRole::Network,
                name: format!("nm-{name}"),
                source: crate::initramfs::Source::Bytes(content.into_bytes()),
                inject: (
                    InjectTarget::ResinBoot,
                    format!("system-connections/{name}"),
                    0o600,
                ),
                compressed: false,
            });
        }
    }
    Ok((files, dt_change))
}

/// backup.tgz, written into `work`, as a payload file, when a backup was
/// asked for.
fn backup_file(g: &crate::inputs::gather::Gathered, work: &Path) -> Result<Option<CarriedFile>> {
    let Some(b) = &g.backup else {
        return Ok(None);
    };
    let (spec, _) = b.as_ref().map_err(|e| anyhow::anyhow!("backup: {e}"))?;
    let out = work.join("backup.tgz");
    let size = spec
        .write_tgz(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    log::info!("backup: {} ({size} bytes)", out.display());
    Ok(Some(CarriedFile {
        role: PayloadRole::Backup,
        name: "backup.tgz".into(),
        source: crate::initramfs::Source::File { path: out, size },
        inject: (InjectTarget::ResinData, "backup.tgz".into(), 0o600),
        compressed: true,
    }))
}

/// Run `migrd migrate` on the live system.
pub fn run(a: MigrateArgs) -> Result<()> {
    run_at(Path::new("/"), a)
}

/// Run `migrd migrate` with every path under `root`.
pub fn run_at(root: &Path, a: MigrateArgs) -> Result<()> {
    apply_log_level(&a);
    for n in a.ignored_notes() {
        log::warn!("{n}");
    }
    let (facts, g, strategy, arch) = checked(root, &a)?;
    let image = image_to_flash(&a, &g)?;
    if a.download_only {
        println!("downloaded {}", image.path.display());
        return Ok(());
    }

    let (mut files, dt_change) = config_and_network_files(&g, &a)?;
    let work = work_folder(root, &a.work_dir)?;
    std::fs::create_dir_all(&work)
        .with_context(|| format!("creating work folder {}", work.display()))?;
    files.extend(backup_file(&g, &work)?);

    let k = kernel::running_for(root, strategy)?;
    let target_disk = facts
        .disks
        .root_disk()
        .context("cannot tell which single disk holds /")?;
    let mut armer = arm::armer(strategy)?;
    let ctx = arm::Ctx {
        root,
        facts: &facts,
        kernel: &k,
        args: &a,
    };
    let prepared = armer.prepare(&ctx)?;
    let image_path = image.path.clone();
    let spec = ramdisk_spec(
        &ctx,
        arch,
        armer.as_ref(),
        &prepared,
        target_disk,
        image,
        files,
    )?;
    if std::env::var(TEST_HOOK_ENV).as_deref() == Ok(CORRUPT_IMAGE_HOOK) {
        corrupt_for_lab(&image_path)?;
    }
    let built = ramdisk::build(&spec, &work.join("ramdisk"))?;
    if std::env::var(TEST_HOOK_ENV).as_deref() == Ok(CORRUPT_HOOK) {
        corrupt_for_lab(&built.initramfs)?;
    }
    let result = arm_and_maybe_reboot(
        &ctx,
        armer.as_ref(),
        &image_path,
        target_disk,
        &built,
        dt_change.as_ref(),
    );
    // The ramdisk was copied to /boot; the work copy is only for debugging.
    if !a.no_cleanup {
        let _ = std::fs::remove_dir_all(work.join("ramdisk"));
        let _ = std::fs::remove_file(work.join("backup.tgz"));
    }
    result
}

/// Probe, gather and check, print the report, and stop unless every check
/// passed: the facts, the inputs, the strategy `migrd check` reports
/// (decided once, by the checks) and the CPU architecture of stage 2.
fn checked(
    root: &Path,
    a: &MigrateArgs,
) -> Result<(
    crate::probe::Facts,
    Gathered,
    migrd_bootloaders::StrategyKind,
    Arch,
)> {
    let (facts, g, verdict) = evaluate(root, a);
    print_text(&report(&facts, &g, a, &verdict));
    let failed = verdict.failed();
    if failed > 0 {
        bail!("{failed} check(s) failed; nothing was changed");
    }
    let strategy = verdict.strategy_to_arm()?;
    let arch = facts
        .arch
        .context("this CPU architecture has no migrd stage 2")?;
    Ok((facts, g, strategy, arch))
}

/// The image to flash, decoded to its end and validated: by the checks
/// (`-i`) or by the download. Nothing is armed for a damaged one.
fn image_to_flash(a: &MigrateArgs, g: &Gathered) -> Result<ImageInfo> {
    match &g.image {
        ImageInput::Local(Ok(info)) => Ok((**info).clone()),
        ImageInput::Local(Err(e)) => bail!("image: {e}"),
        ImageInput::Download(_) => {
            let opts = crate::balena_api::download::Options::default();
            crate::commands::download::download_image(a, &opts)
        }
    }
}

/// Everything that goes into this device's ramdisk.
fn ramdisk_spec(
    ctx: &arm::Ctx,
    arch: Arch,
    armer: &dyn arm::Armer,
    prepared: &arm::Prepared,
    target_disk: &crate::probe::disks::DiskInfo,
    image: ImageInfo,
    files: Vec<CarriedFile>,
) -> Result<RamdiskSpec> {
    let (a, facts, k) = (ctx.args, ctx.facts, ctx.kernel);
    let mut target = target_disk.target();
    target.wait_secs = 60;
    Ok(RamdiskSpec {
        arch,
        init: elf_check::check_init_file(&init_binary::locate(arch)?, arch)?,
        kernel: KernelSource::resolve(Some(&k.release), Some(&k.modules_dir), k.config.as_deref())?,
        compression: None,
        extra_modules: crate::kmod::needed::for_device(facts, target_disk),
        image: image.path.clone(),
        image_check: Some(image),
        files,
        target,
        boot: BootPlan {
            strategy: armer.plan_strategy(),
            disarm: prepared.disarm.clone(),
        },
        log: LogSettings {
            level: a.s2_log_level.unwrap_or(a.log_level).stage2(),
            device: match &a.log_to {
                Some(dev) => Some(log_device(ctx.root, dev)?),
                None => None,
            },
        },
        pretend: a.pretend,
        // After flashing on UEFI: an entry for the new OS, and none left
        // pointing at the partitions the image overwrites.
        efi_setup: (facts.boot.firmware == crate::probe::firmware::Firmware::Uefi
            && !a.no_efi_setup)
            .then(|| migrd_init::plan::EfiSetup {
                old_partuuids: target_disk.partuuids.clone(),
            }),
        status: Some(status_location(ctx.root, facts)?),
        test: test_hooks(),
        watchdog: if a.no_watchdog {
            migrd_init::plan::WatchdogPlan::default()
        } else {
            crate::probe::watchdog::plan_for(&facts.watchdog_devices)
        },
        cmdline_extra: k
            .consoles
            .iter()
            .chain(&prepared.cmdline_extra)
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
        ramdisk_files: prepared.ramdisk_files.clone(),
    })
}

/// Where `-w/--work-dir` points, as an absolute path (the arming copies
/// the ramdisk from it by path): on the running system as given, a
/// relative path taken from the current folder; inside `root` when migrd
/// works on another root (`--root`, the tests). Decided once: the backup,
/// the ramdisk's work copy and their cleanup all use it.
fn work_folder(root: &Path, work_dir: &Path) -> Result<std::path::PathBuf> {
    if root == Path::new("/") {
        std::path::absolute(work_dir)
            .with_context(|| format!("-w/--work-dir {}", work_dir.display()))
    } else {
        Ok(root.join(work_dir.strip_prefix("/").unwrap_or(work_dir)))
    }
}

/// The filesystem of the `-l` log device, by UUID (device names move).
fn log_device(root: &Path, dev: &Path) -> Result<StatusLocation> {
    let p = root.join(dev.strip_prefix("/").unwrap_or(dev));
    let mut f = std::fs::File::open(&p).with_context(|| format!("log device {}", dev.display()))?;
    match migrd_init::fsprobe::probe(&mut f)? {
        Some(i) => Ok(StatusLocation { fs_uuid: i.uuid, fstype: i.fstype, path: String::new() }),
        None => bail!("log device {}: no ext2/3/4 or FAT filesystem on it; format it (mkfs.vfat) or pick another", dev.display()),
    }
}

/// Where stage 2 leaves its result for the old OS: migrd's folder on the
/// filesystem holding /boot, by filesystem UUID.
fn status_location(root: &Path, facts: &crate::probe::Facts) -> Result<StatusLocation> {
    let boot_mount = facts
        .disks
        .boot
        .as_ref()
        .or(facts.disks.root.as_ref())
        .context("cannot tell which filesystem holds /boot")?;
    let (fs_uuid, fstype) = grub_facts::fs_uuid(root, boot_mount)?;
    Ok(StatusLocation {
        fs_uuid,
        fstype,
        path: format!(
            "{}/{STATUS_FILE}",
            grub_facts::in_fs("/boot/migrd", &boot_mount.mount_point)
        ),
    })
}

fn arm_and_maybe_reboot(
    ctx: &arm::Ctx,
    armer: &dyn arm::Armer,
    image: &Path,
    target_disk: &crate::probe::disks::DiskInfo,
    built: &ramdisk::Built,
    dt_change: Option<&DtChange>,
) -> Result<()> {
    let a = ctx.args;
    let strategy = armer.kind();
    let summary = format!(
        "\nmigrd will arm a one-shot boot ({strategy}) into a ramdisk that{} writes {} to /dev/{} ({} bytes; {}).\n\
         Carried over: {}.\nA reset before the ramdisk writes the disk boots this OS again.",
        if a.pretend { " checks everything but NOT" } else { "" },
        image.display(),
        target_disk.name,
        target_disk.size_bytes,
        migrd_init::target::describe(&built.plan.target),
        if built.plan.inject.is_empty() {
            "nothing".to_string()
        } else {
            built.plan.inject.iter().map(|i| format!("{}:{}", grub_label(i.partition), i.path)).collect::<Vec<_>>().join(", ")
        }
    );
    if a.no_ack {
        println!("{summary}");
    } else {
        confirm(&summary)?;
    }

    // takeover's --change-dt-to also changes the device's type in the API
    // (provisioned devices, which have a uuid): done before arming, and not
    // for a pretend run, which must change nothing.
    if let (Some((cfg, uuid, slug)), false) = (dt_change, a.pretend) {
        let client = crate::balena_api::client::Client::new(
            &cfg.api_endpoint,
            cfg.api_key.clone(),
            std::time::Duration::from_secs(a.check_timeout),
        )?;
        client.change_device_type(uuid, slug).with_context(|| {
            format!("--change-dt-to {slug}: changing the device type in the API")
        })?;
        println!("device {uuid}: device type changed to {slug} in the API");
    }
    let changes = armer.changes(ctx, built)?;
    // A strategy without file changes (kexec) leaves no journal behind.
    if !changes.is_empty() {
        let mut j = Journaled::begin(ctx.root)?;
        for (i, c) in changes.iter().enumerate() {
            if let Err(e) = j.apply(c) {
                let undone = j.revert();
                return Err(e.context(format!(
                    "arming failed; changes undone: {}",
                    match undone {
                        Ok(v) => v.join(", "),
                        Err(e2) => format!("UNDO FAILED TOO: {e2:#} — run `migrd cancel`"),
                    }
                )));
            }
            pause_for_lab(i + 1, changes.len());
        }
        write_home(ctx.root, &changes);
        println!("armed: next boot runs the migration ramdisk once (`migrd cancel` undoes this)");
    }
    armer.activate(ctx, built)?;
    if a.no_reboot {
        println!("not rebooting (--no-reboot): {}", armer.no_reboot_hint());
        return Ok(());
    }
    armer.reboot(ctx, built)
}

/// Make every filesystem the arming changed write its journal home
/// (`fs_checkpoint`), so that a power cut right after arming leaves files
/// the boot loader can read: GRUB reads ext4 without its journal. A
/// failure is a warning, not an error: the arming is complete for Linux,
/// and a boot loader that cannot see it yet boots the old OS (the safe
/// side) until the kernel writes the journal home itself, within seconds.
fn write_home(root: &Path, changes: &[migrd_bootloaders::change::Change]) {
    let files = changes
        .iter()
        .filter(|c| !matches!(c, migrd_bootloaders::change::Change::EfiVar { .. }))
        .map(|c| root.join(c.path().strip_prefix("/").unwrap_or(c.path())))
        .collect::<Vec<_>>();
    for p in crate::fs_checkpoint::one_per_filesystem(files.iter().map(|p| p.as_path())) {
        match crate::fs_checkpoint::checkpoint(&p) {
            Ok(c) => log::debug!("{}: {c:?}", p.display()),
            Err(e) => eprintln!(
                "warning: {e:#}; a power cut in the next seconds may boot this OS again instead of the ramdisk"
            ),
        }
    }
}

fn grub_label(t: InjectTarget) -> &'static str {
    migrd_init::inject::label(t)
}

#[cfg(test)]
mod tests {
    use super::work_folder;
    use std::path::Path;

    #[test]
    fn the_work_folder_is_the_flag_on_the_running_system_and_inside_another_root() {
        // The default `-w .` is the current folder, not the root folder:
        // the backup and the ramdisk's work copy land (and are cleaned up)
        // in one place, named absolutely (the arming copies from it).
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(work_folder(Path::new("/"), Path::new(".")).unwrap(), cwd);
        assert_eq!(
            work_folder(Path::new("/"), Path::new("w")).unwrap(),
            cwd.join("w")
        );
        assert_eq!(
            work_folder(Path::new("/"), Path::new("/var/tmp/m")).unwrap(),
            Path::new("/var/tmp/m")
        );
        assert_eq!(
            work_folder(Path::new("/fixture"), Path::new("/var/tmp/m")).unwrap(),
            Path::new("/fixture/var/tmp/m")
        );
    }
}
