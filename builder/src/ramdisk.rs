//! Assembling the migration ramdisk: the init, its console node, kernel
//! modules, the payload and the plan, laid out in segments and written
//! reproducibly. Shared by `migrd build` (offline) and `migrd migrate`.

use crate::initramfs::writer::WrittenSegment;
use crate::initramfs::{write_initramfs, Node, Segment, SegmentCompression, Source, Tree};
use crate::inputs::image_check;
use crate::kconfig::RamdiskCompression;
use crate::kernel_source::KernelSource;
use crate::kmod::{self, Closure};
use crate::payload;
use anyhow::{bail, Context, Result};
use migrd_init::arch::Arch;
use migrd_init::plan::{
    BootPlan, Compression, Deadlines, DecodedImage, InjectTarget, Injection, LogSettings,
    PayloadFile, PayloadRole, Placement, Plan, StatusLocation, TargetDisk, TestHooks, WatchdogPlan,
    PLAN_VERSION,
};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The kernel command line every migrd ramdisk boots with: no `root=`, so
/// the initramfs is the root; `ramfs` because a tmpfs root is capped at half
/// the RAM; `panic=10` so a dead init reboots into the old OS; then
/// [`RAMDISK_HANG_CMDLINE`].
pub const BASE_CMDLINE: &str =
    "rootfstype=ramfs panic=10 oops=panic softlockup_panic=1 hung_task_panic=1";

/// The part of [`BASE_CMDLINE`] that turns kernel trouble into a panic (and
/// so, through `panic=10`, a reboot into the old OS) instead of a hang:
/// `oops=panic` (a driver oops), `softlockup_panic=1` (a CPU stuck in the
/// kernel), `hung_task_panic=1` (a task blocked in the kernel for
/// `hung_task_timeout_secs`, 120 s by default: a dying SD card, a stuck
/// mount). All three are kernel boot parameters (`__setup`/`early_param`
/// in kernel/panic.c, kernel/watchdog.c, kernel/hung_task.c); a kernel
/// built without the detector ignores its flag. Stage 2 relaxes the
/// hung-task panic at the point of no return
/// (`migrd_init::watchdog::hang`).
pub const RAMDISK_HANG_CMDLINE: &str = "oops=panic softlockup_panic=1 hung_task_panic=1";

/// Everything that goes into a ramdisk.
#[derive(Debug)]
pub struct RamdiskSpec {
    /// Architecture.
    pub arch: Arch,
    /// The static init binary (already checked).
    pub init: Vec<u8>,
    /// Kernel it is for.
    pub kernel: KernelSource,
    /// Compression of the small segment; `None` = from the kernel config.
    pub compression: Option<SegmentCompression>,
    /// Modules this device needs beyond the default set (required): its
    /// disk's and watchdog's drivers, what it restarts through, `--module`.
    pub extra_modules: Vec<kmod::Needed>,
    /// The balenaOS image.
    pub image: PathBuf,
    /// Its validation ([`image_check::inspect`]), made by every caller that
    /// ships a ramdisk: its decoded size and SHA-256 go into the plan for
    /// stage 2, and its file hash spares a second read of the image.
    pub image_check: Option<image_check::ImageInfo>,
    /// Other files carried to the new OS (config.json, network profiles,
    /// backup).
    pub files: Vec<CarriedFile>,
    /// The disk stage 2 flashes.
    pub target: TargetDisk,
    /// How the boot is armed.
    pub boot: BootPlan,
    /// Logging of stage 2.
    pub log: LogSettings,
    /// Stop before the point of no return.
    pub pretend: bool,
    /// Where stage 2 leaves its result for the old OS.
    pub status: Option<StatusLocation>,
    /// The UEFI boot entry stage 2 makes for the new OS (None: BIOS, or
    /// `--no-efi-setup`).
    pub efi_setup: Option<migrd_init::plan::EfiSetup>,
    /// Lab-only hooks.
    pub test: TestHooks,
    /// The hardware watchdog stage 2 arms (default: none).
    pub watchdog: WatchdogPlan,
    /// Kernel arguments added after [`BASE_CMDLINE`] (the device's console).
    pub cmdline_extra: String,
    /// Other files inside the ramdisk (a strategy's saved originals for its
    /// disarm steps): absolute path inside the ramdisk, bytes. Mode 0600.
    pub ramdisk_files: Vec<(String, Vec<u8>)>,
}

