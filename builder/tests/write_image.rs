//! `migrd write-image` end to end: the binary, real files, every format,
//! and every error leaving the target's first MiB as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: usize = 1 << 20;
const OLD: u8 = 0x5a;

/// A small disk image: an MBR with one partition up to the end, then
/// compressible text, random-looking bytes and zeros.
fn disk_image(len: usize) -> Vec<u8> {
    let mut img = vec![0u8; len];
    let mut x: u32 = 12345;
    for (i, b) in img.iter_mut().enumerate().skip(MIB) {
        *b = match (i / 65536) % 3 {
            0 => b"balenaOS migrd "[i % 15],
            1 => {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }
            _ => 0,
        };
    }
    img[446 + 4] = 0x83;
    img[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[446 + 12..446 + 16].copy_from_slice(&((len / 512) as u32 - 2048).to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xaa;
    img
}

fn gz(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn zst(d: &[u8]) -> Vec<u8> {
    zstd::encode_all(d, 3).unwrap()
}

fn xz(d: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn zip(name: &str, d: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, o).unwrap();
    w.write_all(d).unwrap();
    w.finish().unwrap().into_inner()
}

fn migrd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrd"))
        .args(args)
        .output()
        .unwrap()
}

struct Case {
    _dir: tempfile::TempDir,
    image: PathBuf,
    target: PathBuf,
}

fn case(image: &[u8], target: Option<usize>) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("image.bin");
    std::fs::write(&p, image).unwrap();
    let t = dir.path().join("disk.img");
    if let Some(n) = target {
        std::fs::write(&t, vec![OLD; n]).unwrap();
    }
    Case {
        _dir: dir,
        image: p,
        target: t,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn sha256(d: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(d))
}

#[test]
fn writes_every_format_to_a_file_with_json_progress() {
    let img = disk_image(6 * MIB + 4096);
    for (name, bytes) in [
        ("raw", img.clone()),
        ("gzip", gz(&img)),
        ("zstd", zst(&img)),
        ("xz", xz(&img)),
        ("zip", zip("balena.img", &img)),
    ] {
        let c = case(&bytes, None);
        let out = migrd(&["write-image", s(&c.image), "--to", s(&c.target), "--json"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&c.target).unwrap(), img, "{name}");
        let ev = json_lines(&out);
        assert_eq!(ev[0]["event"], "start", "{name}");
        assert_eq!(ev[0]["format"], name, "{name}");
        assert!(ev
            .iter()
            .any(|e| e["event"] == "progress" && e["phase"] == "write"));
        assert!(ev
            .iter()
            .any(|e| e["event"] == "progress" && e["phase"] == "verify"));
        let done = ev.last().unwrap();
        assert_eq!(done["event"], "done", "{name}");
        assert_eq!(done["sha256"], sha256(&img), "{name}");
        assert_eq!(done["verified"], true);
        assert_eq!(done["bytes"], img.len() as u64);
    }
}

#[test]
fn json_is_the_default_when_not_on_a_terminal_and_no_verify_skips_the_read_back() {
    let img = disk_image(3 * MIB);
    let c = case(&gz(&img), Some(4 * MIB));
    let out = migrd(&[
        "write-image",
        s(&c.image),
        "--to",
        s(&c.target),
        "--no-verify",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = json_lines(&out);
    assert!(!ev.iter().any(|e| e["phase"] == "verify"));
    assert_eq!(ev.last().unwrap()["verified"], false);
    let back = std::fs::read(&c.target).unwrap();
    assert_eq!(&back[..img.len()], &img[..]);
    assert!(
        back[img.len()..].iter().all(|&b| b == OLD),
        "an existing disk file keeps its size"
    );
}

/// Run a failing write and check: non-zero exit, the message names the
/// image and contains `what`, a JSON error event, and the old first MiB.
fn fails(image: &[u8], target_len: usize, what: &str) {
    let c = case(image, Some(target_len));
    let out = migrd(&["write-image", s(&c.image), "--to", s(&c.target), "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: succeeded");
    assert!(err.contains(s(&c.image)), "{what}: {err}");
    assert!(err.contains(what), "{what}: {err}");
    let ev = json_lines(&out);
    assert_eq!(ev.last().unwrap()["event"], "error", "{what}");
    let back = std::fs::read(&c.target).unwrap();
    assert!(
        back[..MIB].iter().all(|&b| b == OLD),
        "{what}: first MiB changed"
    );
}

#[test]
fn truncated_input_fails_cleanly() {
    let img = disk_image(4 * MIB);
    for z in [gz(&img), zst(&img), xz(&img)] {
        fails(&z[..z.len() * 2 / 3], 5 * MIB, "truncated");
    }
}

#[test]
fn corrupt_input_fails_cleanly() {
    let img = disk_image(4 * MIB);
    for mut z in [gz(&img), xz(&img)] {
        let n = z.len();
        z[n * 2 / 3] ^= 0xff;
        z[n * 2 / 3 + 7] ^= 0x0f;
        fails(&z, 5 * MIB, "download it again");
    }
    let mut z = zip("a.img", &img);
    let n = z.len();
    z[n / 2] ^= 0xff;
    fails(&z, 5 * MIB, "download it again");
}

#[test]
fn trailing_garbage_fails_cleanly() {
    let img = disk_image(4 * MIB);
    for mut z in [gz(&img), zst(&img), xz(&img)] {
        z.extend_from_slice(b"<html>502 Bad Gateway</html>");
        fails(&z, 5 * MIB, "trailing garbage");
    }
}

#[test]
fn a_target_too_small_is_refused_before_writing() {
    let img = disk_image(4 * MIB);
    for z in [img.clone(), gz(&img), zst(&img), xz(&img)] {
        fails(&z, 3 * MIB, "use a larger target");
    }
}

#[test]
fn a_missing_image_or_device_is_a_clear_error() {
    let out = migrd(&[
        "write-image",
        "/nonexistent/balena.img.gz",
        "--to",
        "/tmp/x.img",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/balena.img.gz"));
    let c = case(&gz(b"x"), None);
    let out = migrd(&[
        "write-image",
        s(&c.image),
        "--to",
        "/dev/migrd-no-such-disk",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/migrd-no-such-disk"));
}

/// Run a write-image that must be refused before the target is opened:
/// non-zero exit, the message names the image and holds every needle, and
/// the target file was neither created nor changed.
fn refused_untouched(image: &[u8], name: &str, extra: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, image).unwrap();
    let fresh = dir.path().join("new-disk.img");
    let old = dir.path().join("old-disk.img");
    std::fs::write(&old, vec![OLD; 2 * MIB]).unwrap();
    for t in [&fresh, &old] {
        let mut a = vec!["write-image", s(&p), "--to", s(t), "--json"];
        a.extend_from_slice(extra);
        let out = migrd(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: succeeded");
        assert!(err.contains(s(&p)), "{name}: {err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
        assert!(err.contains("nothing was written"), "{err}");
    }
    assert!(!fresh.exists(), "{name}: target created");
    assert!(std::fs::read(&old).unwrap().iter().all(|&b| b == OLD));
}

#[test]
fn empty_html_and_table_less_input_is_refused_before_the_target_is_opened() {
    refused_untouched(b"", "empty.img", &[], &["is empty", "byte 0"]);
    let mut page = b"<!DOCTYPE html><html><body>Sign in</body></html>".to_vec();
    page.resize(2048, b'\n');
    refused_untouched(
        &page,
        "balena.img.gz",
        &[],
        &["HTML page", "decoded byte 0"],
    );
    refused_untouched(
        &gz(&vec![7u8; 8192]),
        "blob.gz",
        &[],
        &["no partition table", "decoded bytes 510-511"],
    );
    refused_untouched(
        &vec![7u8; 8192],
        "blob.img",
        &[],
        &["no partition table", "--force"],
    );
    refused_untouched(b"BZh91AY&SY0000", "x.img.bz2", &[], &["bzip2", "byte 0"]);
}

#[test]
fn raw_input_shorter_than_its_own_table_is_refused_even_with_force() {
    let img = disk_image(4 * MIB);
    let short = &img[..3 * MIB];
    for extra in [&[][..], &["--force"][..]] {
        refused_untouched(
            short,
            "short.img",
            extra,
            &["reaches byte 4194304", "decodes to only 3145728 bytes"],
        );
    }
}

#[test]
fn force_writes_a_raw_file_without_a_table() {
    let blob = vec![7u8; 8192];
    let c = case(&blob, None);
    let out = migrd(&[
        "write-image",
        s(&c.image),
        "--to",
        s(&c.target),
        "--json",
        "--force",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&c.target).unwrap(), blob);
}

#[test]
fn check_first_refuses_a_damaged_compressed_image_with_the_target_untouched() {
    let img = disk_image(4 * MIB);
    let z = gz(&img);
    let cut = z.len() * 2 / 3;
    refused_untouched(
        &z[..cut],
        "t.img.gz",
        &["--check-first"],
        &["is truncated", &format!("after {cut} input bytes")],
    );
    let c = case(&z, None);
    let out = migrd(&[
        "write-image",
        s(&c.image),
        "--to",
        s(&c.target),
        "--check-first",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&c.target).unwrap(), img);
}
