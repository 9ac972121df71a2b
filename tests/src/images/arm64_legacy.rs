//! The ARM legacy devices: a small Linux on QEMU's `virt` machine booted by
//! Debian's U-Boot (`u-boot-qemu`: `qemu_arm64`, or `qemu_arm` for the
//! 32-bit board [`Board::VirtArmv7`]), laid out the way Debian-style U-Boot
//! boards are:
//!
//! - p1, FAT32 "BOOT", mounted at `/boot/firmware`: the board's `boot.scr`
//!   (made by `mkimage`), which U-Boot's distro boot runs, loading `vmlinuz`
//!   and `initrd.img` from the same partition;
//! - p2, ext4 root: busybox (Debian's `busybox-static` for the board's
//!   architecture, [`Arch`]) as init and shell, Debian's kernel for it
//!   (arm64, or armhf's `armmp`) in `/boot` and its modules in
//!   `/lib/modules` (the storage and filesystem drivers migrd packs), an
//!   os-release of Debian 12 and a canary file.
//!
//! `initrd.img` is a busybox initramfs that loads the virtio and ext4
//! modules and switches to the root partition. The image is made without
//! loop devices or mounts (mkfs.vfat -C, mcopy, mkfs.ext4 -d, sfdisk) in a
//! few seconds, fresh for each scenario.

use super::{balena, tools};
use crate::guest::Guest;
use crate::paths::{self, Kernel};
use crate::qemu::Qemu;
use anyhow::{bail, Context, Result};
use migrd::initramfs::{write_initramfs, Node, Segment, SegmentCompression, Source, Tree};
use migrd::kmod::{resolve, wanted, wanted::Wanted, ModuleIndex};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The guest's hostname (64-bit boards; see [`Board::hostname`]).
pub const HOSTNAME: &str = "arm64-legacy";
/// Root's shell prompt (64-bit boards; see [`Board::prompt`]).
pub const PROMPT: &str = "root@arm64-legacy:~# ";
/// The 32-bit board's hostname.
pub const HOSTNAME_ARMV7: &str = "armv7-legacy";
/// Where the canary lives in the guest.
pub const CANARY: &str = "/root/canary";
/// The flag file of migrd's U-Boot one-shot, as seen in the guest.
pub const ONESHOT_FLAG: &str = "/boot/firmware/migrd/oneshot.txt";
/// U-Boot for QEMU's arm64 `virt` machine (Debian package u-boot-qemu).
pub const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// U-Boot for QEMU's 32-bit arm `virt` machine (Debian package u-boot-qemu).
pub const UBOOT_ARMV7: &str = "/usr/lib/u-boot/qemu_arm/u-boot.bin";
/// U-Boot for `virt` with boot counting, built by tests/lab/setup.sh from
/// Debian's u-boot source (relative to the lab folder).
pub const UBOOT_BOOTCOUNT: &str = "arm64/u-boot-bootcount/u-boot.bin";
/// [`Board::VirtBootcount`]'s environment file, as the guest sees it.
pub const FW_ENV_FILE: &str = "/boot/firmware/uboot.env";
/// Its size (the build's `CONFIG_ENV_SIZE`).
pub const UBOOT_ENV_SIZE: usize = 0x40000;
/// [`Board::VirtBootcount`]'s `bootlimit`.
pub const BOOTLIMIT: u32 = 2;
/// [`Board::VirtBootcount`]'s recovery: what its U-Boot runs once
/// `bootcount` exceeds [`BOOTLIMIT`].
pub const ALTBOOTCMD: &str = "echo migrd-lab: bootlimit exceeded, booting the recovery entry; \
     sysboot virtio 0:1 any ${scriptaddr} /extlinux/recovery.conf";
/// Boot to the shell: a few seconds under TCG on an idle machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

const BOOT_START_MIB: u64 = 1;
const BOOT_MIB: u64 = 160;
const ROOT_START_MIB: u64 = BOOT_START_MIB + BOOT_MIB;

/// The CPU architecture of a lab ARM device: its kernel, busybox, migrd
/// build and U-Boot script images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// 64-bit ARM: Debian's arm64 kernel (an `Image`, booted by `booti`),
    /// the aarch64 musl builds.
    Arm64,
    /// 32-bit ARMv7 with hard float: Debian's armhf `armmp` kernel (a
    /// `zImage`, booted by `bootz`), the armv7 glibc static builds.
    Armhf,
}

