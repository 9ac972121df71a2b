//! The whole-image validation (`inputs::image_check::inspect`) through the
//! binary: `migrd check -i` and `migrd build -i` on real generated images,
//! damaged in every way issue 13 lists. Each refusal exits non-zero and
//! names the file and the byte offset; `build` leaves no output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use support::image::{self, Spec};
use support::{fixture, migrd};

const MIB: usize = 1 << 20;

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

/// Deterministic bytes with no MBR signature.
fn random(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    let mut v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    v[510] = 0x12;
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `migrd check -i IMAGE` on the Pi 4 fixture: (success, all output).
fn check(image: &Path) -> (bool, String) {
    let root = fixture("rpi4-bookworm");
    let cfg = root.join("config.json");
    let out = migrd()
        .arg("check")
        .arg("--root")
        .arg(&root)
        .arg("-c")
        .arg(&cfg)
        .args(["--no-api-check", "--no-vpn-check", "-i"])
        .arg(image)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The `image` line of a check report.
fn image_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some("image"))
        .unwrap_or("")
}

/// `check` refuses `image`: non-zero exit, `FAIL image` naming the file and
/// containing every one of `needles` (the offset among them).
fn refused(image: &Path, needles: &[&str]) {
    let (ok, out) = check(image);
    assert!(!ok, "{}: check passed:\n{out}", image.display());
    let line = image_line(&out);
    assert!(line.starts_with("FAIL"), "{}: {out}", image.display());
    assert!(
        line.contains(image.to_str().unwrap()),
        "file not named: {line}"
    );
    for n in needles {
        assert!(line.contains(n), "{n:?} not in: {line}");
    }
}

#[test]
fn a_good_image_passes_in_every_format_with_its_decode_time() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("a.img", raw.clone()),
        ("a.img.gz", gz(&raw)),
        ("a.img.zst", zst(&raw)),
        ("a.img.xz", xz(&raw)),
    ] {
        let p = write(d.path(), name, &bytes);
        // The run as a whole may fail other checks of the fixture; the
        // image line is what this test is about.
        let (_, out) = check(&p);
        let line = image_line(&out);
        assert!(line.starts_with("PASS"), "{name}: {out}");
        assert!(line.contains("decoded whole (33554432 bytes) in"), "{line}");
    }
}

#[test]
fn truncated_tails_are_refused_with_the_input_offset() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    for (name, z) in [
        ("t.img.gz", gz(&raw)),
        ("t.img.zst", zst(&raw)),
        ("t.img.xz", xz(&raw)),
    ] {
        let cut = z.len() - 100;
        let p = write(d.path(), name, &z[..cut]);
        refused(&p, &["is truncated", &format!("after {cut} input bytes")]);
    }
}

#[test]
fn a_corrupted_middle_byte_is_refused_with_the_input_offset() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    for (name, mut z) in [
        ("c.img.gz", gz(&raw)),
        ("c.img.zst", zst(&raw)),
        ("c.img.xz", xz(&raw)),
    ] {
        let n = z.len();
        z[n / 2] ^= 0xff;
        z[n / 2 + 7] ^= 0x0f;
        let p = write(d.path(), name, &z);
        let (ok, out) = check(&p);
        assert!(!ok, "{name}: {out}");
        let line = image_line(&out);
        assert!(line.contains(p.to_str().unwrap()), "{line}");
        assert!(
            line.contains("is corrupt near input byte") || line.contains("is truncated"),
            "{line}"
        );
        assert!(
            line.contains("bytes decoded") && line.contains("download it again"),
            "{line}"
        );
    }
}

#[test]
fn trailing_garbage_is_refused_at_its_offset_and_xz_zero_padding_is_not_garbage() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    for (name, mut z) in [
        ("g.img.gz", gz(&raw)),
        ("g.img.zst", zst(&raw)),
        ("g.img.xz", xz(&raw)),
    ] {
        let at = z.len();
        z.extend_from_slice(b"<html>502 Bad Gateway</html>");
        let p = write(d.path(), name, &z);
        refused(&p, &["trailing garbage", &format!("at input byte {at}")]);
    }
    let mut z = xz(&raw);
    z.extend_from_slice(&[0; 8]);
    let (ok, out) = check(&write(d.path(), "padded.img.xz", &z));
    assert!(image_line(&out).starts_with("PASS"), "{ok} {out}");
}