/// A file the ramdisk carries into the new OS.
#[derive(Clone, Debug)]
pub struct CarriedFile {
    /// What it is.
    pub role: PayloadRole,
    /// File name under `/payload/` in the ramdisk.
    pub name: String,
    /// Content.
    pub source: Source,
    /// Partition, path and mode in the new OS.
    pub inject: (InjectTarget, String, u32),
    /// Already compressed (goes in the stored segment).
    pub compressed: bool,
}

impl CarriedFile {
    /// config.json from the operator, checked to be a JSON object, going to
    /// the root of resin-boot, 0600 (it holds the API key).
    pub fn config_json(path: &Path) -> Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading config.json {}", path.display()))?;
        Self::config_json_bytes(text, path)
    }

    /// Like [`CarriedFile::config_json`], from bytes already read (and
    /// possibly rewritten, e.g. with the hostname).
    pub fn config_json_bytes(text: Vec<u8>, path: &Path) -> Result<Self> {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&text).with_context(
            || {
                format!(
                    "{} is not a JSON object: download config.json from the balena dashboard again",
                    path.display()
                )
            },
        )?;
        Ok(CarriedFile {
            role: PayloadRole::Config,
            name: "config.json".into(),
            source: Source::Bytes(text),
            inject: (InjectTarget::ResinBoot, "config.json".into(), 0o600),
            compressed: false,
        })
    }
}

/// What was built.
#[derive(Debug, serde::Serialize)]
pub struct Built {
    /// The plan inside the ramdisk.
    pub plan: Plan,
    /// The initramfs file.
    pub initramfs: PathBuf,
    /// Its size.
    pub initramfs_size: u64,
    /// Where each segment landed, and its compression.
    pub segments: Vec<(SegmentCompression, WrittenSegment)>,
    /// Modules resolved.
    pub modules: Closure,
    /// Kernel release, if known.
    pub kernel_release: Option<String>,
    /// Kernel command line to boot the ramdisk with.
    pub cmdline: String,
}

fn choose_compression(spec: &RamdiskSpec) -> Result<SegmentCompression> {
    if let Some(c) = spec.compression {
        return Ok(c);
    }
    match spec.kernel.config.as_ref().map(|k| k.ramdisk_compression()) {
        Some(RamdiskCompression::Zstd) => Ok(SegmentCompression::Zstd),
        Some(RamdiskCompression::Gzip) => Ok(SegmentCompression::Gzip),
        Some(RamdiskCompression::None) => Ok(SegmentCompression::None),
        None => bail!(
            "cannot tell which initramfs compression the kernel supports (no kernel config found): \
             pass --kernel-config /boot/config-<release> or --compression gzip|zstd|none"
        ),
    }
}

fn read_module(f: &kmod::ModuleFile) -> Result<Vec<u8>> {
    let raw = std::fs::read(&f.source)
        .with_context(|| format!("reading module {}", f.source.display()))?;
    if !f.decompress {
        return Ok(raw);
    }
    let mut out = Vec::new();
    let res = match f.compression.as_deref() {
        Some("xz") => xz2::read::XzDecoder::new(&raw[..]).read_to_end(&mut out),
        Some("zst") => {
            zstd::stream::read::Decoder::new(&raw[..]).and_then(|mut d| d.read_to_end(&mut out))
        }
        Some("gz") => flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out),
        _ => return Ok(raw),
    };
    res.with_context(|| format!("decompressing module {}", f.source.display()))?;
    Ok(out)
}

fn payload_name(c: Compression) -> String {
    let ext = match c {
        Compression::Gzip => "img.gz",
        Compression::Zstd => "img.zst",
        Compression::Xz => "img.xz",
        Compression::Zip => "zip",
        Compression::None => "img",
    };
    format!("/payload/balena.{ext}")
}

/// Size, hash and compression of the image file: from its validation when
/// that hashed the file in the same read, else read again.
/// A file read again must be the one checked: else its hash would be
/// taken of bytes nobody validated.
fn image_facts(spec: &RamdiskSpec) -> Result<payload::FileFacts> {
    if let Some(i) = spec.image_check.as_ref().filter(|i| i.path == spec.image) {
        if let Some(sha256) = &i.file_sha256 {
            return Ok(payload::FileFacts {
                size: i.file_size,
                sha256: sha256.clone(),
                compression: i.compression,
            });
        }
        if i.file_stamp.as_ref().is_some_and(|s| !s.still(&spec.image)) {
            bail!(
                "image {} changed since it was checked (its size, time or inode differ): \
                 run migrd again so the new file is checked",
                spec.image.display()
            );
        }
    }
    payload::facts(&spec.image).with_context(|| format!("image {}", spec.image.display()))
}

