//! Assembling the migration ramdisk: the init, its console node, kernel
//! modules, the payload and the plan, laid out in segments and written
//! reproducibly. Shared by `migrd build` (offline) and `migrd migrate`.

use crate::initramfs::writer::WrittenSegment;
use crate::initramfs::{write_initramfs, Node, Segment, SegmentCompression, Source, Tree};
use crate::kconfig::RamdiskCompression;
use crate::kernel_source::KernelSource;
use crate::kmod::{self, Closure};
use crate::payload;
use anyhow::{bail, Context, Result};
use migrd_init::arch::Arch;
use migrd_init::plan::{
    BootPlan, Compression, LogSettings, PayloadFile, PayloadRole, Placement, Plan, TargetDisk,
    PLAN_VERSION,
};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The kernel command line every migrd ramdisk boots with: no `root=`, so
/// the initramfs is the root; `ramfs` because a tmpfs root is capped at half
/// the RAM; `panic=10` so a dead init reboots into the old OS.
pub const BASE_CMDLINE: &str = "rootfstype=ramfs panic=10";

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
    /// Extra module names (required).
    pub extra_modules: Vec<String>,
    /// The balenaOS image.
    pub image: PathBuf,
    /// config.json, if carried.
    pub config: Option<PathBuf>,
    /// The disk stage 2 flashes.
    pub target: TargetDisk,
    /// How the boot is armed.
    pub boot: BootPlan,
    /// Logging of stage 2.
    pub log: LogSettings,
    /// Stop before the point of no return.
    pub pretend: bool,
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

fn payload_name(image: &Path, c: Compression) -> String {
    let ext = match c {
        Compression::Gzip => "img.gz",
        Compression::Zstd => "img.zst",
        Compression::Xz => "img.xz",
        Compression::Zip => "zip",
        Compression::None => "img",
    };
    let _ = image;
    format!("/payload/balena.{ext}")
}

/// Build the ramdisk into `out_dir` (`initramfs.img`, `plan.json`,
/// `cmdline.txt`). The initramfs is written to a temporary name and renamed,
/// so a failed build never leaves a half file under the final name.
pub fn build(spec: &RamdiskSpec, out_dir: &Path) -> Result<Built> {
    let small = choose_compression(spec)?;
    let closure = match &spec.kernel.modules {
        Some(idx) => kmod::resolve(
            idx,
            &kmod::wanted::default_set(),
            &spec.extra_modules,
            spec.kernel.config.as_ref(),
        )?,
        None if spec.extra_modules.is_empty() => Closure::default(),
        None => bail!("--module needs the kernel's modules: pass --modules-dir"),
    };

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
    for m in &closure.files {
        core.insert(
            &m.dest,
            Node::File {
                perm: 0o644,
                source: Source::Bytes(read_module(m)?),
            },
        )?;
    }

    let mut stored = Tree::new();
    let mut files = Vec::new();
    let img =
        payload::facts(&spec.image).with_context(|| format!("image {}", spec.image.display()))?;
    if img.size == 0 {
        bail!("image {} is empty", spec.image.display());
    }
    let img_path = payload_name(&spec.image, img.compression);
    let img_node = Node::File {
        perm: 0o600,
        source: Source::File {
            path: spec.image.clone(),
            size: img.size,
        },
    };
    // Compressed images go stored (compressing them again wastes time for
    // nothing); raw images go in the compressed segment.
    if img.compression == Compression::None {
        core.insert(&img_path, img_node)?;
    } else {
        stored.insert(&img_path, img_node)?;
    }
    files.push(PayloadFile {
        role: PayloadRole::Image,
        placement: Placement::Embedded { path: img_path },
        size: img.size,
        sha256: img.sha256,
        compression: img.compression,
    });
    if let Some(cfg) = &spec.config {
        let text =
            std::fs::read(cfg).with_context(|| format!("reading config.json {}", cfg.display()))?;
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&text).with_context(
            || {
                format!(
                    "{} is not a JSON object: download config.json from the balena dashboard again",
                    cfg.display()
                )
            },
        )?;
        let facts = payload::facts(cfg)?;
        core.insert(
            "payload/config.json",
            Node::File {
                perm: 0o600,
                source: Source::Bytes(text),
            },
        )?;
        files.push(PayloadFile {
            role: PayloadRole::Config,
            placement: Placement::Embedded {
                path: "/payload/config.json".into(),
            },
            size: facts.size,
            sha256: facts.sha256,
            compression: Compression::None,
        });
    }

    let plan = Plan {
        version: PLAN_VERSION,
        created_by: concat!("migrd ", env!("CARGO_PKG_VERSION")).into(),
        arch: spec.arch,
        target: spec.target.clone(),
        payload: files,
        modules: closure.files.iter().map(|m| m.dest.clone()).collect(),
        boot: spec.boot.clone(),
        inject: Vec::new(),
        log: spec.log.clone(),
        pretend: spec.pretend,
    };
    plan.validate()?;
    let plan_json = plan.to_json()?;
    core.insert(
        "plan.json",
        Node::File {
            perm: 0o600,
            source: Source::Bytes(plan_json.clone().into_bytes()),
        },
    )?;

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

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let final_path = out_dir.join("initramfs.img");
    let tmp = out_dir.join(".initramfs.img.part");
    let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let (w, placed) = write_initramfs(BufWriter::with_capacity(1 << 20, f), &segments)
        .with_context(|| format!("writing {}", tmp.display()))?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    let size = f.metadata()?.len();
    std::fs::rename(&tmp, &final_path)?;

    let cmdline = BASE_CMDLINE.to_string();
    write_private(&out_dir.join("plan.json"), plan_json.as_bytes())?;
    std::fs::write(out_dir.join("cmdline.txt"), format!("{cmdline}\n"))?;

    Ok(Built {
        plan,
        initramfs: final_path,
        initramfs_size: size,
        segments: segments.iter().map(|s| s.compression).zip(placed).collect(),
        modules: closure,
        kernel_release: spec.kernel.release.clone(),
        cmdline,
    })
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
