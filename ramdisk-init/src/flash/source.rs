//! Opening an image: sniff the container, find the image inside a zip,
//! stack the right decoder, and say what the metadata tells of its size.

use super::counting::Counting;
use super::error::FlashError;
use super::format::{sniff, Format, Sniffed, SNIFF_LEN};
use super::garbage::garbage_offset;
use super::gzip::Gzip;
use super::peek::PeekReader;
use super::size::{self, SizeHint, Trust};
use super::xz;
use super::xz::Xz;
use super::zstd::{self, Zstd};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Which library decodes each format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoders {
    /// For Zstandard.
    pub zstd: zstd::Backend,
    /// For xz.
    pub xz: xz::Backend,
}

impl Decoders {
    /// The fastest this build has (C libraries where compiled in).
    pub fn best() -> Self {
        Decoders {
            zstd: zstd::Backend::best(),
            xz: xz::Backend::best(),
        }
    }

    /// Pure Rust only, as in the static stage-2 binary.
    pub fn pure_rust() -> Self {
        Decoders {
            zstd: zstd::Backend::Rust,
            xz: xz::Backend::Rust,
        }
    }
}

impl Default for Decoders {
    fn default() -> Self {
        Self::best()
    }
}

/// What is known about an image before decoding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The outer container.
    pub format: Format,
    /// For a zip: the format of the entry inside it, and its name.
    pub inner: Option<(Format, String)>,
    /// Size of the image file.
    pub input_len: u64,
    /// Decoded size, from metadata, if any.
    pub hint: Option<SizeHint>,
}

fn open_err(path: &Path) -> impl Fn(io::Error) -> FlashError + '_ {
    move |source| FlashError::Open {
        path: path.to_path_buf(),
        source,
    }
}

fn known(path: &Path, head: &[u8]) -> Result<Format, FlashError> {
    match sniff(head) {
        Sniffed::Known(f) => Ok(f),
        Sniffed::Unsupported(what) => Err(FlashError::Unsupported {
            path: path.to_path_buf(),
            what: what.into(),
        }),
    }
}

fn zip_err(path: &Path, e: impl std::fmt::Display) -> FlashError {
    FlashError::Zip {
        path: path.to_path_buf(),
        problem: format!("is damaged or truncated ({e})"),
    }
}