impl Arch {
    /// Debian's name for it (the lab's kernel and busybox folders).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::Armhf => "armhf",
        }
    }
    /// The Rust target of migrd, migrd-init and the reporter for it.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-musl",
            Arch::Armhf => "armv7-unknown-linux-gnueabihf",
        }
    }
    /// migrd's name for it (`migrd-init-<name>` beside `migrd`).
    pub fn migrd_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64",
            Arch::Armhf => "armv7",
        }
    }
    /// The qemu-user emulator that runs its binaries on the host.
    pub fn qemu_user(self) -> &'static str {
        match self {
            Arch::Arm64 => "qemu-aarch64-static",
            Arch::Armhf => "qemu-arm-static",
        }
    }
    /// `mkimage -A` for its U-Boot scripts.
    pub fn mkimage(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::Armhf => "arm",
        }
    }
    /// U-Boot's command that boots its kernel image.
    pub fn boot_cmd(self) -> &'static str {
        match self {
            Arch::Arm64 => "booti",
            Arch::Armhf => "bootz",
        }
    }
    /// The serial number of a `virt` device's disk.
    pub fn disk_serial(self) -> &'static str {
        match self {
            Arch::Arm64 => "ARM64DISK01",
            Arch::Armhf => "ARMV7DISK01",
        }
    }
    /// Debian's busybox-static for it, unpacked by tests/lab/setup.sh.
    pub fn busybox(self) -> Result<PathBuf> {
        let busybox = paths::lab_dir().join(format!("{}/busybox/bin/busybox", self.debian()));
        if !busybox.is_file() {
            bail!(
                "{} missing: run tests/lab/setup.sh (it downloads busybox-static for {})",
                busybox.display(),
                self.debian()
            );
        }
        Ok(busybox)
    }
    /// The `migrd` built for it (static), or how to build it.
    pub fn migrd_bin(self) -> Result<PathBuf> {
        paths::cross_migrd_bin(self.triple())
    }
}

/// The machine the device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// QEMU's `virt` machine booted by U-Boot (virtio disk `vda`).
    Virt,
    /// QEMU's `virt` machine with a 32-bit CPU (Cortex-A15) booted by
    /// Debian's 32-bit U-Boot ([`UBOOT_ARMV7`]) through the board's
    /// `boot.scr` (`bootz`), running Debian's armhf kernel and busybox.
    VirtArmv7,
    /// QEMU's `virt` machine booted by the lab's own U-Boot build
    /// ([`UBOOT_BOOTCOUNT`]: boot counting, environment in `uboot.env` on
    /// the boot partition), booting through `/extlinux/extlinux.conf` as
    /// many distro-boot boards do (read before any script, so only the
    /// restore-first mode works). Its environment counts boots:
    /// `bootlimit=2`, and an `altbootcmd` that boots the board's recovery
    /// entry (`/extlinux/recovery.conf`, the same OS); `/etc/fw_env.config`
    /// names `/boot/firmware/uboot.env`.
    VirtBootcount,
    /// A Raspberry Pi 2 Model B (QEMU's `raspi2b`, Cortex-A7; SD card
    /// `mmcblk0`) with the 32-bit Raspberry Pi OS's boot files: config.txt
    /// (no `arm_64bit`, `auto_initramfs`), cmdline.txt, kernel7.img
    /// (Debian's armhf `armmp` kernel), initramfs7 and the board's device
    /// tree (Debian's `bcm2836-rpi-2-b.dtb` under the firmware's name
    /// `bcm2709-rpi-2-b.dtb`). Its initramfs also loads the SoC's watchdog
    /// driver (`bcm2835_wdt`), through which the Pi restarts.
    Pi2,
    /// A Raspberry Pi 3 Model B (QEMU's `raspi3b`; SD card `mmcblk0`),
    /// with Raspberry Pi OS bookworm's boot files: config.txt
    /// (`arm_64bit`, `auto_initramfs`), cmdline.txt, kernel8.img,
    /// initramfs8 and the board's device tree.
    Pi3,
    /// A Raspberry Pi 4 Model B as the OS sees it, on QEMU's `raspi3b`
    /// hardware (QEMU's `raspi4b` cannot boot Debian's kernel): the same
    /// SD card with the Pi 4's device-tree file name, the device tree's
    /// `model` saying Pi 4, and `/dev/vcio` made by the init as a stand-in
    /// for the Raspberry Pi kernel's mailbox device (migrd only checks that
    /// it exists, to know the kernel forwards the tryboot reboot argument;
    /// the lab's firmware model reads that argument from the kernel's
    /// restart line instead).
    Pi4,
}