/// Build the ramdisk into `out_dir` (`initramfs.img`, `plan.json`,
/// `cmdline.txt`). The initramfs is written to a temporary name and renamed,
/// so a failed build never leaves a half file under the final name.
pub fn build(spec: &RamdiskSpec, out_dir: &Path) -> Result<Built> {
    let small = choose_compression(spec)?;
    let closure = module_closure(spec)?;
    let mut core = core_tree(spec, &closure)?;
    let mut stored = Tree::new();
    let mut payload = vec![place_image(spec, &mut core, &mut stored)?];
    let (carried, inject) = place_carried_files(&spec.files, &mut core, &mut stored)?;
    payload.extend(carried);
    let plan = plan_for(spec, &closure, payload, inject)?;
    let plan_json = plan.to_json()?;
    core.insert("plan.json", private_file(plan_json.clone().into_bytes()))?;

    let mut segments = vec![Segment {
        compression: small,
        tree: core,
    }];
    if !stored.is_empty() {
        segments.push(Segment {
            compression: SegmentCompression::None,
            tree: stored,
        });
    }
    let (initramfs, size, placed) = write_segments(&segments, out_dir)?;

    let cmdline = format!("{BASE_CMDLINE} {}", spec.cmdline_extra)
        .trim()
        .to_string();
    write_private(&out_dir.join("plan.json"), plan_json.as_bytes())?;
    std::fs::write(out_dir.join("cmdline.txt"), format!("{cmdline}\n"))?;

    Ok(Built {
        plan,
        initramfs,
        initramfs_size: size,
        segments: segments.iter().map(|s| s.compression).zip(placed).collect(),
        modules: closure,
        kernel_release: spec.kernel.release.clone(),
        cmdline,
    })
}

/// A file only root reads, with these bytes.
fn private_file(bytes: Vec<u8>) -> Node {
    Node::File {
        perm: 0o600,
        source: Source::Bytes(bytes),
    }
}

/// The modules the ramdisk carries: the default set, the device's own
/// drivers and `--module`s, with their dependencies.
fn module_closure(spec: &RamdiskSpec) -> Result<Closure> {
    match &spec.kernel.modules {
        Some(idx) => kmod::resolve(
            idx,
            &kmod::wanted::default_set(),
            &spec.extra_modules,
            spec.kernel.config.as_ref(),
        ),
        None if spec.extra_modules.is_empty() => Ok(Closure::default()),
        None => bail!("--module needs the kernel's modules: pass --modules-dir"),
    }
}

