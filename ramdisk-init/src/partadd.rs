//! Adding a disk's partitions one by one (BLKPG), for when the kernel keeps
//! the old table after a flash (BLKRRPART fails while any old partition is
//! open): every old partition number that is not in use is forgotten, then
//! each partition of the table just written is added, so injection can
//! reach `resin-boot` and `resin-data` without a reboot.

use crate::efi::table::TablePart;
use crate::flash::ioctl;
use nix::errno::Errno;
use std::os::fd::BorrowedFd;

/// Highest partition number forgotten (GPT's usual table holds 128).
const MAX_PARTITION: u32 = 128;

/// Replace the kernel's partitions of the disk open as `fd` (logical
/// sectors of `sector_size` bytes) with `parts`. Names `disk` in errors.
pub fn replace(
    fd: BorrowedFd<'_>,
    disk: &str,
    parts: &[TablePart],
    sector_size: u32,
) -> Result<(), String> {
    let mut busy = Vec::new();
    for pno in 1..=MAX_PARTITION {
        match ioctl::delete_partition(fd, pno) {
            Ok(()) | Err(Errno::ENXIO) => {}
            Err(Errno::EBUSY) => busy.push(pno),
            Err(e) => {
                return Err(format!(
                    "forgetting partition {pno} of {disk}: {}",
                    e.desc()
                ))
            }
        }
    }
    let ss = u64::from(sector_size);
    let mut failed = Vec::new();
    for p in parts {
        let (pno, start, len) = (p.hd.partition, p.hd.start * ss, p.hd.size * ss);
        if let Err(e) = ioctl::add_partition(fd, pno, start, len) {
            failed.push(format!("{pno} ({})", e.desc()));
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let open = if busy.is_empty() {
        String::new()
    } else {
        format!("; old partitions still open: {busy:?}")
    };
    Err(format!(
        "the kernel refused partitions {} of {disk}{open}",
        failed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::test_loop::LoopDevice;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsFd;

    fn table(script: &str) -> Vec<u8> {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(8 << 20).unwrap();
        let mut c = std::process::Command::new("sfdisk")
            .arg("-q")
            .arg(f.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (util-linux fdisk package) is needed for this test");
        c.stdin
            .as_mut()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
        let mut mbr = vec![0u8; 512];
        f.reopen().unwrap().read_exact(&mut mbr).unwrap();
        mbr
    }

    fn kernel_sees(dev: &LoopDevice, n: u32) -> Option<(u64, u64)> {
        let name = dev.path().file_name()?.to_str()?.to_string();
        let dir = format!("/sys/class/block/{name}p{n}");
        let read = |f: &str| -> Option<u64> {
            std::fs::read_to_string(format!("{dir}/{f}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some((read("start")?, read("size")?))
    }

    /// The kernel's view of `dev` made `head`'s table (with this module:
    /// some kernels, like the CI machine's, scan no MBR themselves).
    fn kernel_view(dev: &LoopDevice, head: &[u8]) -> std::fs::File {
        let mut f = std::fs::File::open(dev.path()).unwrap();
        let parts = crate::efi::table::read(&mut std::io::Cursor::new(head.to_vec())).unwrap();
        replace(f.as_fd(), "loop", &parts, 512).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f
    }

    /// A disk whose kernel view is the old table gets the new one's
    /// partitions, with the new starts and sizes, without BLKRRPART.
    #[test]
    fn the_written_tables_partitions_replace_the_old_ones() {
        let old = table("label: dos\nstart=2048, size=2048\nstart=4096, size=4096\n");
        let Some(dev) = LoopDevice::attach_with_table(8 << 20, &old) else {
            eprintln!("not root: no loop device, skipped");
            return;
        };
        kernel_view(&dev, &old);
        assert_eq!(kernel_sees(&dev, 1), Some((2048, 2048)));
        assert_eq!(kernel_sees(&dev, 2), Some((4096, 4096)));
        let new = table(
            "label: dos\nstart=2048, size=1024\nstart=3072, size=1024\nstart=4096, size=8192\n",
        );
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev.path())
            .unwrap();
        f.write_all(&new).unwrap();
        f.sync_all().unwrap();
        assert_eq!(kernel_sees(&dev, 3), None, "no re-read happened yet");
        f.seek(SeekFrom::Start(0)).unwrap();
        let parts = crate::efi::table::read(&mut f).unwrap();
        replace(f.as_fd(), "loop", &parts, 512).unwrap();
        assert_eq!(kernel_sees(&dev, 1), Some((2048, 1024)));
        assert_eq!(kernel_sees(&dev, 2), Some((3072, 1024)));
        assert_eq!(kernel_sees(&dev, 3), Some((4096, 8192)));
    }

    /// An old partition held open cannot go: the error names it.
    #[test]
    fn an_open_old_partition_is_named() {
        let old = table("label: dos\nstart=2048, size=2048\nstart=4096, size=4096\n");
        let Some(dev) = LoopDevice::attach_with_table(8 << 20, &old) else {
            eprintln!("not root: no loop device, skipped");
            return;
        };
        kernel_view(&dev, &old);
        let held = dev.open_partition(2);
        let new = table("label: dos\nstart=2048, size=4096\nstart=6144, size=4096\n");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev.path())
            .unwrap();
        f.write_all(&new).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let parts = crate::efi::table::read(&mut f).unwrap();
        let e = replace(f.as_fd(), "loop", &parts, 512).unwrap_err();
        assert!(e.contains("old partitions still open: [2]"), "{e}");
        drop(held);
    }
}
