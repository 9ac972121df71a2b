//! An **emulator of the Raspberry Pi VideoCore firmware's file selection —
//! not the firmware**. QEMU cannot run the real boot firmware
//! (`bootcode.bin`/`start*.elf`, the Pi 4/5 EEPROM bootloader), so the lab
//! asks this model which kernel, initramfs, command line and device tree
//! the firmware would load from a boot partition, then boots those files in
//! `qemu-system-aarch64 -M raspi3b` itself. What it follows, from the
//! published documentation (config.txt, autoboot.txt, tryboot):
//!
//! - the tryboot flag is one-shot: [`Firmware::boot`] clears it *before*
//!   reading anything, so whatever happens next, the following boot reads
//!   `config.txt`;
//! - `autoboot.txt` (EEPROM bootloaders only: Pi 4 family and Pi 5) with
//!   `[all]`, `[none]`, `[tryboot]`, `tryboot_a_b` and `boot_partition`;
//! - `tryboot.txt` instead of `config.txt` when the flag was set (unless
//!   `tryboot_a_b=1`);
//! - conditional filters: `[all]` resets, a model filter replaces the
//!   previous one, `[tryboot]` combines, `[none]` and filters it cannot
//!   evaluate (EDID, GPIO, serial) hold for nothing;
//! - `include`, last value wins, `os_prefix`, `kernel=` (else the model's
//!   default from `arm_64bit`), `initramfs <files> <addr>` / `ramfsfile=`,
//!   `auto_initramfs`, `cmdline=` (else `cmdline.txt`), `device_tree=`.
//!
//! It is written independently of `migrd_bootloaders::rpi` (which
//! generates the files), so a misunderstanding in one is not silently
//! shared by the other. Not modelled: firmware versions and their bugs,
//! secure boot (`boot.img`), network/USB boot order, overlays, GPU memory.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A boot FAT partition, read-only.
pub trait BootFs {
    /// A file's bytes by path relative to the partition root (`/`
    /// separated), `None` if absent.
    fn read(&self, name: &str) -> Option<Vec<u8>>;
}

/// A boot partition as a folder (fixture trees, a mounted partition).
pub struct DirFs(pub PathBuf);

impl BootFs for DirFs {
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.join(name.trim_start_matches('/'))).ok()
    }
}

/// A FAT filesystem image (or a partition of a disk image), read with the
/// `fatfs` crate into memory.
pub struct FatImage {
    fs: fatfs::FileSystem<std::io::Cursor<Vec<u8>>>,
}

impl FatImage {
    /// Open `len` bytes at `offset` of `image` as a FAT filesystem.
    pub fn open(image: &Path, offset: u64, len: u64) -> Result<FatImage> {
        use std::io::{Seek, SeekFrom};
        let mut f =
            std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        f.take(len).read_to_end(&mut bytes)?;
        let fs = fatfs::FileSystem::new(std::io::Cursor::new(bytes), fatfs::FsOptions::new())
            .with_context(|| format!("{} at {offset}: not a FAT filesystem", image.display()))?;
        Ok(FatImage { fs })
    }
}

impl BootFs for FatImage {
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        let mut f = self
            .fs
            .root_dir()
            .open_file(name.trim_start_matches('/'))
            .ok()?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).ok()?;
        Some(v)
    }
}

/// The board models the lab uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// Raspberry Pi 2 Model B v1.1 (BCM2836, Cortex-A7: 32-bit only; what
    /// `-M raspi2b` emulates). `bootcode.bin` firmware (no tryboot), the
    /// `[pi2]` filter, default kernel `kernel7.img` (`arm_64bit` cannot
    /// apply: the CPU has no 64-bit mode), device tree
    /// `bcm2709-rpi-2-b.dtb`.
    Pi2,
    /// Raspberry Pi 3 Model B (what `-M raspi3b` emulates).
    Pi3,
    /// Raspberry Pi 3 Model B+.
    Pi3Plus,
    /// Raspberry Pi 4 Model B.
    Pi4,
}

impl Board {
    fn obeys(self, filter: &str) -> bool {
        match self {
            Board::Pi2 => filter == "pi2",
            Board::Pi3 => filter == "pi3",
            Board::Pi3Plus => filter == "pi3" || filter == "pi3+",
            Board::Pi4 => filter == "pi4",
        }
    }
    fn eeprom_bootloader(self) -> bool {
        self == Board::Pi4
    }
    fn default_64bit(self) -> bool {
        self == Board::Pi4
    }
    fn can_run_64bit(self) -> bool {
        self != Board::Pi2
    }
    fn dtb(self) -> &'static str {
        match self {
            Board::Pi2 => "bcm2709-rpi-2-b.dtb",
            Board::Pi3 => "bcm2710-rpi-3-b.dtb",
            Board::Pi3Plus => "bcm2710-rpi-3-b-plus.dtb",
            Board::Pi4 => "bcm2711-rpi-4-b.dtb",
        }
    }
}