impl Board {
    /// The CPU architecture of the board's OS.
    pub fn arch(self) -> Arch {
        match self {
            Board::VirtArmv7 | Board::Pi2 => Arch::Armhf,
            Board::Virt | Board::VirtBootcount | Board::Pi3 | Board::Pi4 => Arch::Arm64,
        }
    }
    /// The disk's kernel name.
    pub fn disk(self) -> &'static str {
        match self {
            Board::Virt | Board::VirtArmv7 | Board::VirtBootcount => "vda",
            Board::Pi2 | Board::Pi3 | Board::Pi4 => "mmcblk0",
        }
    }
    /// Partition `n`'s device node.
    pub fn part(self, n: u32) -> String {
        match self {
            Board::Virt | Board::VirtArmv7 | Board::VirtBootcount => format!("/dev/vda{n}"),
            Board::Pi2 | Board::Pi3 | Board::Pi4 => format!("/dev/mmcblk0p{n}"),
        }
    }
    /// The guest's hostname.
    pub fn hostname(self) -> &'static str {
        match self.arch() {
            Arch::Arm64 => HOSTNAME,
            Arch::Armhf => HOSTNAME_ARMV7,
        }
    }
    /// Root's shell prompt.
    pub fn prompt(self) -> String {
        format!("root@{}:~# ", self.hostname())
    }
    /// The disk's size: an SD card image must be a power of two for QEMU.
    fn disk_mib(self) -> u64 {
        match self {
            Board::Virt | Board::VirtArmv7 | Board::VirtBootcount => 400,
            Board::Pi2 | Board::Pi3 | Board::Pi4 => 512,
        }
    }
    /// What the old OS's initramfs loads to reach its root.
    fn root_modules(self) -> Vec<Wanted> {
        match self {
            Board::Virt | Board::VirtBootcount => {
                [VIRT_DISK_MODULES, EXT4_MODULES, VIRT_WATCHDOG_MODULES].concat()
            }
            Board::VirtArmv7 => [VIRT_DISK_MODULES, EXT4_MODULES].concat(),
            Board::Pi2 | Board::Pi3 | Board::Pi4 => {
                [PI_DISK_MODULES, EXT4_MODULES, PI_RESTART_MODULES].concat()
            }
        }
    }
    /// Extra lines of the init script.
    fn rcs_extra(self) -> &'static str {
        match self {
            Board::Pi4 => "mknod -m 600 /dev/vcio c 100 0\n",
            Board::Virt | Board::VirtArmv7 | Board::VirtBootcount | Board::Pi2 | Board::Pi3 => "",
        }
    }
}

/// The Raspberry Pi's SD host controllers (QEMU's raspi machines have both).
const PI_DISK_MODULES: &[Wanted] = &[
    Wanted {
        name: "sdhci_iproc",
        reason: "SD host (Arasan SDHCI)",
        required: true,
    },
    Wanted {
        name: "bcm2835",
        reason: "SD host (sdhost)",
        required: false,
    },
];

/// How a Raspberry Pi restarts (and powers off): the SoC's watchdog.
/// Raspberry Pi OS's kernels build it in, Debian's as a module; without it
/// the kernel's restart finds no handler and halts. Every Pi old OS loads it
/// and carries it in /lib/modules, where stage 1 finds it.
const PI_RESTART_MODULES: &[Wanted] = &[Wanted {
    name: "bcm2835_wdt",
    reason: "restart through the SoC's watchdog",
    required: true,
}];

/// What every old OS's initramfs loads to mount its root.
const EXT4_MODULES: &[Wanted] = &[
    Wanted {
        name: "ext4",
        reason: "the root filesystem",
        required: true,
    },
    Wanted {
        name: "crypto-crc32c",
        reason: "ext4 checksums",
        required: false,
    },
];

/// The MBR disk signature (PARTUUIDs are `0a64d15c-0N`).
const DISK_ID: &str = "0x0a64d15c";

