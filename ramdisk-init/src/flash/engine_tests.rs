//! Tests of the whole write path against an in-memory target that fails on
//! purpose and against real files.

use super::super::device::{FileDevice, OpenMode};
use super::super::fixtures::{disk_image, gz, sample, xz, zst};
use super::super::memdev::{MemDevice, Op};
use super::*;

const MIB: usize = 1 << 20;
/// What the target holds before each test: every failure must leave it.
const OLD: u8 = 0xa5;

fn small_chunks() -> Options {
    Options {
        shape: Shape {
            chunk: 256 << 10,
            buffers: 3,
        },
        ..Options::default()
    }
}

fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("image");
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

fn flash(bytes: &[u8], dev: &mut MemDevice, opts: &Options) -> Result<Report, FlashError> {
    let (_d, p) = file_with(bytes);
    write_image(&p, dev, opts, &mut |_| {})
}

fn old_head_intact(dev: &MemDevice) -> bool {
    dev.data[..MIB].iter().all(|&b| b == OLD)
}

#[test]
fn writes_every_format_and_reports_its_sha256() {
    let img = disk_image(3 * MIB + 12_345);
    let want_sha = crate::payload::sha256_hex(&img[..]).unwrap();
    for (name, bytes) in [
        ("raw", img.clone()),
        ("gz", gz(&img)),
        ("zst", zst(&img)),
        ("xz", xz(&img)),
    ] {
        for decoders in [Decoders::pure_rust(), Decoders::best()] {
            let mut dev = MemDevice::new(8 * MIB, OLD);
            let opts = Options {
                decoders,
                ..small_chunks()
            };
            let r = flash(&bytes, &mut dev, &opts).unwrap();
            assert_eq!(r.bytes, img.len() as u64, "{name}");
            assert_eq!(r.sha256, want_sha, "{name}");
            assert!(r.verified);
            assert_eq!(&dev.data[..img.len()], &img[..], "{name}");
            assert!(
                dev.data[img.len()..].iter().all(|&b| b == OLD),
                "{name}: wrote past the image"
            );
        }
    }
}

#[test]
fn the_first_mib_is_written_last_after_the_rest_was_read_back() {
    let img = disk_image(3 * MIB);
    let mut dev = MemDevice::new(4 * MIB, OLD);
    flash(&gz(&img), &mut dev, &small_chunks()).unwrap();
    let offsets = dev.write_offsets();
    assert_eq!(offsets.last(), Some(&0));
    assert_eq!(offsets.iter().filter(|&&o| o < MIB as u64).count(), 1);
    let head_write = dev
        .log
        .iter()
        .position(|o| matches!(o, Op::Write { at: 0, .. }))
        .unwrap();
    let last_far_read = dev
        .log
        .iter()
        .rposition(|o| matches!(o, Op::Read { at } if *at >= MIB as u64))
        .unwrap();
    assert!(
        last_far_read < head_write,
        "verify must come before the head"
    );
    assert!(dev.log[..head_write].contains(&Op::Sync));
    assert_eq!(dev.log.last(), Some(&Op::Read { at: 0 }));
}

#[test]
fn verify_off_reads_nothing() {
    let img = disk_image(2 * MIB);
    let mut dev = MemDevice::new(4 * MIB, OLD);
    let opts = Options {
        verify: false,
        ..small_chunks()
    };
    let r = flash(&zst(&img), &mut dev, &opts).unwrap();
    assert!(!r.verified);
    assert!(!dev.log.iter().any(|o| matches!(o, Op::Read { .. })));
    assert_eq!(&dev.data[..img.len()], &img[..]);
}

#[test]
fn small_images_fit_in_the_head_alone() {
    let mut dev = MemDevice::new(MIB, OLD);
    flash(&gz(b"tiny"), &mut dev, &small_chunks()).unwrap();
    assert_eq!(&dev.data[..4], b"tiny");
    assert_eq!(dev.write_offsets(), vec![0]);
}

#[test]
fn truncated_input_fails_and_leaves_the_old_head() {
    let img = disk_image(3 * MIB);
    for (name, mut z) in [("gz", gz(&img)), ("zst", zst(&img)), ("xz", xz(&img))] {
        z.truncate(z.len() * 3 / 4);
        let mut dev = MemDevice::new(4 * MIB, OLD);
        let e = flash(&z, &mut dev, &small_chunks()).unwrap_err();
        assert!(matches!(e, FlashError::Truncated { .. }), "{name}: {e}");
        assert!(e.to_string().contains("image"), "{e}");
        assert!(old_head_intact(&dev), "{name}");
    }
}