#[test]
fn unsupported_and_non_disk_inputs_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let bz = write(
        d.path(),
        "b.img.bz2",
        b"BZh91AY&SY\x00\x01\x02\x03 and the rest",
    );
    refused(&bz, &["bzip2-compressed", "byte 0", "decompress it first"]);
    let html =
        b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n";
    let mut page = html.to_vec();
    page.resize(4096, b' ');
    let p = write(d.path(), "balena.img.gz", &page);
    refused(&p, &["HTML page", "decoded byte 0"]);
    let p = write(d.path(), "random.img", &random(64 << 10));
    refused(&p, &["no partition table", "decoded bytes 510-511"]);
    let p = write(d.path(), "empty.img.gz", b"");
    refused(&p, &["is empty", "byte 0"]);
    let p = write(d.path(), "tiny.img", &[0x55; 100]);
    refused(&p, &["decodes to only 100 bytes", "decoded byte 100"]);
}

#[test]
fn images_shorter_than_their_partition_table_are_refused() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    // Cut inside the extended partition, before its first EBR is read.
    let p = write(d.path(), "cut20.img", &raw[..20 * MIB]);
    refused(&p, &["decoded byte 20971520", "cut short"]);
    // Cut after every partition start: the table reaches past the end.
    let p = write(d.path(), "cut30.img", &raw[..30 * MIB]);
    refused(
        &p,
        &["reaches byte 33554432", "decodes to only 31457280 bytes"],
    );
    let p = write(d.path(), "cut30.img.gz", &gz(&raw[..30 * MIB]));
    refused(
        &p,
        &["reaches byte 33554432", "decodes to only 31457280 bytes"],
    );
}

#[test]
fn a_table_that_does_not_fit_and_foreign_partitions_are_refused() {
    let mut raw = image::raw(&Spec::default());
    // The extended partition (entry 4) grows to end at 64 MiB in a 32 MiB image.
    let sectors = ((64 - 20) * MIB / 512) as u32;
    raw[446 + 48 + 12..446 + 48 + 16].copy_from_slice(&sectors.to_le_bytes());
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "big.img.gz", &gz(&raw));
    refused(
        &p,
        &["reaches byte 67108864", "decodes to only 33554432 bytes"],
    );
    let other = image::raw(&Spec {
        labels_prefix: "other",
        ..Spec::default()
    });
    let p = write(d.path(), "other.img.zst", &zst(&other));
    refused(
        &p,
        &["not a balenaOS image", "decoded byte 0", "other-boot"],
    );
}

/// A minimal static x86-64 ELF, enough for `build`'s init check.
fn tiny_static_elf() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&62u16.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0x400000u64.to_le_bytes());
    b.extend_from_slice(&64u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 5] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [0u64, 0x400000, 0x400000, 136, 136, 0x1000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.resize(b.len() + 16, 0);
    b
}

#[test]
fn build_refuses_a_damaged_image_before_reading_the_kernel_and_writes_nothing() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    let init = write(d.path(), "init", &tiny_static_elf());
    let z = gz(&raw);
    let cut = z.len() / 2;
    for (img, needles) in [
        (
            write(d.path(), "t.img.gz", &z[..cut]),
            vec![
                "is truncated".to_string(),
                format!("after {cut} input bytes"),
            ],
        ),
        (
            write(d.path(), "r.img", &random(8192)),
            vec!["no partition table".into(), "decoded bytes 510-511".into()],
        ),
        (
            write(d.path(), "b.img", b"BZh91AY&SYxxxxxxxx"),
            vec!["bzip2".into(), "byte 0".into()],
        ),
        (
            write(
                d.path(),
                "p.html.img.gz",
                b"<html><body>login</body></html>",
            ),
            vec!["HTML page".into(), "decoded byte 0".into()],
        ),
    ] {
        let out_dir = d.path().join("out");
        let out = migrd()
            .args([
                "build", "--arch", "x86_64", "--target", "serial=X", "--init",
            ])
            .arg(&init)
            .arg("-i")
            .arg(&img)
            .args(["--kernel-config", "/nonexistent-kernel-config", "-o"])
            .arg(&out_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: {err}", img.display());
        assert!(err.contains(img.to_str().unwrap()), "{err}");
        for n in &needles {
            assert!(err.contains(n.as_str()), "{n:?} not in: {err}");
        }
        assert!(
            !err.contains("nonexistent-kernel-config"),
            "image checked first: {err}"
        );
        assert!(!out_dir.exists());
    }
}