/// What the `virt` old OS's initramfs loads to reach its disk.
const VIRT_DISK_MODULES: &[Wanted] = &[
    Wanted {
        name: "virtio_pci",
        reason: "the disk",
        required: true,
    },
    Wanted {
        name: "virtio_blk",
        reason: "the disk",
        required: true,
    },
];

/// The arm64 `virt` board's watchdog (QEMU's i6300esb on its PCIe bus,
/// [`Qemu::aarch64_virt`]), loaded at boot as udev would, so stage 1 finds
/// it in `/sys/class/watchdog` and the ramdisk arms it. The armhf kernel
/// has no driver for it (`CONFIG_I6300ESB_WDT` is not set in armmp).
const VIRT_WATCHDOG_MODULES: &[Wanted] = &[Wanted {
    name: "i6300esb",
    reason: "the board's hardware watchdog",
    required: true,
}];

/// What the running system loads for `/boot/firmware`.
const BOOT_FS_MODULES: &[Wanted] = &[
    Wanted {
        name: "vfat",
        reason: "/boot/firmware",
        required: true,
    },
    Wanted {
        name: "nls_cp437",
        reason: "vfat codepage",
        required: false,
    },
    Wanted {
        name: "nls_ascii",
        reason: "vfat iocharset (Debian's default)",
        required: false,
    },
];

/// A fresh arm64 legacy device.
#[derive(Clone, Debug)]
pub struct Arm64Image {
    /// The raw disk (MBR: p1 FAT32 boot, p2 ext4 root).
    pub disk: PathBuf,
    /// SHA-256 (hex) of the canary as built.
    pub canary_sha256: String,
    /// The board it is for.
    pub board: Board,
}

/// Build the `virt` device's disk into `out_dir/arm64-legacy.img`.
pub fn image(out_dir: &Path) -> Result<Arm64Image> {
    image_for(out_dir, Board::Virt, &[])
}

/// Build the disk of a `board` device into `out_dir/arm64-legacy.img`,
/// with the `extra` files (host path, absolute path in the guest) in its
/// root filesystem.
pub fn image_for(out_dir: &Path, board: Board, extra: &[(PathBuf, &str)]) -> Result<Arm64Image> {
    let kernel = paths::kernel(board.arch().debian())?;
    let busybox = board.arch().busybox()?;
    std::fs::create_dir_all(out_dir)?;
    let work = out_dir.join("arm64-build");
    let _ = std::fs::remove_dir_all(&work);
    let idx = ModuleIndex::read(&kernel.modules_dir.join(&kernel.release))?;

    // p1: the board's boot files.
    let boot = work.join("boot");
    std::fs::create_dir_all(&boot)?;
    match board {
        Board::Virt | Board::VirtArmv7 => {
            std::fs::copy(&kernel.image, boot.join("vmlinuz"))?;
            initramfs(&busybox, &kernel, &idx, board, &boot.join("initrd.img"))?;
            boot_scr(&boot, &work, board.arch())?;
        }
        Board::VirtBootcount => {
            std::fs::copy(&kernel.image, boot.join("vmlinuz"))?;
            initramfs(&busybox, &kernel, &idx, board, &boot.join("initrd.img"))?;
            extlinux_files(&boot)?;
            uboot_env(&boot.join("uboot.env"), &work)?;
        }
        Board::Pi2 => {
            std::fs::copy(&kernel.image, boot.join("kernel7.img"))?;
            initramfs(&busybox, &kernel, &idx, board, &boot.join("initramfs7"))?;
            pi_boot_files(&boot, &kernel, board)?;
        }
        Board::Pi3 | Board::Pi4 => {
            std::fs::copy(&kernel.image, boot.join("kernel8.img"))?;
            initramfs(&busybox, &kernel, &idx, board, &boot.join("initramfs8"))?;
            pi_boot_files(&boot, &kernel, board)?;
        }
    }

    // p2: the root filesystem.
    let root = work.join("root");
    let canary = rootfs(&root, &busybox, &kernel, &idx, board)?;
    if board == Board::VirtBootcount {
        std::fs::write(
            root.join("etc/fw_env.config"),
            format!(
                "# U-Boot's CONFIG_ENV_IS_IN_FAT file\n{FW_ENV_FILE} 0x0000 {UBOOT_ENV_SIZE:#x}\n"
            ),
        )?;
    }
    for (src, dest) in extra {
        let to = root.join(dest.trim_start_matches('/'));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(src, &to).with_context(|| format!("{} → {dest}", src.display()))?;
    }

    let disk = out_dir.join("arm64-legacy.img");
    let _ = std::fs::remove_file(&disk);
    let root_mib = board.disk_mib() - ROOT_START_MIB - 1;
    std::fs::File::create(&disk)?.set_len(board.disk_mib() << 20)?;
    balena::sfdisk(
        &disk,
        &format!(
            "label: dos\nlabel-id: {DISK_ID}\nunit: sectors\n\n\
             start={}, size={}, type=c, bootable\nstart={}, size={}, type=83\n",
            BOOT_START_MIB * 2048,
            BOOT_MIB * 2048,
            ROOT_START_MIB * 2048,
            root_mib * 2048
        ),
    )?;
    let fat = work.join("boot.fs");
    tools::run(
        Command::new("mkfs.vfat")
            .args(["-C", "-F", "32", "-n", "BOOT", "-i", "0A64B007"])
            .arg(&fat)
            .arg((BOOT_MIB * 1024).to_string()),
        "dosfstools",
    )?;
    tools::mcopy_dir(&fat, &boot)?;
    balena::copy_sparse(&fat, &disk, BOOT_START_MIB << 20)?;
    let ext = work.join("root.fs");
    tools::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-L", "arm64-root", "-d"])
            .arg(&root)
            .arg(&ext)
            .arg(format!("{root_mib}M")),
        "e2fsprogs",
    )?;
    balena::copy_sparse(&ext, &disk, ROOT_START_MIB << 20)?;
    std::fs::remove_dir_all(&work)?;
    Ok(Arm64Image {
        disk,
        canary_sha256: canary,
        board,
    })
}