/// The index of the one image in a zip archive: the only file, or else the
/// only `.img`/`.raw` file.
fn pick_entry<R: Read + io::Seek>(
    path: &Path,
    zip: &mut zip::ZipArchive<R>,
) -> Result<usize, FlashError> {
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i).map_err(|e| zip_err(path, e))?;
        if !e.is_dir() {
            let name = e.name().map_err(|e| zip_err(path, e))?.to_string();
            files.push((i, name));
        }
    }
    let images: Vec<_> = files
        .iter()
        .filter(|(_, n)| n.ends_with(".img") || n.ends_with(".raw"))
        .collect();
    match (files.len(), images.len()) {
        (1, _) => Ok(files[0].0),
        (_, 1) => Ok(images[0].0),
        (0, _) => Err(FlashError::Zip {
            path: path.to_path_buf(),
            problem: "is empty".into(),
        }),
        _ => Err(FlashError::Zip {
            path: path.to_path_buf(),
            problem: format!(
                "holds {} files and not exactly one image ({})",
                files.len(),
                files
                    .iter()
                    .take(5)
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Sniff and size an image without decoding it.
pub fn inspect(path: &Path) -> Result<ImageInfo, FlashError> {
    let mut f = File::open(path).map_err(open_err(path))?;
    let input_len = f.metadata().map_err(open_err(path))?.len();
    let mut head = Vec::new();
    (&mut f)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(open_err(path))?;
    let format = known(path, &head)?;
    if format != Format::Zip {
        let hint = size::hint(&mut f, format).map_err(open_err(path))?;
        return Ok(ImageInfo {
            format,
            inner: None,
            input_len,
            hint,
        });
    }
    let mut zip = zip::ZipArchive::new(f).map_err(|e| zip_err(path, e))?;
    let idx = pick_entry(path, &mut zip)?;
    let mut entry = zip.by_index(idx).map_err(|e| zip_err(path, e))?;
    let name = entry.name().map_err(|e| zip_err(path, e))?.to_string();
    let size = entry.size();
    let mut inner_head = Vec::new();
    (&mut entry)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut inner_head)
        .map_err(open_err(path))?;
    let inner = known(path, &inner_head)?;
    if inner == Format::Zip {
        return Err(FlashError::Unsupported {
            path: path.to_path_buf(),
            what: "a zip inside a zip".into(),
        });
    }
    Ok(ImageInfo {
        format,
        inner: Some((inner, name)),
        input_len,
        hint: (inner == Format::Raw).then_some(SizeHint {
            bytes: size,
            trust: Trust::Exact,
            source: "zip directory",
        }),
    })
}

fn decoder<'a, R: Read + 'a>(
    input: PeekReader<R>,
    format: Format,
    dec: Decoders,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Gzip => Box::new(Gzip::new(input)),
        Format::Zstd => Box::new(Zstd::new(input, dec.zstd)?),
        Format::Xz => Box::new(Xz::new(input, dec.xz)?),
        Format::Raw | Format::Zip => Box::new(input),
    })
}

/// Open `path` and run `f` on a reader of the decoded image. Bytes read from
/// the file are added to `consumed` as they go. Errors that `f` returns are
/// passed through; errors opening are [`FlashError`]s.
pub fn with_decoded<T>(
    path: &Path,
    info: &ImageInfo,
    dec: Decoders,
    consumed: Arc<AtomicU64>,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T, FlashError> {
    let file = File::open(path).map_err(open_err(path))?;
    with_decoded_from(path, file, info, dec, consumed, f)
}

/// [`with_decoded`] over `input`, the already opened bytes of `path` (a
/// caller wrapping the file, e.g. to hash it in the same read).
pub fn with_decoded_from<T, I: Read + io::Seek>(
    path: &Path,
    input: I,
    info: &ImageInfo,
    dec: Decoders,
    consumed: Arc<AtomicU64>,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T, FlashError> {
    let counted = Counting::new(input, consumed);
    if let Some((inner, _)) = &info.inner {
        let mut zip = zip::ZipArchive::new(counted).map_err(|e| zip_err(path, e))?;
        let idx = pick_entry(path, &mut zip)?;
        let entry = zip.by_index(idx).map_err(|e| zip_err(path, e))?;
        let mut r = decoder(PeekReader::new(entry), *inner, dec).map_err(open_err(path))?;
        return Ok(f(&mut r));
    }
    let input = PeekReader::new(counted);
    let mut r = match decoder(input, info.format, dec) {
        Ok(r) => r,
        Err(e) => return Err(decode_error(path, info.format, e, 0, 0)),
    };
    Ok(f(&mut r))
}

/// Name a decoding failure: trailing garbage, truncation, damage, or a
/// plain read error of the file.
pub fn decode_error(
    path: &Path,
    format: Format,
    e: io::Error,
    input_offset: u64,
    output: u64,
) -> FlashError {
    let path: PathBuf = path.to_path_buf();
    let format = format.name();
    if let Some(at) = garbage_offset(&e) {
        return FlashError::TrailingGarbage {
            path,
            format,
            input_offset: at,
        };
    }
    if e.raw_os_error().is_some() {
        return FlashError::Open { path, source: e };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return FlashError::Truncated {
            path,
            format,
            input_offset,
            output,
        };
    }
    FlashError::Corrupt {
        path,
        format,
        input_offset,
        output,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn read_all(path: &Path) -> Result<Vec<u8>, FlashError> {
        let info = inspect(path)?;
        let fmt = info.inner.as_ref().map(|i| i.0).unwrap_or(info.format);
        let counter = Arc::new(AtomicU64::new(0));
        with_decoded(path, &info, Decoders::best(), counter, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })?
        .map_err(|e| decode_error(path, fmt, e, 0, 0))
    }

    #[test]
    fn zip_with_one_image_stored_or_deflated() {
        let d = tempfile::tempdir().unwrap();
        let img: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
        for m in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let p = d.path().join("a.zip");
            std::fs::write(&p, zip_of(&[("balena.img", &img)], m)).unwrap();
            let info = inspect(&p).unwrap();
            assert_eq!(info.format, Format::Zip);
            assert_eq!(info.hint.unwrap().bytes, img.len() as u64);
            assert_eq!(read_all(&p).unwrap(), img);
        }
    }

    #[test]
    fn zip_picks_the_image_among_other_files_and_decodes_a_gz_inside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.zip");
        let gz = super::super::fixtures::gz(b"inner image");
        std::fs::write(
            &p,
            zip_of(
                &[("README.txt", b"hi"), ("x.img", b"the image")],
                zip::CompressionMethod::Deflated,
            ),
        )
        .unwrap();
        assert_eq!(read_all(&p).unwrap(), b"the image");
        std::fs::write(
            &p,
            zip_of(&[("x.img.gz", &gz)], zip::CompressionMethod::Stored),
        )
        .unwrap();
        assert_eq!(inspect(&p).unwrap().inner.unwrap().0, Format::Gzip);
        assert_eq!(read_all(&p).unwrap(), b"inner image");
    }

    #[test]
    fn zip_without_exactly_one_image_or_damaged_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.zip");
        std::fs::write(
            &p,
            zip_of(
                &[("a.img", b"1"), ("b.img", b"2")],
                zip::CompressionMethod::Stored,
            ),
        )
        .unwrap();
        let e = inspect(&p).unwrap_err().to_string();
        assert!(e.contains("a.img, b.img") && e.contains("a.zip"), "{e}");
        let mut z = zip_of(&[("a.img", b"1")], zip::CompressionMethod::Stored);
        z.truncate(z.len() - 10);
        std::fs::write(&p, z).unwrap();
        assert!(matches!(inspect(&p), Err(FlashError::Zip { .. })));
    }

    #[test]
    fn zip_entry_corruption_is_caught_by_its_crc() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.zip");
        let mut z = zip_of(
            &[("a.img", b"0123456789abcdef")],
            zip::CompressionMethod::Stored,
        );
        let at = z.windows(4).position(|w| w == b"0123").unwrap();
        z[at] = b'X';
        std::fs::write(&p, z).unwrap();
        assert!(matches!(read_all(&p), Err(FlashError::Corrupt { .. })));
    }

    #[test]
    fn unsupported_and_missing_inputs_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.bz2");
        std::fs::write(&p, b"BZh91AY&SY").unwrap();
        let e = inspect(&p).unwrap_err();
        assert!(matches!(e, FlashError::Unsupported { .. }));
        assert!(e.to_string().contains("x.bz2"));
        let e = inspect(&d.path().join("nope.img")).unwrap_err();
        assert!(e.to_string().contains("nope.img"));
    }
}
