//! `migrd write-image IMAGE --to TARGET`: stage 2's flash engine on any
//! machine, to write an SD card, a disk or a disk-image file. A progress bar
//! on a terminal; JSON progress events (one object per line, on stdout)
//! otherwise or with `--json`.

use crate::inputs::image_check;
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use migrd_init::flash::extent::image_extent;
use migrd_init::flash::{self, FileDevice, OpenMode, Phase, Progress, Report};
use serde_json::json;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `migrd write-image`.
#[derive(Debug, Args)]
pub struct WriteImageArgs {
    /// The image: raw, .gz, .zst, .xz, or a .zip holding one image (the
    /// format is read from the content, not the name).
    pub image: PathBuf,
    /// Where to write it: a block device (/dev/sdX, /dev/mmcblk0) or a
    /// disk-image file (created if missing; an existing file keeps its size).
    #[arg(long, value_name = "TARGET")]
    pub to: PathBuf,
    /// Do not read back and compare what was written.
    #[arg(long)]
    pub no_verify: bool,
    /// JSON progress events on stdout, one object per line (the default
    /// when stderr is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Decode zstd and xz with the pure-Rust decoders the static stage-2
    /// binary has (ruzstd, lzma-rust2) instead of the C libraries; for
    /// benchmarks.
    #[arg(long, hide = true)]
    pub pure_rust_decoders: bool,
    /// Write a raw file that has no partition table (a filesystem image, a
    /// blob); without it such input is refused as not a disk image.
    #[arg(long)]
    pub force: bool,
    /// Decode the whole image once before writing anything, so a damaged
    /// compressed image is refused with the target untouched (reads the
    /// image twice).
    #[arg(long)]
    pub check_first: bool,
}

/// Minimum time between two JSON progress events.
const JSON_EVERY: Duration = Duration::from_millis(500);

/// Refuse a block device with a mounted filesystem on it or on one of its
/// partitions: that is the running system, or a disk someone is using.
fn refuse_mounted(target: &Path) -> anyhow::Result<()> {
    let Ok(real) = std::fs::canonicalize(target) else {
        return Ok(());
    };
    let Some(name) = real.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(src), Some(at)) = (f.next(), f.next()) else {
            continue;
        };
        if !src.starts_with("/dev/") {
            continue;
        }
        let Ok(src_real) = std::fs::canonicalize(src) else {
            continue;
        };
        let Some(src_name) = src_real.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_part = Path::new("/sys/class/block")
            .join(name)
            .join(src_name)
            .exists();
        if src_name == name || is_part {
            anyhow::bail!(
                "{} is in use: {} is mounted at {}; unmount every partition of it first",
                target.display(),
                src,
                at
            );
        }
    }
    Ok(())
}

/// Reports progress as a bar or as JSON lines.
enum Reporter {
    Bar {
        bar: ProgressBar,
        phase: Option<Phase>,
    },
    Json {
        last: Option<Instant>,
        phase: Option<Phase>,
        phase_start: Instant,
    },
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Write => "writing",
        Phase::Verify => "verifying",
        Phase::Finish => "finishing",
    }
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

impl Reporter {
    fn new(json: bool) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Reporter::Json {
                last: None,
                phase: None,
                phase_start: Instant::now(),
            };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Reporter::Bar { bar, phase: None }
    }

    fn update(&mut self, p: &Progress) {
        match self {
            Reporter::Bar { bar, phase } => {
                if *phase != Some(p.phase) {
                    *phase = Some(p.phase);
                    bar.reset();
                    bar.set_prefix(phase_name(p.phase));
                }
                if let Some(t) = p.estimated_total() {
                    bar.set_length(t);
                }
                bar.set_position(p.bytes);
            }
            Reporter::Json {
                last,
                phase,
                phase_start,
            } => {
                let now = Instant::now();
                let new_phase = *phase != Some(p.phase);
                if new_phase {
                    *phase = Some(p.phase);
                    *phase_start = now;
                } else if last.is_some_and(|l| now - l < JSON_EVERY) {
                    return;
                }
                *last = Some(now);
                let secs = (now - *phase_start).as_secs_f64();
                let rate = if secs > 0.0 {
                    p.bytes as f64 / secs
                } else {
                    0.0
                };
                let eta = p
                    .estimated_total()
                    .filter(|_| rate > 0.0)
                    .map(|t| t.saturating_sub(p.bytes) as f64 / rate);
                emit(json!({
                    "event": "progress", "phase": p.phase, "bytes": p.bytes,
                    "total": p.estimated_total(), "total_known": p.total.is_some(),
                    "input_bytes": p.input_bytes, "input_total": p.input_total,
                    "bytes_per_sec": rate.round(), "eta_s": eta.map(|e| (e * 10.0).round() / 10.0),
                }));
            }
        }
    }

    fn finish(self, args: &WriteImageArgs, r: &Report, secs: f64) {
        match self {
            Reporter::Bar { bar, .. } => {
                bar.finish_and_clear();
                eprintln!(
                    "wrote {} ({}) to {} in {:.1} s ({:.0} MiB/s){}\nsha256 {}",
                    indicatif::BinaryBytes(r.bytes),
                    r.format.name(),
                    args.to.display(),
                    secs,
                    r.bytes as f64 / secs.max(1e-9) / (1u64 << 20) as f64,
                    if r.verified {
                        ", read back and verified"
                    } else {
                        ", not verified (--no-verify)"
                    },
                    r.sha256
                );
            }
            Reporter::Json { .. } => {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["event"] = json!("done");
                v["image"] = json!(args.image);
                v["target"] = json!(args.to);
                v["seconds"] = json!((secs * 1000.0).round() / 1000.0);
                emit(v);
            }
        }
    }

    fn fail(self, e: &flash::FlashError) {
        match self {
            Reporter::Bar { bar, .. } => bar.abandon(),
            Reporter::Json { .. } => emit(json!({"event": "error", "message": e.to_string()})),
        }
    }
}