/// [`Board::VirtBootcount`]'s extlinux files: the board's entry and its
/// recovery entry (the same OS, booted by `altbootcmd`).
fn extlinux_files(boot: &Path) -> Result<()> {
    let conf = |name: &str| {
        format!(
            "# Debian arm64 (migrd lab), booted by U-Boot's distro boot\n\
             default {name}\ntimeout 0\n\n\
             label {name}\n\tlinux /vmlinuz\n\tinitrd /initrd.img\n\
             \tappend console=ttyAMA0 root=/dev/vda2 panic=10\n"
        )
    };
    std::fs::create_dir_all(boot.join("extlinux"))?;
    std::fs::write(boot.join("extlinux/extlinux.conf"), conf("debian"))?;
    std::fs::write(boot.join("extlinux/recovery.conf"), conf("recovery"))?;
    Ok(())
}

/// [`Board::VirtBootcount`]'s environment: the lab U-Boot's default
/// environment (`u-boot-initial-env` of its build) with the board's boot
/// counting, made into `out` by `mkenvimage`.
fn uboot_env(out: &Path, work: &Path) -> Result<()> {
    let defaults = paths::lab_dir().join("arm64/u-boot-bootcount/u-boot-initial-env");
    let mut text = std::fs::read_to_string(&defaults).with_context(|| {
        format!(
            "{} missing: run tests/lab/setup.sh (it builds U-Boot with boot counting)",
            defaults.display()
        )
    })?;
    text.push_str(&format!("bootlimit={BOOTLIMIT}\naltbootcmd={ALTBOOTCMD}\n"));
    let txt = work.join("uboot-env.txt");
    std::fs::write(&txt, text)?;
    tools::run(
        Command::new("mkenvimage")
            .args(["-s", &UBOOT_ENV_SIZE.to_string(), "-o"])
            .arg(out)
            .arg(&txt),
        "u-boot-tools",
    )?;
    Ok(())
}

/// The board's own boot script: what a vendor or flash-kernel leaves.
fn boot_scr(boot: &Path, work: &Path, arch: Arch) -> Result<()> {
    let (debian, bootcmd) = (arch.debian(), arch.boot_cmd());
    tools::uboot_script(
        &format!(
            "echo 'board boot script: Debian {debian} (migrd lab)'\n\
             load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{kernel_addr_r}} /vmlinuz\n\
             load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{ramdisk_addr_r}} /initrd.img\n\
             setenv bootargs \"console=ttyAMA0 root=/dev/vda2 panic=10\"\n\
             {bootcmd} ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{filesize}} ${{fdtcontroladdr}}\n"
        ),
        &format!("Debian {debian} boot script"),
        &boot.join("boot.scr"),
        work,
        arch,
    )
}

