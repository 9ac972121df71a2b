//! Checks on disks and memory: the target disk, the RAM budget, the boot
//! partition's free space, the stage 2 log device.

use super::{CheckResult, Options, Status};
use crate::inputs::gather::{Gathered, ImageInput};
use crate::probe::disks::DiskInfo;
use crate::probe::{rootfs, Facts};
use std::io::Read;
use std::path::Path;

/// RAM kept free for the kernel, migrd-init and page cache during stage 2.
pub const RAM_RESERVE: u64 = 128 << 20;
/// Size of the ramdisk without payload (kernel modules, migrd-init).
pub const RAMDISK_BASE: u64 = 48 << 20;

/// The disk that will be flashed: `-f`, else the one holding `/`.
pub fn target<'a>(f: &'a Facts, o: &Options) -> Result<&'a DiskInfo, String> {
    match &o.flash_to {
        Some(p) => {
            let name = p.to_string_lossy();
            f.disks.disk(&name).ok_or_else(|| {
                let known: Vec<&str> = f.disks.disks.iter().map(|d| d.name.as_str()).collect();
                format!(
                    "-f {name} is not a whole disk here (disks: {})",
                    known.join(", ")
                )
            })
        }
        None => f.disks.root_disk().ok_or_else(|| match &f.disks.root {
            Some(r) if r.disks.len() > 1 => format!(
                "/ spans several disks ({}): choose one with -f",
                r.disks.join(", ")
            ),
            _ => format!(
                "cannot tell which disk holds / ({}); name it with -f",
                f.disks.problems.join("; ")
            ),
        }),
    }
}

fn image_size(g: &Gathered) -> Option<(u64, u64)> {
    match &g.image {
        ImageInput::Local(Ok(i)) => {
            let file = std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0);
            Some((i.required_bytes, file))
        }
        _ => None,
    }
}

/// The target disk exists, is named by a stable identity, and is large enough.
pub fn target_disk(f: &Facts, g: &Gathered, o: &Options) -> CheckResult {
    let n = "target-disk";
    let d = match target(f, o) {
        Ok(d) => d,
        Err(e) => return CheckResult::new(n, Status::Fail, e),
    };
    let t = d.target();
    if !t.is_identified() {
        return CheckResult::new(
            n,
            Status::Fail,
            format!("/dev/{} has no serial, WWN, by-id name or PARTUUID: stage 2 could not be sure to find it again", d.name),
        );
    }
    let ids = migrd_init::target::describe(&t);
    if let Some((need, _)) = image_size(g) {
        if need > d.size_bytes {
            return CheckResult::new(
                n,
                Status::Fail,
                format!(
                    "/dev/{} has {} MiB, the image needs {} MiB",
                    d.name,
                    d.size_bytes >> 20,
                    need >> 20
                ),
            );
        }
    }
    let mut msg = format!(
        "/dev/{} ({} MiB, {}-byte sectors; {ids})",
        d.name,
        d.size_bytes >> 20,
        d.logical_sector_size
    );
    let status = if o.flash_to.is_some() && f.disks.root_disk().map(|r| &r.name) != Some(&d.name) {
        msg.push_str(": not the disk holding /; the old OS stays on its disk");
        Status::Warn
    } else {
        Status::Pass
    };
    CheckResult::new(n, status, msg)
}

/// Enough RAM for the payload (image, backup, config, profiles) in one of
/// the placements: embedded (≈2× payload at peak) or staged (≈1×).
pub fn memory(f: &Facts, g: &Gathered) -> CheckResult {
    let n = "memory";
    let total = f.memory.total;
    if total == 0 {
        return CheckResult::new(n, Status::Warn, "cannot read /proc/meminfo");
    }
    let Some((_, file)) = image_size(g) else {
        return CheckResult::new(
            n,
            Status::Skip,
            format!("{} MiB RAM; image size known after download", total >> 20),
        );
    };
    let backup = g
        .backup
        .as_ref()
        .and_then(|b| b.as_ref().ok())
        .map_or(0, |(_, s)| *s);
    let payload = file + backup + RAMDISK_BASE;
    let embedded = 2 * payload + RAM_RESERVE;
    let staged = payload + RAM_RESERVE;
    let mib = |b: u64| b >> 20;
    if total >= embedded {
        CheckResult::new(
            n,
            Status::Pass,
            format!(
                "{} MiB RAM: payload {} MiB fits embedded (needs {} MiB) or staged",
                mib(total),
                mib(payload),
                mib(embedded)
            ),
        )
    } else if total >= staged {
        CheckResult::new(
            n,
            Status::Pass,
            format!(
                "{} MiB RAM: payload {} MiB fits staged only (needs {} MiB; embedded needs {} MiB)",
                mib(total),
                mib(payload),
                mib(staged),
                mib(embedded)
            ),
        )
    } else {
        CheckResult::new(n, Status::Fail, format!("{} MiB RAM is too little for a {} MiB payload (staged needs {} MiB): use an external payload on a USB disk, or a smaller backup", mib(total), mib(payload), mib(staged)))
    }
}

