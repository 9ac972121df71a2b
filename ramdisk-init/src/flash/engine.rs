//! The write path, start to end:
//!
//! 1. sniff the image and learn what its metadata says of its size; refuse
//!    it if it cannot fit;
//! 2. decode and write on two threads ([`pipeline`](super::pipeline)),
//!    hashing every byte, holding the first MiB back in memory; refuse the
//!    image before the first write if its partition table reaches past the
//!    target, and at the first byte past the target's end otherwise;
//! 3. `fsync`, read back everything after the first MiB and compare;
//! 4. only then write the first MiB (partition table, boot sectors),
//!    `fsync`, read it back;
//! 5. have the kernel re-read the partition table.
//!
//! A failure in steps 1–3 leaves the first MiB of the target as it was, so
//! the old partition table still describes the disk.

use super::aligned::AlignedBuf;
use super::device::Device;
use super::digest::{BlockCrcs, StreamDigest};
use super::error::FlashError;
use super::extent::image_extent;
use super::format::Format;
use super::limit::over_limit;
use super::pipeline::{self, PipelineError, Shape};
use super::progress::{Phase, Progress};
use super::reread::Reread;
use super::source::{self, decode_error, Decoders, ImageInfo};
use serde::Serialize;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes written last.
pub const HEAD: usize = 1 << 20;

/// Knobs of a run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Read back and compare everything written.
    pub verify: bool,
    /// The decoded size the caller knows (from the plan), if any.
    pub expected_size: Option<u64>,
    /// Chunking of the pipeline.
    pub shape: Shape,
    /// Which libraries decode.
    pub decoders: Decoders,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify: true,
            expected_size: None,
            shape: Shape::default(),
            decoders: Decoders::best(),
        }
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Container of the image.
    pub format: Format,
    /// Format inside a zip.
    pub inner_format: Option<Format>,
    /// Decoded bytes written.
    pub bytes: u64,
    /// SHA-256 of the decoded bytes (as `sha256sum` of the raw image).
    pub sha256: String,
    /// Whether everything was read back and compared.
    pub verified: bool,
    /// Logical sector size of the target.
    pub sector_size: u32,
    /// Whether the kernel re-read the partition table.
    pub partitions_reread: bool,
}

fn too_large(
    image: &Path,
    dev: &dyn Device,
    needed: u64,
    capacity: u64,
    reason: &str,
) -> FlashError {
    FlashError::TooLarge {
        path: image.to_path_buf(),
        target: dev.name(),
        needed,
        capacity,
        reason: reason.to_string(),
    }
}