/// The compressed segment's tree without the plan: the init, the console
/// node, the mount points, the strategy's saved files and the modules.
fn core_tree(spec: &RamdiskSpec, closure: &Closure) -> Result<Tree> {
    let mut core = Tree::new();
    core.insert(
        "init",
        Node::File {
            perm: 0o755,
            source: Source::Bytes(spec.init.clone()),
        },
    )?;
    core.insert(
        "dev/console",
        Node::CharDev {
            perm: 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    for d in ["proc", "sys", "mnt", "tmp"] {
        core.insert(d, Node::Dir { perm: 0o755 })?;
    }
    for (path, bytes) in &spec.ramdisk_files {
        core.insert(path.trim_start_matches('/'), private_file(bytes.clone()))?;
    }
    for m in &closure.files {
        core.insert(
            &m.dest,
            Node::File {
                perm: 0o644,
                source: Source::Bytes(read_module(m)?),
            },
        )?;
    }
    Ok(core)
}

/// Put the image in the ramdisk and describe it for the plan.
/// Compressed images go stored (compressing them again wastes time for
/// nothing); raw images go in the compressed segment.
fn place_image(spec: &RamdiskSpec, core: &mut Tree, stored: &mut Tree) -> Result<PayloadFile> {
    let img = image_facts(spec)?;
    if img.size == 0 {
        bail!("image {} is empty", spec.image.display());
    }
    let path = payload_name(img.compression);
    let node = Node::File {
        perm: 0o600,
        source: Source::File {
            path: spec.image.clone(),
            size: img.size,
        },
    };
    if img.compression == Compression::None {
        core.insert(&path, node)?;
    } else {
        stored.insert(&path, node)?;
    }
    Ok(PayloadFile {
        role: PayloadRole::Image,
        placement: Placement::Embedded { path },
        size: img.size,
        sha256: img.sha256,
        compression: img.compression,
    })
}

/// Put the carried files (config.json, network profiles, backup) under
/// `/payload/`: their plan entries and where stage 2 injects them.
fn place_carried_files(
    files: &[CarriedFile],
    core: &mut Tree,
    stored: &mut Tree,
) -> Result<(Vec<PayloadFile>, Vec<Injection>)> {
    let mut payload = Vec::new();
    let mut inject = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        if f.name.contains('/') || !seen.insert(f.name.clone()) {
            bail!("carried file name '{}' is a path or used twice", f.name);
        }
        let path = format!("/payload/{}", f.name);
        let (size, sha256, source) = match &f.source {
            Source::Bytes(b) => (
                b.len() as u64,
                migrd_init::payload::sha256_hex(&b[..])?,
                Source::Bytes(b.clone()),
            ),
            Source::File { path: p, .. } => {
                let facts = payload::facts(p)?;
                let source = Source::File {
                    path: p.clone(),
                    size: facts.size,
                };
                (facts.size, facts.sha256, source)
            }
        };
        let node = Node::File {
            perm: 0o600,
            source,
        };
        if f.compressed {
            stored.insert(&path, node)?;
        } else {
            core.insert(&path, node)?;
        }
        payload.push(PayloadFile {
            role: f.role,
            placement: Placement::Embedded { path: path.clone() },
            size,
            sha256,
            compression: Compression::None,
        });
        inject.push(Injection {
            source: path,
            partition: f.inject.0,
            path: f.inject.1.clone(),
            mode: f.inject.2,
        });
    }
    Ok((payload, inject))
}

/// The plan stage 2 follows, checked.
fn plan_for(
    spec: &RamdiskSpec,
    closure: &Closure,
    payload: Vec<PayloadFile>,
    inject: Vec<Injection>,
) -> Result<Plan> {
    let plan = Plan {
        version: PLAN_VERSION,
        created_by: concat!("migrd ", env!("CARGO_PKG_VERSION")).into(),
        arch: spec.arch,
        target: spec.target.clone(),
        payload,
        modules: closure.files.iter().map(|m| m.dest.clone()).collect(),
        boot: spec.boot.clone(),
        inject,
        log: spec.log.clone(),
        pretend: spec.pretend,
        efi_setup: spec.efi_setup.clone(),
        status: spec.status.clone(),
        watchdog: spec.watchdog.clone(),
        deadlines: Deadlines::for_target_wait(spec.target.wait_secs),
        test: spec.test.clone(),
        image_decoded: spec.image_check.as_ref().map(|i| DecodedImage {
            size: i.decoded_size,
            sha256: i.decoded_sha256.clone(),
        }),
    };
    plan.validate()?;
    Ok(plan)
}

/// Write the segments to `out_dir/initramfs.img` through a temporary name,
/// synced: its path, size and where each segment landed.
fn write_segments(
    segments: &[Segment],
    out_dir: &Path,
) -> Result<(PathBuf, u64, Vec<WrittenSegment>)> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let final_path = out_dir.join("initramfs.img");
    let tmp = out_dir.join(".initramfs.img.part");
    let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let (w, placed) = write_initramfs(BufWriter::with_capacity(1 << 20, f), segments)
        .with_context(|| format!("writing {}", tmp.display()))?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    let size = f.metadata()?.len();
    std::fs::rename(&tmp, &final_path)?;
    Ok((final_path, size, placed))
}