const MODEL_FILTERS: &[&str] = &[
    "pi0", "pi0w", "pi02", "pi1", "pi2", "pi3", "pi3+", "pi4", "pi400", "pi5", "pi500", "cm1",
    "cm3", "cm3+", "cm4", "cm4s", "cm5",
];

#[derive(Default)]
struct Filters {
    model: Option<String>,
    tryboot: bool,
    never: bool,
}

impl Filters {
    fn apply(&mut self, f: &str) {
        let f = f.trim().to_ascii_lowercase();
        if f == "all" {
            *self = Filters::default();
        } else if f == "tryboot" {
            self.tryboot = true;
        } else if MODEL_FILTERS.contains(&f.as_str()) {
            self.model = Some(f);
        } else {
            // [none], EDID, GPIO, HDMI, serial numbers: nothing applies.
            self.never = true;
        }
    }
    fn hold(&self, board: Board, tryboot: bool) -> bool {
        !self.never
            && (!self.tryboot || tryboot)
            && self.model.as_deref().map_or(true, |m| board.obeys(m))
    }
}

/// `(key, value)` settings in force, in file order (includes expanded).
fn settings(
    fs: &dyn BootFs,
    text: &str,
    board: Board,
    tryboot: bool,
    filters: &mut Filters,
    depth: u32,
    out: &mut Vec<(String, String)>,
) {
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[').and_then(|r| r.split(']').next()) {
            filters.apply(inner);
            continue;
        }
        if !filters.hold(board, tryboot) {
            continue;
        }
        if let Some(rest) = line.strip_prefix("include ") {
            if depth < 4 {
                if let Some(b) = fs.read(rest.trim()) {
                    let t = String::from_utf8_lossy(&b).to_string();
                    settings(fs, &t, board, tryboot, filters, depth + 1, out);
                }
            }
        } else if let Some(rest) = line.strip_prefix("initramfs ") {
            out.push(("initramfs".into(), rest.trim().to_string()));
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

fn last<'a>(s: &'a [(String, String)], key: &str) -> Option<&'a str> {
    s.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What the firmware would load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Whether this boot was a tryboot (the flag was set, now cleared).
    pub tryboot: bool,
    /// The configuration file read (`config.txt`, `tryboot.txt`).
    pub config_file: String,
    /// `boot_partition` from autoboot.txt, when set.
    pub boot_partition: Option<u32>,
    /// Kernel path on the partition (prefix applied).
    pub kernel: String,
    /// Initramfs paths, in load order (empty: none).
    pub initramfs: Vec<String>,
    /// The kernel command line (first line of the command-line file).
    pub cmdline: String,
    /// The command-line file read.
    pub cmdline_file: String,
    /// Device tree path on the partition.
    pub dtb: String,
}

/// The firmware's persistent state: the tryboot flag.
#[derive(Clone, Debug, Default)]
pub struct Firmware {
    /// Set by `reboot "0 tryboot"` (the mailbox's SET_REBOOT_FLAGS).
    pub tryboot_flag: bool,
}

fn text(fs: &dyn BootFs, name: &str) -> Option<String> {
    fs.read(name)
        .map(|b| String::from_utf8_lossy(&b).to_string())
}