#[test]
fn corrupt_input_fails_and_leaves_the_old_head() {
    let img = disk_image(3 * MIB);
    for (name, mut z) in [("gz", gz(&img)), ("zst", zst(&img)), ("xz", xz(&img))] {
        let at = z.len() * 2 / 3;
        z[at] ^= 0x40;
        z[at + 1] ^= 0x11;
        let mut dev = MemDevice::new(4 * MIB, OLD);
        let e = flash(&z, &mut dev, &small_chunks()).unwrap_err();
        assert!(
            matches!(e, FlashError::Corrupt { .. } | FlashError::Truncated { .. }),
            "{name}: {e}"
        );
        assert!(old_head_intact(&dev), "{name}");
    }
}

#[test]
fn trailing_garbage_fails_and_leaves_the_old_head() {
    let img = disk_image(2 * MIB);
    for (name, mut z) in [("gz", gz(&img)), ("zst", zst(&img)), ("xz", xz(&img))] {
        let end = z.len() as u64;
        z.extend_from_slice(b"<html>oops</html>");
        let mut dev = MemDevice::new(4 * MIB, OLD);
        let e = flash(&z, &mut dev, &small_chunks()).unwrap_err();
        match e {
            FlashError::TrailingGarbage { input_offset, .. } => {
                assert_eq!(input_offset, end, "{name}")
            }
            e => panic!("{name}: {e}"),
        }
        assert!(old_head_intact(&dev), "{name}");
    }
}

#[test]
fn too_large_by_metadata_writes_nothing() {
    let img = disk_image(3 * MIB);
    for bytes in [img.clone(), zst(&img), xz(&img)] {
        let mut dev = MemDevice::new(2 * MIB, OLD);
        let e = flash(&bytes, &mut dev, &small_chunks()).unwrap_err();
        assert!(matches!(e, FlashError::TooLarge { .. }), "{e}");
        assert!(dev.write_offsets().is_empty(), "{e}");
    }
}

#[test]
fn too_large_by_partition_table_writes_nothing() {
    // 3 MiB of data fit in 3.5 MiB, but the MBR says the image is 5 MiB.
    let mut img = disk_image(5 * MIB);
    img.truncate(3 * MIB);
    let mut dev = MemDevice::new(3 * MIB + MIB / 2, OLD);
    let e = flash(&gz(&img), &mut dev, &small_chunks()).unwrap_err();
    assert!(e.to_string().contains("MBR"), "{e}");
    assert!(dev.write_offsets().is_empty());
}

#[test]
fn too_large_by_the_stream_itself_stops_at_the_end_and_keeps_the_head() {
    // Two gzip members: ISIZE (of the last) is small, and no partition table.
    let data = sample(3 * MIB);
    let mut z = gz(&data[..3 * MIB - 10]);
    z.extend(gz(&data[3 * MIB - 10..]));
    let mut dev = MemDevice::new(2 * MIB, OLD);
    let e = flash(&z, &mut dev, &small_chunks()).unwrap_err();
    assert!(matches!(e, FlashError::TooLarge { .. }), "{e}");
    assert!(old_head_intact(&dev));
    assert!(dev.log.iter().all(|o| match o {
        Op::Write { at, len } => at + *len as u64 <= 2 * MIB as u64,
        _ => true,
    }));
}

#[test]
fn short_writes_are_retried_then_reported_and_keep_the_head() {
    let img = disk_image(3 * MIB);
    let mut dev = MemDevice::new(4 * MIB, OLD);
    dev.max_write = 1000;
    flash(&gz(&img), &mut dev, &small_chunks()).unwrap();
    assert_eq!(&dev.data[..img.len()], &img[..]);

    let mut dev = MemDevice::new(4 * MIB, OLD);
    dev.full_at = 2 * MIB as u64 + 100;
    let e = flash(&gz(&img), &mut dev, &small_chunks()).unwrap_err();
    assert!(matches!(e, FlashError::ShortWrite { .. }), "{e}");
    assert!(e.to_string().contains("mem"));
    assert!(old_head_intact(&dev));
}

#[test]
fn read_back_mismatch_reports_the_exact_first_bad_byte_and_keeps_the_head() {
    let img = disk_image(3 * MIB);
    let bad = 2 * MIB as u64 + 70_001;
    let mut dev = MemDevice::new(4 * MIB, OLD);
    dev.corrupt_at = Some(bad);
    let e = flash(&xz(&img), &mut dev, &small_chunks()).unwrap_err();
    match e {
        FlashError::Mismatch { offset, .. } => assert_eq!(offset, bad),
        e => panic!("{e}"),
    }
    assert!(old_head_intact(&dev));
}

#[test]
fn read_back_mismatch_in_the_head_is_reported_too() {
    let img = disk_image(2 * MIB);
    let mut dev = MemDevice::new(4 * MIB, OLD);
    dev.corrupt_at = Some(4097);
    let e = flash(&img, &mut dev, &small_chunks()).unwrap_err();
    assert!(
        matches!(e, FlashError::Mismatch { offset: 4097, .. }),
        "{e}"
    );
}