/// Raspberry Pi OS bookworm's boot files for a Pi running a 64-bit
/// kernel (32-bit on [`Board::Pi2`]: no `arm_64bit`), with Debian's device
/// tree under the firmware's name for it.
fn pi_boot_files(boot: &Path, kernel: &Kernel, board: Board) -> Result<()> {
    let arm_64bit = match board.arch() {
        Arch::Arm64 => "arm_64bit=1\n",
        Arch::Armhf => "",
    };
    std::fs::write(
        boot.join("config.txt"),
        format!(
            "# Raspberry Pi OS bookworm defaults (migrd lab)\n\
             dtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\n\
             auto_initramfs=1\ndisable_overscan=1\n{arm_64bit}\n[cm4]\notg_mode=1\n\n[all]\n"
        ),
    )?;
    std::fs::write(
        boot.join("cmdline.txt"),
        "console=ttyAMA0,115200 root=/dev/mmcblk0p2 rootfstype=ext4 fsck.repair=yes rootwait panic=10\n",
    )?;
    pi_dtb_to(kernel, board, boot)?;
    Ok(())
}

/// The device tree a Pi `board`'s firmware loads, written into `boot`
/// under the name the firmware looks for (see [`pi3_dtb_to`]); for
/// [`Board::Pi4`] its `model` is the Pi 4's.
pub fn pi_dtb_to(kernel: &Kernel, board: Board, boot: &Path) -> Result<()> {
    match board {
        Board::Pi4 => {
            let out = boot.join("bcm2711-rpi-4-b.dtb");
            pi3_dtb_to(kernel, &out)?;
            tools::run(
                Command::new("fdtput")
                    .args(["-t", "s"])
                    .arg(&out)
                    .args(["/", "model", PI4_MODEL]),
                "device-tree-compiler",
            )?;
            Ok(())
        }
        Board::Pi2 => {
            let dtb = debian_dtb(kernel, "bcm2836-rpi-2-b.dtb")?;
            std::fs::copy(&dtb, boot.join("bcm2709-rpi-2-b.dtb"))
                .with_context(|| dtb.display().to_string())?;
            Ok(())
        }
        Board::Pi3 | Board::Virt | Board::VirtArmv7 | Board::VirtBootcount => {
            pi3_dtb_to(kernel, &boot.join("bcm2710-rpi-3-b.dtb"))
        }
    }
}

/// The device-tree model string of [`Board::Pi4`].
pub const PI4_MODEL: &str = "Raspberry Pi 4 Model B Rev 1.4";

/// Debian's device tree for the Raspberry Pi 3 Model B, written to `out`
/// without its Bluetooth node: that node makes the PL011 UART a serdev
/// port (the Bluetooth chip's), so /dev/ttyAMA0 would not exist and the
/// console would take no input. Raspberry Pi OS users do the same with
/// `dtoverlay=disable-bt` to get the PL011 back.
pub fn pi3_dtb_to(kernel: &Kernel, out: &Path) -> Result<()> {
    let dtb = debian_dtb(kernel, "bcm2837-rpi-3-b.dtb")?;
    std::fs::copy(&dtb, out).with_context(|| dtb.display().to_string())?;
    tools::run(
        Command::new("fdtput")
            .arg("-r")
            .arg(out)
            .arg("/soc/serial@7e201000/bluetooth"),
        "device-tree-compiler",
    )?;
    Ok(())
}