/// Free space where the ramdisk goes (the Pi firmware partition, or /boot).
pub fn boot_space(f: &Facts, g: &Gathered) -> CheckResult {
    let n = "boot-space";
    if f.root != Path::new("/") {
        return CheckResult::new(
            n,
            Status::Skip,
            "free space is only measured on the live system",
        );
    }
    let dir = f.boot.rpi.as_ref().map_or("/boot", |r| r.boot_dir.as_str());
    // The field types differ between 32- and 64-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let free = match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available() as u64 * s.fragment_size() as u64,
        Err(e) => return CheckResult::new(n, Status::Warn, format!("statvfs {dir}: {e}")),
    };
    let staged = image_size(g).map(|(_, file)| file + RAMDISK_BASE);
    if free < RAMDISK_BASE {
        return CheckResult::new(
            n,
            Status::Fail,
            format!(
                "{dir} has {} MiB free, the ramdisk needs {} MiB",
                free >> 20,
                RAMDISK_BASE >> 20
            ),
        );
    }
    let extra = match staged {
        Some(s) if free >= s => format!("; room to stage the image there too ({} MiB)", s >> 20),
        Some(s) => format!("; not enough to stage the image there ({} MiB)", s >> 20),
        None => String::new(),
    };
    CheckResult::new(
        n,
        Status::Pass,
        format!("{dir}: {} MiB free{extra}", free >> 20),
    )
}

/// Filesystem type from a partition's first 2 KiB: `vfat`, `ext2`, `ext3`, `ext4`.
pub fn fs_type(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 1024 + 104 && head[1024 + 56] == 0x53 && head[1024 + 57] == 0xef {
        let le = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let compat = le(1024 + 92);
        let incompat = le(1024 + 96);
        // extents, 64bit, flex_bg are ext4-only; a journal without them is ext3.
        return Some(if incompat & (0x40 | 0x80 | 0x200) != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        });
    }
    let (fs, _) = crate::inputs::image_check::fs_label(head);
    fs.filter(|t| t == "vfat").map(|_| "vfat")
}

/// `-l DEV`: a vfat/ext3/ext4 partition that is not on the target disk.
pub fn log_device(f: &Facts, o: &Options) -> CheckResult {
    let n = "log-device";
    let Some(dev) = &o.log_to else {
        return CheckResult::new(
            n,
            Status::Skip,
            "no -l/--log-to (the log is kept in RAM and written to the new OS)",
        );
    };
    let name = dev
        .to_string_lossy()
        .trim_start_matches("/dev/")
        .to_string();
    let node = rootfs::resolve(&f.root, &Path::new("dev").join(&name));
    let real = node
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(name.clone());
    let sys = rootfs::join(&f.root, &Path::new("sys/class/block").join(&real));
    let Ok(sysdir) = std::fs::canonicalize(&sys) else {
        return CheckResult::new(
            n,
            Status::Fail,
            format!("-l {}: no such block device", dev.display()),
        );
    };
    let disk = if sysdir.join("partition").exists() {
        sysdir
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
    } else {
        Some(real.clone())
    };
    if let (Ok(t), Some(d)) = (target(f, o), disk.as_deref()) {
        if t.name == d {
            return CheckResult::new(n, Status::Fail, format!("-l {}: it is on /dev/{d}, the disk being flashed; use a USB stick or a second disk", dev.display()));
        }
    }
    let mut head = vec![0u8; 2048];
    let read = std::fs::File::open(&node).and_then(|mut fh| fh.read_exact(&mut head));
    if let Err(e) = read {
        return CheckResult::new(
            n,
            Status::Fail,
            format!("-l {}: cannot read it: {e}", dev.display()),
        );
    }
    match fs_type(&head) {
        Some(t @ ("vfat" | "ext3" | "ext4")) => CheckResult::new(
            n,
            Status::Pass,
            format!(
                "-l {}: {t} on /dev/{}",
                dev.display(),
                disk.unwrap_or_default()
            ),
        ),
        Some(t) => CheckResult::new(
            n,
            Status::Fail,
            format!(
                "-l {}: {t} is not supported; format it vfat, ext3 or ext4",
                dev.display()
            ),
        ),
        None => CheckResult::new(
            n,
            Status::Fail,
            format!(
                "-l {}: no vfat/ext3/ext4 filesystem found; format it first",
                dev.display()
            ),
        ),
    }
}