impl Firmware {
    /// Boot once: clear the flag first (one-shot), then choose the files.
    /// Fails like the firmware would not boot: the kernel or an initramfs
    /// file is missing.
    pub fn boot(&mut self, fs: &dyn BootFs, board: Board) -> Result<Selection> {
        let flag = std::mem::take(&mut self.tryboot_flag) && board.eeprom_bootloader();
        let mut tryboot_a_b = false;
        let mut boot_partition = None;
        if board.eeprom_bootloader() {
            if let Some(t) = text(fs, "autoboot.txt") {
                let mut s = Vec::new();
                settings(fs, &t, board, flag, &mut Filters::default(), 4, &mut s);
                tryboot_a_b = last(&s, "tryboot_a_b") == Some("1");
                boot_partition = last(&s, "boot_partition").and_then(|v| v.parse().ok());
            }
        }
        let config_file = if flag && !tryboot_a_b {
            "tryboot.txt"
        } else {
            "config.txt"
        };
        let cfg = text(fs, config_file).unwrap_or_default();
        let mut s = Vec::new();
        settings(fs, &cfg, board, flag, &mut Filters::default(), 0, &mut s);

        let prefix = last(&s, "os_prefix").unwrap_or("").to_string();
        let arm_64bit = board.can_run_64bit()
            && last(&s, "arm_64bit").map_or(board.default_64bit(), |v| v != "0");
        let kernel_name = match last(&s, "kernel") {
            Some(k) => k.to_string(),
            None if arm_64bit => "kernel8.img".into(),
            None if board == Board::Pi4 => "kernel7l.img".into(),
            None => "kernel7.img".into(),
        };
        let kernel = format!("{prefix}{kernel_name}");
        if fs.read(&kernel).is_none() {
            bail!("{config_file}: kernel {kernel} is not on the boot partition; the firmware stops here");
        }
        let explicit = last(&s, "initramfs")
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .or_else(|| last(&s, "ramfsfile").map(str::to_string));
        let initramfs: Vec<String> = match explicit {
            Some(list) => list
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| format!("{prefix}{f}"))
                .collect(),
            None if last(&s, "auto_initramfs") == Some("1") => {
                let auto = kernel_name
                    .strip_suffix(".img")
                    .unwrap_or(&kernel_name)
                    .replacen("kernel", "initramfs", 1);
                let p = format!("{prefix}{auto}");
                fs.read(&p).map(|_| vec![p]).unwrap_or_default()
            }
            None => vec![],
        };
        if let Some(m) = initramfs.iter().find(|f| fs.read(f).is_none()) {
            bail!("{config_file}: initramfs {m} is not on the boot partition");
        }
        let cmdline_file = format!("{prefix}{}", last(&s, "cmdline").unwrap_or("cmdline.txt"));
        let cmdline = text(fs, &cmdline_file)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let dtb = format!("{prefix}{}", last(&s, "device_tree").unwrap_or(board.dtb()));
        Ok(Selection {
            tryboot: flag,
            config_file: config_file.into(),
            boot_partition,
            kernel,
            initramfs,
            cmdline,
            cmdline_file,
            dtb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str, boot: &str) -> (tempfile::TempDir, PathBuf) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
            .join(boot);
        let d = tempfile::tempdir().unwrap();
        for f in ["config.txt", "cmdline.txt"] {
            std::fs::copy(src.join(f), d.path().join(f)).unwrap();
        }
        for k in ["kernel7.img", "kernel7l.img", "kernel8.img"] {
            std::fs::write(d.path().join(k), k).unwrap();
        }
        let p = d.path().to_path_buf();
        (d, p)
    }

    #[test]
    fn fixtures_boot_their_default_kernel_and_cmdline() {
        for (name, boot, board, kernel) in [
            ("rpi4-bookworm", "boot/firmware", Board::Pi4, "kernel8.img"),
            (
                "rpi3bplus-bookworm",
                "boot/firmware",
                Board::Pi3Plus,
                "kernel7.img",
            ),
            ("rpi3-buster", "boot", Board::Pi3, "kernel7.img"),
        ] {
            let (_d, p) = fixture(name, boot);
            let sel = Firmware::default().boot(&DirFs(p), board).unwrap();
            assert_eq!(sel.kernel, kernel, "{name}");
            assert_eq!(sel.config_file, "config.txt");
            assert!(
                sel.cmdline.contains("root=PARTUUID=4e5f6a7b-02"),
                "{name}: {sel:?}"
            );
            // auto_initramfs=1 but no initramfs8/7 file: none loaded.
            assert!(sel.initramfs.is_empty(), "{name}: {sel:?}");
        }
    }

    #[test]
    fn the_tryboot_flag_is_cleared_before_use_and_only_pi4_has_it() {
        let (_d, p) = fixture("rpi4-bookworm", "boot/firmware");
        std::fs::write(
            p.join("tryboot.txt"),
            "kernel=kernel7l.img\ncmdline=tb.txt\n",
        )
        .unwrap();
        std::fs::write(p.join("tb.txt"), "tryboot-cmdline\n").unwrap();
        let mut fw = Firmware { tryboot_flag: true };
        let sel = fw.boot(&DirFs(p.clone()), Board::Pi4).unwrap();
        assert!(!fw.tryboot_flag, "one-shot: cleared");
        assert_eq!(
            (
                sel.config_file.as_str(),
                sel.kernel.as_str(),
                sel.cmdline.as_str()
            ),
            ("tryboot.txt", "kernel7l.img", "tryboot-cmdline")
        );
        // The next boot (a reset during the try) reads config.txt again.
        let again = fw.boot(&DirFs(p.clone()), Board::Pi4).unwrap();
        assert_eq!(
            (again.config_file.as_str(), again.kernel.as_str()),
            ("config.txt", "kernel8.img")
        );
        // A Pi 3's bootcode.bin has no tryboot: config.txt even with the flag.
        let pi3 = Firmware { tryboot_flag: true }
            .boot(&DirFs(p), Board::Pi3)
            .unwrap();
        assert_eq!(pi3.config_file, "config.txt");
    }