/// Debian's device tree `name` (a Broadcom one) of the `kernel` package.
fn debian_dtb(kernel: &Kernel, name: &str) -> Result<PathBuf> {
    let base = kernel
        .modules_dir
        .parent()
        .and_then(Path::parent)
        .context("kernel folder")?
        .join("usr/lib");
    for e in std::fs::read_dir(&base).with_context(|| base.display().to_string())? {
        let dir = e?.path();
        // arm64 packages keep them by vendor, armhf's armmp in one folder.
        for p in [dir.join("broadcom").join(name), dir.join(name)] {
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "no {name} under {}/linux-image-*/[broadcom/]",
        base.display()
    )
}

/// The module files of `wanted`'s closure, in load order: where each is
/// on the host, and its path relative to `lib/modules/<release>/`.
fn modules(
    kernel: &Kernel,
    idx: &ModuleIndex,
    wanted: &[Wanted],
) -> Result<Vec<(PathBuf, PathBuf)>> {
    let base = kernel.modules_dir.join(&kernel.release);
    let closure = resolve(idx, wanted, &[], None)?;
    closure
        .files
        .iter()
        .map(|m| {
            if m.decompress {
                bail!(
                    "module {} is compressed; the lab kernel's are plain",
                    m.name
                );
            }
            let rel = m.source.strip_prefix(&base).with_context(|| {
                format!("{} is not under {}", m.source.display(), base.display())
            })?;
            Ok((m.source.clone(), rel.to_path_buf()))
        })
        .collect()
}

/// The old OS's busybox initramfs: modules for the disk and ext4 (and
/// the board's restart driver), then `switch_root` to the root partition.
fn initramfs(
    busybox: &Path,
    kernel: &Kernel,
    idx: &ModuleIndex,
    board: Board,
    out: &Path,
) -> Result<()> {
    let mut tree = Tree::new();
    let file = |path: &Path| -> Result<Node> {
        Ok(Node::File {
            perm: 0o755,
            source: Source::File {
                path: path.to_path_buf(),
                size: std::fs::metadata(path)
                    .with_context(|| path.display().to_string())?
                    .len(),
            },
        })
    };
    tree.insert("bin/busybox", file(busybox)?)?;
    tree.insert(
        "dev/console",
        Node::CharDev {
            perm: 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    for d in ["proc", "sys", "newroot"] {
        tree.insert(d, Node::Dir { perm: 0o755 })?;
    }
    let mut order = String::new();
    for (src, rel) in modules(kernel, idx, &board.root_modules())? {
        let dest = format!("lib/modules/{}", rel.display());
        tree.insert(&dest, file(&src)?)?;
        order.push_str(&format!("/{dest}\n"));
    }
    tree.insert(
        "etc/modules.order",
        Node::File {
            perm: 0o644,
            source: Source::Bytes(order.into_bytes()),
        },
    )?;
    tree.insert(
        "init",
        Node::File {
            perm: 0o755,
            source: Source::Bytes(INIT.as_bytes().to_vec()),
        },
    )?;
    let f = std::fs::File::create(out)?;
    let (mut f, _) = write_initramfs(
        std::io::BufWriter::new(f),
        &[Segment {
            compression: SegmentCompression::Gzip,
            tree,
        }],
    )?;
    f.flush()?;
    Ok(())
}

const INIT: &str = r#"#!/bin/busybox sh
# The old OS's initramfs: load the disk and ext4 modules, mount the root
# named by root= and hand over to its init.
B=/bin/busybox
$B mount -t devtmpfs devtmpfs /dev
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
while read m; do $B insmod "$m" || echo "initramfs: insmod $m failed"; done < /etc/modules.order
root=$($B sed -n 's/.*root=\([^ ]*\).*/\1/p' /proc/cmdline)
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do $B sleep 0.1; i=$((i+1)); done
$B mount -t ext4 -o ro "$root" /newroot || { echo "initramfs: cannot mount $root"; $B sleep 5; $B reboot -f; }
$B umount /proc /sys
$B mount --move /dev /newroot/dev
exec $B switch_root /newroot /sbin/init
"#;

const RCS: &str = r#"#!/bin/sh
# Boot of the ARM legacy device (busybox init runs this once).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -o remount,rw /
mkdir -p /dev/pts /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/modules.boot); do insmod "/$m" 2>/dev/null; done
mount -t vfat @BOOTDEV@ /boot/firmware
hostname -F /etc/hostname
echo "migrd-lab: ARM legacy device up ($(uname -r) $(uname -m))"
"#;

const INITTAB: &str = "::sysinit:/etc/init.d/rcS\n\
ttyAMA0::respawn:-/bin/sh\n\
::ctrlaltdel:/sbin/reboot\n\
::shutdown:/bin/umount -a -r\n";

/// The root filesystem's tree; returns the canary's SHA-256.
fn rootfs(
    root: &Path,
    busybox: &Path,
    kernel: &Kernel,
    idx: &ModuleIndex,
    board: Board,
) -> Result<String> {
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/init.d",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "boot/firmware",
        "var/lib",
        "mnt",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    // The applets busybox has, as symlinks (what `busybox --install -s`
    // would make), listed by the board's busybox under qemu-user.
    let list = tools::run(
        Command::new(board.arch().qemu_user())
            .arg(busybox)
            .arg("--list-full"),
        "qemu-user-static",
    )?;
    for applet in String::from_utf8_lossy(&list).lines() {
        let link = root.join(applet);
        if applet.is_empty() || link.exists() {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let write = |rel: &str, text: &str, mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(rel);
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    write(
        "etc/init.d/rcS",
        &format!(
            "{}{}",
            RCS.replace("@BOOTDEV@", &board.part(1)),
            board.rcs_extra()
        ),
        0o755,
    )?;
    write("etc/inittab", INITTAB, 0o644)?;
    write("etc/hostname", &format!("{}\n", board.hostname()), 0o644)?;
    write(
        "etc/profile",
        &format!(
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\ncd /root\nPS1='{}'\n",
            board.prompt()
        ),
        0o644,
    )?;
    write(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        0o644,
    )?;
    write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    write("etc/group", "root:x:0:\n", 0o644)?;
    write(
        "etc/fstab",
        &format!(
            "{} / ext4 defaults 0 1\n{} /boot/firmware vfat defaults 0 2\n",
            board.part(2),
            board.part(1)
        ),
        0o644,
    )?;

    // The kernel as Debian installs it, and the modules migrd packs (the
    // default storage and filesystem set), with their own depmod index.
    let rel = &kernel.release;
    std::fs::copy(&kernel.image, root.join(format!("boot/vmlinuz-{rel}")))?;
    std::fs::copy(&kernel.config, root.join(format!("boot/config-{rel}")))?;
    let mut all = wanted::default_set();
    all.extend_from_slice(BOOT_FS_MODULES);
    all.extend(board.root_modules());
    let mods = root.join("lib/modules").join(rel);
    for (src, in_mods) in modules(kernel, idx, &all)? {
        let to = mods.join(&in_mods);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&src, &to)?;
    }
    let boot_fs: Vec<String> = modules(kernel, idx, BOOT_FS_MODULES)?
        .into_iter()
        .map(|(_, in_mods)| format!("lib/modules/{rel}/{}", in_mods.display()))
        .collect();
    write("etc/modules.boot", &(boot_fs.join("\n") + "\n"), 0o644)?;
    let src_dir = kernel.modules_dir.join(rel);
    let dst_dir = mods;
    std::fs::create_dir_all(&dst_dir)?;
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        if src_dir.join(f).is_file() {
            std::fs::copy(src_dir.join(f), dst_dir.join(f))?;
        }
    }
    tools::run(Command::new("depmod").arg("-b").arg(root).arg(rel), "kmod")?;

    // The canary: data the migration must leave alone when it falls back.
    let canary: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join(CANARY.trim_start_matches('/')), &canary)?;
    Ok(hex(&Sha256::digest(&canary)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// QEMU's `virt` machine (arm64, or 32-bit for [`Board::VirtArmv7`]) with
/// U-Boot as its firmware, 1 GiB, the device's disk first (U-Boot's
/// `virtio 0`, the guest's `vda`).
pub fn qemu(img: &Arm64Image, log_dir: &Path) -> Qemu {
    let mut q = match img.board.arch() {
        Arch::Arm64 => Qemu::aarch64_virt(log_dir),
        Arch::Armhf => Qemu::armv7_virt(log_dir),
    };
    let bios = match img.board {
        Board::VirtBootcount => paths::lab_dir().join(UBOOT_BOOTCOUNT),
        Board::VirtArmv7 | Board::Pi2 => PathBuf::from(UBOOT_ARMV7),
        Board::Virt | Board::Pi3 | Board::Pi4 => PathBuf::from(UBOOT),
    };
    q.args(["-m", "1024", "-bios", &bios.to_string_lossy()])
        .disk(&img.disk, Some(img.board.arch().disk_serial()));
    q
}

/// Start `qemu` as boot `name` and wait for the root shell.
pub fn boot(qemu: &Qemu, name: &str) -> Result<Guest> {
    boot_board(qemu, name, Board::Virt)
}

/// Start `qemu` as boot `name` of a `board` device and wait for its root
/// shell.
pub fn boot_board(qemu: &Qemu, name: &str, board: Board) -> Result<Guest> {
    let mut g = Guest::start(qemu, name)?;
    g.login(&board.prompt(), BOOT_TIMEOUT)
        .with_context(|| format!("{board:?} legacy device boot {name}"))?;
    Ok(g)
}