#[test]
fn a_size_given_by_the_caller_must_match() {
    let img = disk_image(2 * MIB);
    for expected in [2 * MIB as u64 - 1, 2 * MIB as u64 + 1] {
        let mut dev = MemDevice::new(4 * MIB, OLD);
        let opts = Options {
            expected_size: Some(expected),
            ..small_chunks()
        };
        let e = flash(&gz(&img), &mut dev, &opts).unwrap_err();
        assert!(matches!(e, FlashError::WrongSize { .. }), "{e}");
        assert!(old_head_intact(&dev));
    }
}

#[test]
fn progress_goes_through_the_phases() {
    let img = disk_image(3 * MIB);
    let (_d, p) = file_with(&gz(&img));
    let mut dev = MemDevice::new(4 * MIB, OLD);
    let mut seen = Vec::new();
    write_image(&p, &mut dev, &small_chunks(), &mut |pr| seen.push(*pr)).unwrap();
    let phases: Vec<Phase> = seen.iter().map(|p| p.phase).collect();
    assert!(phases.contains(&Phase::Write) && phases.contains(&Phase::Verify));
    assert_eq!(phases.last(), Some(&Phase::Finish));
    let writes: Vec<u64> = seen
        .iter()
        .filter(|p| p.phase == Phase::Write)
        .map(|p| p.bytes)
        .collect();
    assert!(writes.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn writes_a_real_file_with_direct_io_and_an_unaligned_tail() {
    let img = disk_image(5 * MIB + 777);
    let (d, p) = file_with(&zst(&img));
    let target = d.path().join("disk.img");
    std::fs::write(&target, vec![OLD; 6 * MIB]).unwrap();
    let mut dev = FileDevice::open(&target, OpenMode::default()).unwrap();
    let r = write_image(&p, &mut dev, &Options::default(), &mut |_| {}).unwrap();
    assert_eq!(r.bytes, img.len() as u64);
    let back = std::fs::read(&target).unwrap();
    assert_eq!(&back[..img.len()], &img[..]);
    assert_eq!(back.len(), 6 * MIB);
}

#[test]
fn a_real_file_target_keeps_its_head_when_the_input_is_bad() {
    let img = disk_image(3 * MIB);
    let mut z = gz(&img);
    z.truncate(z.len() - 100);
    let (d, p) = file_with(&z);
    let target = d.path().join("disk.img");
    std::fs::write(&target, vec![OLD; 4 * MIB]).unwrap();
    let mut dev = FileDevice::open(&target, OpenMode::default()).unwrap();
    assert!(write_image(&p, &mut dev, &Options::default(), &mut |_| {}).is_err());
    let back = std::fs::read(&target).unwrap();
    assert!(back[..MIB].iter().all(|&b| b == OLD));
}

#[test]
fn zero_blocks_are_skipped_only_where_unwritten_bytes_read_zero() {
    let mut img = disk_image(4 * MIB);
    img[2 * MIB..3 * MIB].fill(0);
    img[4 * MIB - 100_000..].fill(0);
    let mut dev = MemDevice::new(5 * MIB, 0);
    dev.sparse = true;
    flash(&gz(&img), &mut dev, &small_chunks()).unwrap();
    assert_eq!(&dev.data[..img.len()], &img[..]);
    let written: usize = dev
        .log
        .iter()
        .map(|o| match o {
            Op::Write { len, .. } => *len,
            _ => 0,
        })
        .sum();
    assert!(written < 3 * MIB, "zeros were written: {written}");
    // An old disk gets every byte, zeros included.
    let mut dev = MemDevice::new(5 * MIB, OLD);
    flash(&gz(&img), &mut dev, &small_chunks()).unwrap();
    assert_eq!(&dev.data[..img.len()], &img[..]);
}

#[test]
fn nonzero_runs_merge_neighbours_and_skip_zeros() {
    let mut d = vec![0u8; 10 * 4096];
    d[5] = 1;
    d[4096 + 7] = 1;
    d[5 * 4096] = 1;
    d[10 * 4096 - 1] = 1;
    assert_eq!(
        nonzero_runs(&d, 4096),
        vec![(0, 2 * 4096), (5 * 4096, 6 * 4096), (9 * 4096, 10 * 4096)]
    );
    assert!(nonzero_runs(&[0u8; 100], 16).is_empty());
    assert_eq!(nonzero_runs(&[0, 0, 0, 9], 2), vec![(2, 4)]);
}

#[test]
fn a_new_file_target_is_written_sparse_and_sized_to_the_image() {
    let mut img = disk_image(4 * MIB);
    img[2 * MIB..].fill(0);
    let (d, p) = file_with(&xz(&img));
    let target = d.path().join("new.img");
    let mut dev = FileDevice::open(&target, OpenMode::default()).unwrap();
    write_image(&p, &mut dev, &Options::default(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), img);
}
