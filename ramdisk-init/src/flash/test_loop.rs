//! Test support: a loop device over a temporary file, made with
//! util-linux's `losetup` and detached on drop. Tests that need a real block
//! device use it when the process is root (CI is); elsewhere they skip.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop device backed by a temporary file of a given size.
pub struct LoopDevice {
    dev: PathBuf,
    _file: tempfile::NamedTempFile,
}

impl LoopDevice {
    /// Attach a zeroed file of `size` bytes. `None` when not root; a root
    /// that cannot attach one fails the test (the machine is broken).
    pub fn attach(size: u64) -> Option<Self> {
        Self::attach_file(size, &[], &["--find", "--show"])
    }

    /// Attach a file of `size` bytes that starts with `head` (a partition
    /// table), with partition scanning (`losetup -P`), so the kernel lists
    /// its partitions. `None` when not root.
    pub fn attach_with_table(size: u64, head: &[u8]) -> Option<Self> {
        Self::attach_file(size, head, &["--find", "--show", "--partscan"])
    }

    /// A file of `size` bytes starting with `head`, attached by `losetup`
    /// with `args`.
    fn attach_file(size: u64, head: &[u8], args: &[&str]) -> Option<Self> {
        // /proc/self belongs to the process's effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !root {
            return None;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), head).unwrap();
        file.as_file().set_len(size).unwrap();
        let out = Command::new("losetup")
            .args(args)
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Some(LoopDevice { dev, _file: file })
    }

    /// Partition `n` opened for reading, through a device node made from
    /// sysfs (a container's /dev may lack it); held open until dropped.
    pub fn open_partition(&self, n: u32) -> (tempfile::TempDir, std::fs::File) {
        let name = self.dev.file_name().unwrap().to_str().unwrap();
        let majmin = std::fs::read_to_string(format!("/sys/class/block/{name}p{n}/dev")).unwrap();
        let (maj, min) = majmin.trim().split_once(':').unwrap();
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("part");
        let st = Command::new("mknod")
            .arg(&node)
            .args(["b", maj, min])
            .status()
            .unwrap();
        assert!(st.success());
        let f = std::fs::File::open(&node).unwrap();
        (dir, f)
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.dev
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}
