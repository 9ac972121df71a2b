//! `POST /download`: stream the image to the work dir, check the HTTP
//! status and the size, resume with `Range` after a dropped connection,
//! retry with backoff, show progress. takeover checked none of these.

use super::client::{ApiError, Client};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to download.
#[derive(Clone, Debug)]
pub struct Request {
    /// Device type slug.
    pub slug: String,
    /// Exact version (from [`super::versions::select`]).
    pub version: String,
    /// Ask for the raw image of a flasher device type.
    pub raw: bool,
}

/// How to download.
#[derive(Clone, Debug)]
pub struct Options {
    /// Attempts after the first (each resumes where the last stopped).
    pub retries: u32,
    /// First wait between attempts; doubles each time, capped at 30 s.
    pub backoff: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Longest wait for the next bytes before the attempt counts as dropped.
    pub read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retries: 5,
            backoff: Duration::from_secs(2),
            progress: true,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// File name the image is stored under (takeover's naming).
pub fn file_name(r: &Request) -> String {
    let v: String = r
        .version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("balena-cloud-{}-{v}.img.gz", r.slug)
}

fn io_err(p: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::Io {
        path: p.display().to_string(),
        reason: e.to_string(),
    }
}

/// The total size in a `Content-Range: bytes a-b/total` header.
fn range_total(v: &str) -> Option<u64> {
    v.rsplit('/').next()?.trim().parse().ok()
}

fn range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

enum Attempt {
    Done,
    /// Failed after writing; resumable with the error.
    Retry(ApiError),
}

fn bar(total: Option<u64>, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total.unwrap_or(0));
    if let Ok(s) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(s.progress_chars("=> "));
    }
    pb
}

