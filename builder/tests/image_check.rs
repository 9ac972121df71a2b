//! Image inspection on synthetic balenaOS images in every compression.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use migrd::inputs::image_check::inspect;
use std::io::Write;
use support::image::{self, Spec};

fn sha256_of(b: &[u8]) -> String {
    migrd_init::payload::sha256_hex(b).unwrap()
}

#[test]
fn reads_layout_labels_and_device_type_through_gzip_zstd_xz() {
    let raw = image::raw(&Spec::default());
    let d = tempfile::tempdir().unwrap();
    let gz = d.path().join("a.img.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&raw).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let zst = d.path().join("a.img.zst");
    std::fs::write(&zst, zstd::encode_all(&raw[..], 3).unwrap()).unwrap();
    let xz = d.path().join("a.img.xz");
    let mut e = xz2::write::XzEncoder::new(std::fs::File::create(&xz).unwrap(), 1);
    e.write_all(&raw).unwrap();
    e.finish().unwrap();
    let plain = d.path().join("a.img");
    std::fs::write(&plain, &raw).unwrap();
    for p in [&gz, &zst, &xz, &plain] {
        let i = inspect(p).unwrap();
        assert!(i.is_balena(), "{p:?}");
        assert!(!i.flasher);
        let ids: Vec<(u32, &str)> = i
            .partitions
            .iter()
            .map(|p| (p.index, p.id().unwrap_or("?")))
            .collect();
        assert_eq!(
            ids,
            [
                (1, "resin-boot"),
                (2, "resin-rootA"),
                (3, "resin-rootB"),
                (5, "resin-state"),
                (6, "resin-data")
            ]
        );
        assert_eq!(i.device_type.as_deref(), Some("raspberrypi4-64"));
        assert_eq!(i.arch.as_deref(), Some("aarch64"));
        assert_eq!(i.os_version.as_deref(), Some("6.0.13"));
        assert_eq!(i.required_bytes, 32 << 20);
        assert_eq!(i.decoded_size, 32 << 20);
        assert_eq!(i.decoded_sha256, sha256_of(&raw));
    }
}

#[test]
fn flasher_and_foreign_images_are_recognised() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("f.img.gz");
    std::fs::write(
        &f,
        image::gz(&Spec {
            flasher: true,
            labels_prefix: "flash",
            ..Spec::default()
        }),
    )
    .unwrap();
    let i = inspect(&f).unwrap();
    assert!(i.is_balena() && i.flasher);
    let junk = d.path().join("junk.img");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    assert!(inspect(&junk)
        .unwrap_err()
        .to_string()
        .contains("no partition table"));
    let trunc = d.path().join("t.img.gz");
    let gz = image::gz(&Spec::default());
    std::fs::write(&trunc, &gz[..gz.len() / 2]).unwrap();
    assert!(inspect(&trunc).is_err(), "a truncated download is caught");
}