/// Write all of `data` at `offset`, naming short writes.
pub fn write_all_at(dev: &mut dyn Device, data: &[u8], offset: u64) -> Result<(), FlashError> {
    let mut done = 0;
    while done < data.len() {
        let at = offset + done as u64;
        match dev.write_at(&data[done..], at) {
            Ok(0) => {
                return Err(FlashError::ShortWrite {
                    target: dev.name(),
                    offset,
                    written: done,
                    wanted: data.len(),
                    detail: "the target took no more bytes".into(),
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::ENOSPC | nix::libc::EFBIG)) => {
                return Err(FlashError::ShortWrite {
                    target: dev.name(),
                    offset,
                    written: done,
                    wanted: data.len(),
                    detail: e.to_string(),
                })
            }
            Err(source) => {
                return Err(FlashError::Target {
                    action: "writing to",
                    target: dev.name(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Fill `buf` from `offset` (short only at the end of the target).
fn read_full_at(dev: &mut dyn Device, buf: &mut [u8], offset: u64) -> Result<usize, FlashError> {
    let mut done = 0;
    while done < buf.len() {
        match dev.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(FlashError::Target {
                    action: "reading back",
                    target: dev.name(),
                    source,
                })
            }
        }
    }
    Ok(done)
}

fn target_io(dev: &dyn Device, action: &'static str) -> impl Fn(io::Error) -> FlashError {
    let target = dev.name();
    move |source| FlashError::Target {
        action,
        target: target.clone(),
        source,
    }
}

/// Write `image` to `dev`. See the module documentation for the order of
/// things; `progress` is called after every chunk.
pub fn write_image(
    image: &Path,
    dev: &mut (dyn Device + Send),
    opts: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, FlashError> {
    let info = source::inspect(image)?;
    // 1. What metadata and the caller say, against the target.
    refuse_what_cannot_fit(image, &*dev, &info, opts)?;
    // 2. Decode and write, first MiB held back.
    let written = decode_and_write(image, dev, &info, opts, progress)?;
    let total = written.total;
    dev.grow_to(total).map_err(target_io(&*dev, "extending"))?;
    dev.sync().map_err(target_io(&*dev, "flushing"))?;
    // 3. Read back everything but the first MiB.
    if opts.verify && total > HEAD as u64 {
        dev.drop_cache().map_err(target_io(&*dev, "flushing"))?;
        verify_range(
            image,
            &info,
            opts,
            dev,
            &written.crcs,
            HEAD as u64,
            total,
            info.input_len,
            progress,
        )?;
    }
    // 4. The first MiB, last.
    write_head_last(image, dev, written.head.bytes(), opts.verify)?;
    progress(&Progress {
        phase: Phase::Finish,
        bytes: total,
        total: Some(total),
        input_bytes: info.input_len,
        input_total: info.input_len,
    });
    // 5. Partitions.
    let reread = dev.reread_partitions()?;
    Ok(Report {
        format: info.format,
        inner_format: info.inner.map(|i| i.0),
        bytes: total,
        sha256: written.sha256,
        verified: opts.verify,
        sector_size: dev.sector_size(),
        partitions_reread: matches!(reread, Reread::Done { .. }),
    })
}

/// Step 1: refuse an image whose metadata, or the caller, says it is
/// larger than the target.
fn refuse_what_cannot_fit(
    image: &Path,
    dev: &dyn Device,
    info: &ImageInfo,
    opts: &Options,
) -> Result<(), FlashError> {
    let Some(cap) = dev.capacity() else {
        return Ok(());
    };
    if let Some(h) = info.hint {
        if h.is_lower_bound() && h.bytes > cap {
            return Err(too_large(image, dev, h.bytes, cap, h.source));
        }
    }
    if let Some(n) = opts.expected_size {
        if n > cap {
            return Err(too_large(image, dev, n, cap, "size given by the caller"));
        }
    }
    Ok(())
}

/// The first MiB of the decoded image, held in memory until the rest is
/// written and read back.
struct Head {
    buf: AlignedBuf,
    len: usize,
    /// Its partition table was checked against the target.
    checked: bool,
}

impl Head {
    fn new() -> Self {
        Head {
            buf: AlignedBuf::new(HEAD),
            len: 0,
            checked: false,
        }
    }

    /// Keep the part of `data` (the next decoded bytes) that belongs to the
    /// head; returns the rest.
    fn keep<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let take = (HEAD - self.len).min(data.len());
        self.buf.as_mut_slice()[self.len..self.len + take].copy_from_slice(&data[..take]);
        self.len += take;
        &data[take..]
    }

    fn bytes(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }

    /// Refuse the image if the partition table in the head reaches past
    /// the target's end (once).
    fn check(
        &mut self,
        image: &Path,
        target: &str,
        capacity: Option<u64>,
    ) -> Result<(), FlashError> {
        if self.checked {
            return Ok(());
        }
        if let (Some(cap), Some((end, table))) = (capacity, image_extent(self.bytes())) {
            if end > cap {
                return Err(FlashError::TooLarge {
                    path: image.to_path_buf(),
                    target: target.to_string(),
                    needed: end,
                    capacity: cap,
                    reason: format!("its {table} reaches byte {end}"),
                });
            }
        }
        self.checked = true;
        Ok(())
    }
}

/// What step 2 leaves: the decoded size, the held-back head and the hashes.
struct Written {
    total: u64,
    head: Head,
    sha256: String,
    crcs: BlockCrcs,
}

/// Step 2: decode `image` and write all of it but the head, hashing every
/// byte; the head's partition table is checked before anything past it is
/// written.
fn decode_and_write(
    image: &Path,
    dev: &mut (dyn Device + Send),
    info: &ImageInfo,
    opts: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Written, FlashError> {
    let capacity = dev.capacity();
    let consumed = Arc::new(AtomicU64::new(0));
    let input_total = info.input_len;
    let total_hint = opts.expected_size.or(info.hint.and_then(|h| h.exact()));
    let mut head = Head::new();
    let mut digest = if opts.verify {
        StreamDigest::new()
    } else {
        StreamDigest::sha_only()
    };
    let mut offset = 0u64;
    let limit = match (capacity, opts.expected_size) {
        (Some(c), Some(e)) => Some(c.min(e)),
        (c, e) => c.or(e),
    };
    let name = dev.name();
    // On this thread: hash, keep the head, check it before anything past it
    // is handed to the writer, report progress.
    let inspect = |data: &[u8]| -> Result<(), FlashError> {
        digest.update(data);
        if !head.keep(data).is_empty() {
            head.check(image, &name, capacity)?;
        }
        offset += data.len() as u64;
        progress(&Progress {
            phase: Phase::Write,
            bytes: offset,
            total: total_hint,
            input_bytes: consumed.load(Ordering::Relaxed),
            input_total,
        });
        Ok(())
    };
    let sparse = dev.unwritten_reads_zero();
    let dev_w = &mut *dev;
    let write = |at: u64, data: &[u8]| write_past_head(&mut *dev_w, sparse, at, data);
    let run = pipeline::run(
        image,
        info,
        opts.decoders,
        opts.shape,
        limit,
        consumed.clone(),
        inspect,
        write,
    );
    let total = run.map_err(|e| pipeline_error(image, &*dev, info, e))?;
    head.check(image, &name, capacity)?;
    if let Some(expected) = opts.expected_size {
        if expected != total {
            return Err(FlashError::WrongSize {
                path: image.to_path_buf(),
                expected,
                found: total,
            });
        }
    }
    let (sha256, crcs) = digest.finish();
    Ok(Written {
        total,
        head,
        sha256,
        crcs,
    })
}

/// On the writer thread: the bytes of `data` (decoded bytes from `at`)
/// past the head; on a target where unwritten bytes read as zeros, only
/// the blocks that are not all zero.
fn write_past_head(
    dev: &mut dyn Device,
    sparse: bool,
    at: u64,
    data: &[u8],
) -> Result<(), FlashError> {
    let skip = usize::try_from((HEAD as u64).saturating_sub(at)).unwrap_or(usize::MAX);
    if skip >= data.len() {
        return Ok(());
    }
    let (at, data) = (at + skip as u64, &data[skip..]);
    if !sparse {
        return write_all_at(dev, data, at);
    }
    for (from, to) in nonzero_runs(data, SPARSE_BLOCK) {
        write_all_at(dev, &data[from..to], at + from as u64)?;
    }
    Ok(())
}

/// The error of a failed decode-and-write, in the terms of the image and
/// the target.
fn pipeline_error(
    image: &Path,
    dev: &dyn Device,
    info: &ImageInfo,
    e: PipelineError,
) -> FlashError {
    match e {
        PipelineError::Open(e) | PipelineError::Consumer(e) | PipelineError::Write(e) => e,
        PipelineError::Decode {
            error,
            input_offset,
            output,
        } => {
            if let Some(cap) = over_limit(&error) {
                if dev.capacity().map_or(true, |c| c > cap) {
                    // The caller's size was the tighter limit.
                    return FlashError::WrongSize {
                        path: image.to_path_buf(),
                        expected: cap,
                        found: cap + 1,
                    };
                }
                let why = "the decoded stream goes on past the target's end";
                return too_large(image, dev, cap + 1, cap, why);
            }
            let decoded_format = info.inner.as_ref().map(|i| i.0).unwrap_or(info.format);
            decode_error(image, decoded_format, error, input_offset, output)
        }
    }
}

/// Step 4: write the head, flush, and read it back.
fn write_head_last(
    image: &Path,
    dev: &mut dyn Device,
    head: &[u8],
    verify: bool,
) -> Result<(), FlashError> {
    write_all_at(dev, head, 0)?;
    dev.sync().map_err(target_io(dev, "flushing"))?;
    if !verify {
        return Ok(());
    }
    dev.drop_cache().map_err(target_io(dev, "flushing"))?;
    let mut back = AlignedBuf::new(HEAD);
    let n = read_full_at(dev, back.as_mut_slice(), 0)?;
    let back = &back.as_slice()[..n.min(head.len())];
    match first_difference(head, back) {
        Some(i) => Err(FlashError::Mismatch {
            path: image.to_path_buf(),
            target: dev.name(),
            offset: i as u64,
        }),
        None => Ok(()),
    }
}

/// Granularity of zero detection for sparse targets.
const SPARSE_BLOCK: usize = 64 << 10;

fn all_zero(b: &[u8]) -> bool {
    // 16 bytes at a time: the compiler turns this into vector compares.
    let mut words = b.chunks_exact(16);
    let body = words.all(|w| u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])) == 0);
    body && words.remainder().iter().all(|&x| x == 0)
}

/// Byte ranges of `data` made of `block`-sized pieces that are not all
/// zero, neighbours merged so writes stay large.
fn nonzero_runs(data: &[u8], block: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, b) in data.chunks(block).enumerate() {
        if all_zero(b) {
            continue;
        }
        let (from, to) = (i * block, i * block + b.len());
        match runs.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            _ => runs.push((from, to)),
        }
    }
    runs
}

/// Index of the first byte where `a` and `b` differ (a length difference
/// counts).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[allow(clippy::too_many_arguments)]
fn verify_range(
    image: &Path,
    info: &ImageInfo,
    opts: &Options,
    dev: &mut dyn Device,
    crcs: &BlockCrcs,
    from: u64,
    to: u64,
    input_total: u64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), FlashError> {
    let chunk = opts.shape.chunk.max(4096);
    let mut buf = AlignedBuf::new(chunk);
    let mut at = from;
    while at < to {
        let want = usize::try_from(to - at).unwrap_or(usize::MAX).min(chunk);
        let n = read_full_at(&mut *dev, &mut buf.as_mut_slice()[..chunk], at)?;
        let got = &buf.as_slice()[..n.min(want)];
        let bad = if got.len() < want {
            Some(at + got.len() as u64)
        } else {
            crcs.first_bad_block(at, got)
        };
        if let Some(block) = bad {
            let offset = locate(image, info, opts, dev, block).unwrap_or(block);
            return Err(FlashError::Mismatch {
                path: image.to_path_buf(),
                target: dev.name(),
                offset,
            });
        }
        at += want as u64;
        progress(&Progress {
            phase: Phase::Verify,
            bytes: at - from,
            total: Some(to - from),
            input_bytes: input_total,
            input_total,
        });
    }
    Ok(())
}

/// The exact first bad byte in the block at `block`: decode the image again
/// up to there and compare. Only on the failure path.
fn locate(
    image: &Path,
    info: &ImageInfo,
    opts: &Options,
    dev: &mut dyn Device,
    block: u64,
) -> Option<u64> {
    let len = super::digest::BLOCK;
    let mut want = vec![0u8; len];
    let n = source::with_decoded(
        image,
        info,
        opts.decoders,
        Arc::new(AtomicU64::new(0)),
        |r| {
            io::copy(&mut r.take(block), &mut io::sink()).ok()?;
            let mut n = 0;
            while n < len {
                match r.read(&mut want[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return None,
                }
            }
            Some(n)
        },
    )
    .ok()??;
    let mut got = AlignedBuf::new(len);
    let m = read_full_at(dev, got.as_mut_slice(), block).ok()?;
    first_difference(&want[..n], &got.as_slice()[..m.min(n)]).map(|i| block + i as u64)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