/// Refuse, before the target is opened (or created), input that cannot be a
/// good disk image from what its head tells: empty, an unsupported format,
/// no partition table in the first decoded MiB (unless `--force` on a raw
/// file), or a raw file (or stored zip entry) shorter than its own table.
/// The same head rule as `check` ([`image_check::head_problem`]).
fn precheck(args: &WriteImageArgs) -> Result<(), flash::FlashError> {
    let info = flash::source::inspect(&args.image)?;
    let format = info.inner.as_ref().map_or(info.format, |i| i.0);
    if info.input_len == 0 {
        return Err(refused(
            &args.image,
            "is empty (0 bytes at byte 0): nothing to write",
        ));
    }
    let counter = Arc::new(AtomicU64::new(0));
    let decoders = flash::source::Decoders::best();
    let read_head = |r: &mut dyn Read| {
        let mut head = Vec::new();
        r.take(flash::engine::HEAD as u64)
            .read_to_end(&mut head)
            .map(|_| head)
    };
    let head =
        flash::source::with_decoded(&args.image, &info, decoders, counter.clone(), read_head)?
            .map_err(|e| {
                let at = counter.load(Ordering::Relaxed);
                flash::source::decode_error(&args.image, format, e, at, 0)
            })?;
    let exact = info.hint.and_then(|h| h.exact());
    let Some(problem) = image_check::head_problem(&head, exact) else {
        return Ok(());
    };
    let no_table = head.len() >= 512 && image_extent(&head).is_none();
    if no_table && args.force && format == flash::Format::Raw {
        eprintln!(
            "warning: {}: {problem}; writing it anyway (--force)",
            args.image.display()
        );
        return Ok(());
    }
    let hint = if no_table && format == flash::Format::Raw {
        "; pass --force to write a raw file without a partition table"
    } else {
        ""
    };
    Err(refused(&args.image, &format!("{problem}{hint}")))
}

/// Decode the whole image to nowhere (`--check-first`).
fn decode_all(image: &Path) -> Result<u64, flash::FlashError> {
    let info = flash::source::inspect(image)?;
    let format = info.inner.as_ref().map_or(info.format, |i| i.0);
    let counter = Arc::new(AtomicU64::new(0));
    let decoders = flash::source::Decoders::best();
    let mut out = 0u64;
    let r = flash::source::with_decoded(image, &info, decoders, counter.clone(), |r| {
        let mut sink = CountingSink(&mut out);
        std::io::copy(r, &mut sink)
    })?;
    r.map_err(|e| {
        flash::source::decode_error(image, format, e, counter.load(Ordering::Relaxed), out)
    })
}

/// Counts bytes written into it.
struct CountingSink<'a>(&'a mut u64);

impl Write for CountingSink<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        *self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Input refused before anything was written.
fn refused(image: &Path, reason: &str) -> flash::FlashError {
    flash::FlashError::Refused {
        path: image.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Write the image.
pub fn run(args: WriteImageArgs) -> anyhow::Result<()> {
    refuse_mounted(&args.to)?;
    precheck(&args).with_context(|| {
        format!(
            "not writing {} to {}: nothing was written",
            args.image.display(),
            args.to.display()
        )
    })?;
    if args.check_first {
        let t = Instant::now();
        let n = decode_all(&args.image).with_context(|| {
            format!(
                "not writing {} to {}: nothing was written",
                args.image.display(),
                args.to.display()
            )
        })?;
        eprintln!(
            "{}: decoded whole ({n} bytes) in {:.1} s",
            args.image.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let mut reporter = Reporter::new(args.json);
    let json_mode = matches!(reporter, Reporter::Json { .. });
    let started = Instant::now();
    let result = FileDevice::open(&args.to, OpenMode::default()).and_then(|mut dev| {
        if json_mode {
            let info = flash::source::inspect(&args.image)?;
            emit(json!({
                "event": "start", "image": args.image, "target": args.to,
                "format": info.format, "inner_format": info.inner.map(|i| i.0),
                "input_total": info.input_len, "capacity": flash::Device::capacity(&dev),
                "sector_size": flash::Device::sector_size(&dev), "direct_io": dev.is_direct(),
                "verify": !args.no_verify,
            }));
        }
        let opts = flash::Options {
            verify: !args.no_verify,
            decoders: if args.pure_rust_decoders {
                flash::source::Decoders::pure_rust()
            } else {
                flash::source::Decoders::best()
            },
            ..flash::Options::default()
        };
        flash::write_image(&args.image, &mut dev, &opts, &mut |p| reporter.update(p))
    });
    match result {
        Ok(report) => {
            reporter.finish(&args, &report, started.elapsed().as_secs_f64());
            Ok(())
        }
        Err(e) => {
            reporter.fail(&e);
            Err(e).with_context(|| {
                format!("writing {} to {}", args.image.display(), args.to.display())
            })
        }
    }
}