/// Write a file readable by its owner only (it may describe secrets' paths
/// and the device's identity).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf_check::tiny_elf::elf64;
    use crate::initramfs::read_segments;
    use crate::kconfig::KernelConfig;
    use crate::kmod::ModuleIndex;
    use migrd_init::plan::{BootStrategy, PLAN_PATH};

    /// A fake kernel release: two virtio modules (one xz-compressed), ext4
    /// and vfat built in.
    fn fake_kernel(root: &Path) -> KernelSource {
        let rel = root.join("lib/modules/6.1.0-test");
        std::fs::create_dir_all(rel.join("kernel/drivers")).unwrap();
        std::fs::write(rel.join("kernel/drivers/virtio.ko"), b"virtio module bytes").unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(b"virtio_blk module bytes").unwrap();
        std::fs::write(
            rel.join("kernel/drivers/virtio_blk.ko.xz"),
            xz.finish().unwrap(),
        )
        .unwrap();
        std::fs::write(
            rel.join("modules.dep"),
            "kernel/drivers/virtio_blk.ko.xz: kernel/drivers/virtio.ko\nkernel/drivers/virtio.ko:\n",
        )
        .unwrap();
        std::fs::write(
            rel.join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\nkernel/fs/fat/vfat.ko\n",
        )
        .unwrap();
        KernelSource {
            release: Some("6.1.0-test".into()),
            modules: Some(ModuleIndex::read(&rel).unwrap()),
            config: Some(KernelConfig::parse("CONFIG_RD_ZSTD=y\nCONFIG_RD_GZIP=y\n")),
            config_path: None,
        }
    }

    fn spec(root: &Path) -> RamdiskSpec {
        let image = root.join("balena.img.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[0x5a; 100_000]).unwrap();
        std::fs::write(&image, gz.finish().unwrap()).unwrap();
        let config = root.join("config.json");
        std::fs::write(&config, br#"{"deviceType":"raspberrypi4-64","apiKey":"k"}"#).unwrap();
        RamdiskSpec {
            arch: Arch::X86_64,
            init: elf64(goblin::elf::header::EM_X86_64, None),
            kernel: fake_kernel(root),
            compression: None,
            extra_modules: vec![],
            image,
            image_check: None,
            files: vec![CarriedFile::config_json(&config).unwrap()],
            target: TargetDisk {
                serial: Some("S1".into()),
                wait_secs: 5,
                ..Default::default()
            },
            boot: BootPlan {
                strategy: BootStrategy::None,
                disarm: vec![],
            },
            log: LogSettings::default(),
            pretend: false,
            efi_setup: None,
            status: None,
            test: TestHooks::default(),
            watchdog: WatchdogPlan::default(),
            cmdline_extra: String::new(),
            ramdisk_files: vec![],
        }
    }

    #[test]
    fn an_image_read_again_must_still_be_the_checked_one() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec(d.path());
        // Checked without a hash of the file (as a zip is): the build
        // hashes it again, and only while it is unchanged.
        let mut checked = image_check::ImageInfo::empty(&s.image, Compression::Gzip, "mbr");
        checked.file_stamp = crate::inputs::file_stamp::FileStamp::of(&s.image).ok();
        checked.decoded_size = 100_000;
        checked.decoded_sha256 = "ab".repeat(32);
        s.image_check = Some(checked);
        build(&s, &d.path().join("a")).unwrap();
        let mut bytes = std::fs::read(&s.image).unwrap();
        bytes.push(0);
        std::fs::write(&s.image, bytes).unwrap();
        let e = build(&s, &d.path().join("b")).unwrap_err().to_string();
        assert!(e.contains("changed since it was checked"), "{e}");
        assert!(!d.path().join("b/initramfs.img").exists());
    }

    #[test]
    fn same_inputs_give_identical_bytes() {
        let d = tempfile::tempdir().unwrap();
        let s = spec(d.path());
        build(&s, &d.path().join("a")).unwrap();
        build(&s, &d.path().join("b")).unwrap();
        for f in ["initramfs.img", "plan.json", "cmdline.txt"] {
            assert_eq!(
                std::fs::read(d.path().join("a").join(f)).unwrap(),
                std::fs::read(d.path().join("b").join(f)).unwrap(),
                "{f}"
            );
        }
    }

    #[test]
    fn layout_plan_and_modules_are_as_designed() {
        let d = tempfile::tempdir().unwrap();
        let built = build(&spec(d.path()), &d.path().join("out")).unwrap();
        let (segs, found) = read_segments(&built.initramfs, &mut |n| {
            n == "plan.json" || n.starts_with("lib/modules/")
        })
        .unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].compression, "zstd");
        assert_eq!(segs[1].compression, "none");
        let names0: Vec<&str> = segs[0].entries.iter().map(|e| e.name.as_str()).collect();
        for want in [
            "init",
            "dev/console",
            "plan.json",
            "payload/config.json",
            "lib/modules/virtio_blk.ko",
        ] {
            assert!(names0.contains(&want), "{want} missing from {names0:?}");
        }
        assert_eq!(
            segs[1].entries.last().unwrap().name,
            "payload/balena.img.gz"
        );
        // The xz module was unpacked (this kernel cannot load compressed modules).
        let blk = found
            .iter()
            .find(|(n, _)| n == "lib/modules/virtio_blk.ko")
            .unwrap();
        assert_eq!(blk.1, b"virtio_blk module bytes");
        // Load order: dependency first.
        assert_eq!(
            built.plan.modules,
            ["/lib/modules/virtio.ko", "/lib/modules/virtio_blk.ko"]
        );
        let plan_text = &found
            .iter()
            .find(|(n, _)| n == PLAN_PATH.trim_start_matches('/'))
            .unwrap()
            .1;
        let plan = Plan::from_json(std::str::from_utf8(plan_text).unwrap()).unwrap();
        assert_eq!(plan, built.plan);
        assert_eq!(plan.image().unwrap().compression, Compression::Gzip);
        assert_eq!(
            plan.inject,
            [Injection {
                source: "/payload/config.json".into(),
                partition: InjectTarget::ResinBoot,
                path: "config.json".into(),
                mode: 0o600
            }]
        );
        // Secrets stay out of the plan; the plan file is private.
        assert!(!std::str::from_utf8(plan_text).unwrap().contains("apiKey"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("out/plan.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(d.path().join("out/cmdline.txt"))
                .unwrap()
                .trim(),
            BASE_CMDLINE
        );
    }

    /// Every ramdisk boots with kernel trouble fatal (and a panic
    /// rebooting), and its plan carries the watchdog it was given and a
    /// find-target deadline fitted to its wait.
    #[test]
    fn the_cmdline_makes_kernel_hangs_fatal_and_the_plan_has_deadlines() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec(d.path());
        s.cmdline_extra = "console=ttyS0".into();
        s.target.wait_secs = 45;
        s.watchdog = WatchdogPlan {
            device: Some("/dev/watchdog0".into()),
            identity: Some("i6300ESB timer".into()),
            driver: Some("i6300esb".into()),
            module: Some("i6300esb".into()),
            timeout_secs: 60,
        };
        let built = build(&s, &d.path().join("out")).unwrap();
        let words: Vec<&str> = built.cmdline.split(' ').collect();
        for w in [
            "panic=10",
            "oops=panic",
            "softlockup_panic=1",
            "hung_task_panic=1",
            "console=ttyS0",
        ] {
            assert!(words.contains(&w), "{w} missing from {}", built.cmdline);
        }
        assert!(BASE_CMDLINE.ends_with(RAMDISK_HANG_CMDLINE));
        let txt = std::fs::read_to_string(d.path().join("out/cmdline.txt")).unwrap();
        assert_eq!(txt.trim(), built.cmdline);
        assert_eq!(built.plan.watchdog, s.watchdog);
        assert_eq!(built.plan.deadlines.find_target_secs, 105);
    }

    #[test]
    fn gzip_only_kernels_get_gzip_and_raw_images_are_compressed() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec(d.path());
        s.kernel.config = Some(KernelConfig::parse("CONFIG_RD_GZIP=y\n"));
        s.image = d.path().join("raw.img");
        std::fs::write(&s.image, vec![0u8; 4096]).unwrap();
        let built = build(&s, &d.path().join("out")).unwrap();
        let (segs, _) = read_segments(&built.initramfs, &mut |_| false).unwrap();
        assert_eq!(
            segs.len(),
            1,
            "a raw image travels in the compressed segment"
        );
        assert_eq!(segs[0].compression, "gzip");
        assert!(segs[0]
            .entries
            .iter()
            .any(|e| e.name == "payload/balena.img"));
    }

    #[test]
    fn bad_inputs_fail_naming_them_and_leave_no_output() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let mut s = spec(d.path());
        s.image = d.path().join("missing.img.gz");
        let e = format!("{:#}", build(&s, &out).unwrap_err());
        assert!(e.contains("missing.img.gz"), "{e}");
        let bad = d.path().join("config.json");
        std::fs::write(&bad, b"[1,2]").unwrap();
        let e = format!("{:#}", CarriedFile::config_json(&bad).unwrap_err());
        assert!(
            e.contains("config.json") && e.contains("not a JSON object"),
            "{e}"
        );
        let mut s = spec(d.path());
        s.kernel.config = None;
        let e = format!("{:#}", build(&s, &out).unwrap_err());
        assert!(e.contains("--kernel-config"), "{e}");
        let mut s = spec(d.path());
        s.extra_modules = vec![kmod::Needed::asked("zfs")];
        let e = format!("{:#}", build(&s, &out).unwrap_err());
        assert!(e.contains("zfs"), "{e}");
        assert!(!out.exists(), "a failed build created {}", out.display());
    }
}
