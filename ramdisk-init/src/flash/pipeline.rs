//! Decoding and writing overlapped: a second thread decodes the image into
//! large aligned chunks while this thread writes the previous ones. A small
//! fixed pool of buffers circulates between the two, so memory stays flat
//! and neither side allocates per chunk.

use super::aligned::AlignedBuf;
use super::error::FlashError;
use super::limit::Limit;
use super::source::{self, ImageInfo};
use super::zstd::Backend;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Chunk size: large writes, aligned for `O_DIRECT`.
pub const CHUNK: usize = 4 << 20;
/// Buffers in flight: one being decoded into, one queued, one being written.
pub const BUFFERS: usize = 3;

/// How the pipeline ended badly.
#[derive(Debug)]
pub enum PipelineError {
    /// Opening the image failed.
    Open(FlashError),
    /// Decoding failed (or the limit was passed).
    Decode {
        /// The error.
        error: io::Error,
        /// Image bytes read when it happened.
        input_offset: u64,
        /// Decoded bytes handed on before it.
        output: u64,
    },
    /// The consumer refused a chunk.
    Consumer(FlashError),
}

enum Msg {
    Chunk(AlignedBuf, usize),
    End,
    Failed(io::Error, u64),
}

/// Shape of the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Bytes per chunk.
    pub chunk: usize,
    /// Chunks in flight.
    pub buffers: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            chunk: CHUNK,
            buffers: BUFFERS,
        }
    }
}

fn produce(
    r: &mut dyn Read,
    limit: Option<u64>,
    chunk: usize,
    free: &Receiver<AlignedBuf>,
    full: &SyncSender<Msg>,
) {
    let mut r = Limit::new(r, limit);
    let mut total = 0u64;
    while let Ok(mut buf) = free.recv() {
        let mut filled = 0;
        let mut eof = false;
        let slice = &mut buf.as_mut_slice()[..chunk];
        while filled < chunk {
            match r.read(&mut slice[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = full.send(Msg::Failed(e, total + filled as u64));
                    return;
                }
            }
        }
        total += filled as u64;
        if filled > 0 && full.send(Msg::Chunk(buf, filled)).is_err() {
            return;
        }
        if eof {
            let _ = full.send(Msg::End);
            return;
        }
    }
}

/// Decode `image` (described by `info`) on a second thread, refusing more
/// than `limit` bytes, and hand each chunk in order to `consume` on this
/// thread. Returns the decoded length.
pub fn run(
    image: &Path,
    info: &ImageInfo,
    backend: Backend,
    shape: Shape,
    limit: Option<u64>,
    consumed: Arc<AtomicU64>,
    mut consume: impl FnMut(&[u8]) -> Result<(), FlashError>,
) -> Result<u64, PipelineError> {
    let chunk = shape.chunk.max(4096);
    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(shape.buffers.max(2));
    let (full_tx, full_rx) = sync_channel::<Msg>(shape.buffers.max(2));
    for _ in 0..shape.buffers.max(2) {
        let _ = free_tx.send(AlignedBuf::new(chunk));
    }
    let counter = consumed.clone();
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let opened = source::with_decoded(image, info, backend, counter, |r| {
                produce(r, limit, chunk, &free_rx, &full_tx)
            });
            // Opening failed before any chunk: say so through the channel.
            if let Err(e) = opened {
                let _ = full_tx.send(Msg::Failed(io::Error::other(e.to_string()), 0));
                return Some(e);
            }
            None
        });
        let mut total = 0u64;
        let result = loop {
            match full_rx.recv() {
                Ok(Msg::Chunk(buf, len)) => {
                    if let Err(e) = consume(&buf.as_slice()[..len]) {
                        break Err(PipelineError::Consumer(e));
                    }
                    total += len as u64;
                    let _ = free_tx.send(buf);
                }
                Ok(Msg::End) => break Ok(total),
                Ok(Msg::Failed(error, output)) => {
                    break Err(PipelineError::Decode {
                        error,
                        input_offset: consumed.load(Ordering::Relaxed),
                        output,
                    })
                }
                Err(_) => {
                    break Err(PipelineError::Decode {
                        error: io::Error::other("the decoding thread stopped"),
                        input_offset: consumed.load(Ordering::Relaxed),
                        output: total,
                    })
                }
            }
        };
        // Unblock the producer whatever happened, then collect it.
        drop(free_tx);
        drop(full_rx);
        let open_error = producer.join().ok().flatten();
        match (result, open_error) {
            (Err(_), Some(e)) => Err(PipelineError::Open(e)),
            (r, _) => r,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{gz, sample};
    use super::super::limit::over_limit;
    use super::*;

    fn image(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, ImageInfo) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        std::fs::write(&p, bytes).unwrap();
        let info = source::inspect(&p).unwrap();
        (d, p, info)
    }

    fn small() -> Shape {
        Shape {
            chunk: 8192,
            buffers: 2,
        }
    }

    #[test]
    fn hands_over_every_byte_in_order_in_full_chunks() {
        let data = sample(100_000);
        let (_d, p, info) = image(&gz(&data));
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let counter = Arc::new(AtomicU64::new(0));
        let n = run(
            &p,
            &info,
            Backend::best(),
            small(),
            None,
            counter.clone(),
            |c| {
                sizes.push(c.len());
                got.extend_from_slice(c);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(got, data);
        assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 8192));
        assert_eq!(
            counter.load(Ordering::Relaxed),
            std::fs::metadata(&p).unwrap().len()
        );
    }

    #[test]
    fn the_chunk_that_passes_the_limit_is_never_handed_over() {
        let (_d, p, info) = image(&sample(100_000));
        let mut seen = 0;
        let c = Arc::new(AtomicU64::new(0));
        let e = run(&p, &info, Backend::best(), small(), Some(50_000), c, |ch| {
            seen += ch.len();
            Ok(())
        })
        .unwrap_err();
        assert!(seen <= 50_000);
        let PipelineError::Decode { error, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(over_limit(&error), Some(50_000));
    }

    #[test]
    fn a_consumer_error_stops_the_decoder() {
        let (_d, p, info) = image(&sample(1_000_000));
        let c = Arc::new(AtomicU64::new(0));
        let e = run(&p, &info, Backend::best(), small(), None, c, |_| {
            Err(FlashError::Reread {
                target: "t".into(),
                attempts: 1,
                detail: "x".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(e, PipelineError::Consumer(_)));
    }

    #[test]
    fn decode_errors_say_how_far_it_got() {
        let mut z = gz(&sample(200_000));
        z.truncate(z.len() / 2);
        let (_d, p, info) = image(&z);
        let c = Arc::new(AtomicU64::new(0));
        let e = run(&p, &info, Backend::best(), small(), None, c, |_| Ok(())).unwrap_err();
        let PipelineError::Decode { error, output, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(output > 0);
    }
}