/// Download the image into `dir`. Returns its path. The data goes to
/// `<name>.part` and is renamed only when the size matches.
pub fn download(
    client: &Client,
    req: &Request,
    dir: &Path,
    opts: &Options,
) -> Result<PathBuf, ApiError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let dest = dir.join(file_name(req));
    let part = dir.join(format!("{}.part", file_name(req)));
    let _ = std::fs::remove_file(&part);
    let mut total: Option<u64> = None;
    let pb = bar(None, opts.progress);
    pb.set_message(format!("balenaOS {} for {}", req.version, req.slug));
    // The blocking client's timeout bounds connecting, the headers and each
    // read, not the whole transfer: a stall triggers a resume, a slow link
    // does not.
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(opts.read_timeout.min(Duration::from_secs(30)))
        .timeout(opts.read_timeout)
        .user_agent(concat!("migrd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| client.net_err("setting up HTTPS", &e))?;
    let mut wait = opts.backoff;
    let mut attempt = 0;
    loop {
        match try_once(client, &http, req, &part, &mut total, &pb) {
            Ok(Attempt::Done) => break,
            Ok(Attempt::Retry(e)) | Err(e @ ApiError::Network { .. }) => {
                if attempt >= opts.retries {
                    pb.abandon();
                    return Err(e);
                }
                attempt += 1;
                log::warn!(
                    "download interrupted ({e}); retry {attempt}/{} in {:?}",
                    opts.retries,
                    wait
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                pb.abandon();
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        }
    }
    pb.finish_and_clear();
    let have = std::fs::metadata(&part)
        .map_err(|e| io_err(&part, e))?
        .len();
    if let Some(t) = total {
        if have != t {
            return Err(io_err(
                &part,
                format!("got {have} bytes, the API announced {t}"),
            ));
        }
    }
    let mut head = [0u8; 2];
    std::fs::File::open(&part)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| io_err(&part, e))?;
    if head != [0x1f, 0x8b] {
        let _ = std::fs::remove_file(&part);
        return Err(ApiError::Body {
            endpoint: client.endpoint.clone(),
            what: "POST /download".into(),
            reason: "the answer is not a gzip image".into(),
        });
    }
    std::fs::rename(&part, &dest).map_err(|e| io_err(&dest, e))?;
    Ok(dest)
}

const WHAT: &str = "POST /download";

fn try_once(
    client: &Client,
    http: &reqwest::blocking::Client,
    req: &Request,
    part: &Path,
    total: &mut Option<u64>,
    pb: &ProgressBar,
) -> Result<Attempt, ApiError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let resp = send(client, http, req, have)?;
    let append = resume_point(client, &resp, have, total)?;
    if let Some(t) = *total {
        pb.set_length(t);
    }
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(|e| io_err(part, e))?;
    let mut written = if append { have } else { 0 };
    pb.set_position(written);
    if let Some(cut) = copy_body(client, resp, &mut f, part, &mut written, pb)? {
        return Ok(Attempt::Retry(cut));
    }
    f.sync_all().map_err(|e| io_err(part, e))?;
    match *total {
        Some(t) if written < t => Ok(Attempt::Retry(ApiError::Network {
            endpoint: client.endpoint.clone(),
            what: WHAT.into(),
            reason: format!("connection closed after {written} of {t} bytes"),
        })),
        _ => Ok(Attempt::Done),
    }
}

/// POST the download request, asking to resume at `have` bytes.
fn send(
    client: &Client,
    http: &reqwest::blocking::Client,
    req: &Request,
    have: u64,
) -> Result<reqwest::blocking::Response, ApiError> {
    let mut body = serde_json::json!({
        "deviceType": req.slug,
        "version": req.version,
        "fileType": ".gz",
    });
    if req.raw {
        body["imageType"] = "raw".into();
    }
    let mut rb = client
        .auth(http.post(format!("{}/download", client.endpoint)))
        .json(&body);
    if have > 0 {
        rb = rb.header(RANGE, format!("bytes={have}-"));
    }
    let resp = rb.send().map_err(|e| client.net_err(WHAT, &e))?;
    client.check_status(WHAT, resp)
}

/// Whether the answer continues the partial file (206 from `have`) or
/// starts over (200); records the image's size in `total`, refusing one
/// that changed between attempts.
fn resume_point(
    client: &Client,
    resp: &reqwest::blocking::Response,
    have: u64,
    total: &mut Option<u64>,
) -> Result<bool, ApiError> {
    let header = |n| {
        resp.headers()
            .get(n)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let body_err = |reason: String| ApiError::Body {
        endpoint: client.endpoint.clone(),
        what: WHAT.into(),
        reason,
    };
    let (append, announced) = if resp.status() == StatusCode::PARTIAL_CONTENT {
        let cr = header(CONTENT_RANGE).unwrap_or_default();
        if range_start(&cr) != Some(have) {
            return Err(body_err(format!(
                "asked to resume at {have}, got Content-Range {cr:?}"
            )));
        }
        (true, range_total(&cr))
    } else {
        // 200: the server ignored Range (or this is the first attempt): start over.
        (false, header(CONTENT_LENGTH).and_then(|v| v.parse().ok()))
    };
    if let Some(t) = announced {
        if total.is_some_and(|old| old != t) {
            return Err(body_err(format!(
                "image size changed between attempts ({total:?} → {t})"
            )));
        }
        *total = Some(t);
    }
    Ok(append)
}

/// Copy the answer's body into `f`, counting `written`; a connection cut
/// midway is returned (to retry from there), a local write error fails.
fn copy_body(
    client: &Client,
    mut resp: reqwest::blocking::Response,
    f: &mut std::fs::File,
    part: &Path,
    written: &mut u64,
    pb: &ProgressBar,
) -> Result<Option<ApiError>, ApiError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) => {
                f.flush().map_err(|e| io_err(part, e))?;
                return Ok(Some(ApiError::Network {
                    endpoint: client.endpoint.clone(),
                    what: format!("{WHAT} after {written} bytes"),
                    reason: e.to_string(),
                }));
            }
        };
        f.write_all(&buf[..n]).map_err(|e| io_err(part, e))?;
        *written += n as u64;
        pb.set_position(*written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_content_range() {
        let r = Request {
            slug: "raspberrypi4-64".into(),
            version: "5.1.20+rev1".into(),
            raw: false,
        };
        assert_eq!(
            file_name(&r),
            "balena-cloud-raspberrypi4-64-5.1.20+rev1.img.gz"
        );
        assert_eq!(range_total("bytes 100-199/200"), Some(200));
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