    #[test]
    fn a_pi2_boots_kernel7_with_its_own_filter_and_device_tree() {
        let (_d, p) = fixture("rpi3-buster", "boot");
        std::fs::write(p.join("initramfs7"), "i\n").unwrap();
        std::fs::write(p.join("tb.txt"), "tryboot\n").unwrap();
        std::fs::write(p.join("tryboot.txt"), "cmdline=tb.txt\n").unwrap();
        std::fs::write(
            p.join("config.txt"),
            "arm_64bit=1\nauto_initramfs=1\n[pi3]\nkernel=pi3.img\n[pi2]\ncmdline=c2.txt\n[all]\n",
        )
        .unwrap();
        std::fs::write(p.join("c2.txt"), "pi2-cmdline\n").unwrap();
        let mut fw = Firmware { tryboot_flag: true };
        let sel = fw.boot(&DirFs(p.clone()), Board::Pi2).unwrap();
        // No 64-bit mode: kernel7.img despite arm_64bit=1, and its
        // initramfs7; [pi3] skipped, [pi2] applied; no tryboot.
        assert_eq!(
            (
                sel.config_file.as_str(),
                sel.kernel.as_str(),
                sel.cmdline.as_str(),
                sel.dtb.as_str()
            ),
            (
                "config.txt",
                "kernel7.img",
                "pi2-cmdline",
                "bcm2709-rpi-2-b.dtb"
            )
        );
        assert_eq!(sel.initramfs, ["initramfs7"]);
        assert!(!sel.tryboot && !fw.tryboot_flag);
        // The same card on a Pi 3: its own section and the 64-bit kernel.
        let e = Firmware::default().boot(&DirFs(p), Board::Pi3).unwrap_err();
        assert!(e.to_string().contains("pi3.img"), "{e}");
    }

    #[test]
    fn filters_prefix_initramfs_and_autoboot() {
        let (_d, p) = fixture("rpi4-bookworm", "boot/firmware");
        std::fs::create_dir_all(p.join("v2")).unwrap();
        for f in [
            "v2/kernel8.img",
            "v2/a.img",
            "v2/b.img",
            "v2/initramfs8",
            "v2/c.txt",
        ] {
            std::fs::write(p.join(f), "x\n").unwrap();
        }
        std::fs::write(
            p.join("config.txt"),
            "os_prefix=v2/\n[pi3]\nkernel=nope.img\n[pi4]\ninitramfs a.img,b.img followkernel\n[all]\ncmdline=c.txt\n[none]\nkernel=never.img\n[EDID=X]\nkernel=never.img\n",
        )
        .unwrap();
        let sel = Firmware::default()
            .boot(&DirFs(p.clone()), Board::Pi4)
            .unwrap();
        assert_eq!(sel.kernel, "v2/kernel8.img");
        assert_eq!(sel.initramfs, ["v2/a.img", "v2/b.img"]);
        assert_eq!(sel.cmdline_file, "v2/c.txt");
        assert_eq!(sel.dtb, "v2/bcm2711-rpi-4-b.dtb");
        let e = Firmware::default()
            .boot(&DirFs(p.clone()), Board::Pi3)
            .unwrap_err();
        assert!(e.to_string().contains("v2/nope.img"), "{e}");
        // auto_initramfs finds initramfs8 next to kernel8.img.
        std::fs::write(p.join("config.txt"), "os_prefix=v2/\nauto_initramfs=1\n").unwrap();
        let sel = Firmware::default()
            .boot(&DirFs(p.clone()), Board::Pi4)
            .unwrap();
        assert_eq!(sel.initramfs, ["v2/initramfs8"]);
        // autoboot.txt: tryboot_a_b keeps config.txt on the tryboot boot.
        std::fs::write(
            p.join("autoboot.txt"),
            "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n",
        )
        .unwrap();
        let sel = Firmware { tryboot_flag: true }
            .boot(&DirFs(p), Board::Pi4)
            .unwrap();
        assert_eq!(
            (sel.config_file.as_str(), sel.boot_partition),
            ("config.txt", Some(3))
        );
    }
}
