//! The synthetic balenaOS image: the real MBR layout and labels (p1
//! resin-boot vfat, p2/p3 resin-rootA/B, p4 extended, p5 resin-state, p6
//! resin-data, ext4), small partitions so flashing is quick under TCG.
//! It boots with BIOS GRUB (boot.img in the MBR, core.img in the 4 MiB gap,
//! modules and grub.cfg on resin-boot) into Debian's kernel and an
//! initramfs whose init is `balena-reporter`.
//!
//! The UEFI variant ([`Boot::Uefi`]) has the GPT layout of balenaOS's
//! generic x86_64 GPT images instead: resin-boot is the EFI System
//! Partition, the other partitions follow as p2–p5, and GRUB for x86_64-efi
//! is `\EFI\BOOT\bootx64.efi` on resin-boot (the removable-media path the
//! firmware boots when no entry names the disk).
//!
//! The arm64 U-Boot variant ([`Boot::Uboot`]) keeps the MBR layout; U-Boot's
//! distro boot runs `boot.scr` on resin-boot (made by `mkimage`), which
//! boots Debian's arm64 kernel and the aarch64 reporter with `booti`. The
//! 32-bit variant ([`Boot::UbootArmv7`]) is the same with Debian's armhf
//! kernel (`armmp`), the armv7 reporter and `bootz`.
//!
//! Built without loop devices or mounts: mkfs.vfat -C, mcopy, mkfs.ext4 -d,
//! sfdisk, grub-mkimage, then written into the disk file at each offset.

use super::arm64_legacy::{Arch, Board};
use super::{reporter_initramfs, tools};
use crate::paths::{self, Kernel};
use anyhow::{ensure, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `device-type.json` slug of the x86 images (use it in config.json).
pub const DEVICE_TYPE: &str = "genericx86-64-ext";
/// `device-type.json` slug of the arm64 U-Boot image.
pub const DEVICE_TYPE_ARM64: &str = "generic-aarch64";
/// `device-type.json` slug of the 32-bit ARM U-Boot image.
pub const DEVICE_TYPE_ARMV7: &str = "generic-armv7ahf";
/// `device-type.json` slug of the Raspberry Pi 2 image (32-bit).
pub const DEVICE_TYPE_PI2: &str = "raspberry-pi2";
/// `device-type.json` slug of the Raspberry Pi 3 image.
pub const DEVICE_TYPE_PI3: &str = "raspberrypi3-64";
/// `device-type.json` slug of the Raspberry Pi 4 image.
pub const DEVICE_TYPE_PI4: &str = "raspberrypi4-64";
/// `VERSION_ID` in the image's os-release.
pub const OS_VERSION: &str = "6.0.13+lab";
/// The kernel command line GRUB boots the reporter with.
pub const CMDLINE: &str = "console=ttyS0 quiet panic=10 rootfstype=ramfs";
/// The kernel command line U-Boot boots the arm64 reporter with.
pub const CMDLINE_ARM64: &str = "console=ttyAMA0 quiet panic=10 rootfstype=ramfs";
/// Disk size in MiB.
pub const DISK_MIB: u64 = 200;
/// Start of the extended partition (p4) in MiB; it runs to the end.
pub const EXTENDED_START_MIB: u64 = 108;
const GRUB_DIR: &str = "/usr/lib/grub/i386-pc";
const GRUB_EFI_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// How the image boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// MBR, GRUB for BIOS in the MBR gap.
    Bios,
    /// GPT, resin-boot is the ESP with GRUB at `\EFI\BOOT\bootx64.efi`.
    Uefi,
    /// arm64, MBR, U-Boot distro boot runs `boot.scr` on resin-boot.
    Uboot,
    /// 32-bit ARM (armv7hf), as [`Boot::Uboot`]; `boot.scr` uses `bootz`.
    UbootArmv7,
    /// Raspberry Pi 2 (32-bit): as [`Boot::Pi3`] with kernel7.img (Debian's
    /// armhf kernel), no `arm_64bit`, the armv7 reporter and the Pi 2's
    /// device tree.
    Pi2,
    /// Raspberry Pi 3 (64-bit): MBR, resin-boot holds config.txt,
    /// cmdline.txt, kernel8.img, the reporter as initramfs and the device
    /// tree, as the Pi firmware reads them.
    Pi3,
    /// Raspberry Pi 4 (64-bit): as [`Boot::Pi3`] with the Pi 4's device
    /// tree (see [`super::arm64_legacy::Board::Pi4`]).
    Pi4,
}

impl Boot {
    /// The image's device-type slug.
    pub fn device_type(self) -> &'static str {
        match self {
            Boot::Bios | Boot::Uefi => DEVICE_TYPE,
            Boot::Uboot => DEVICE_TYPE_ARM64,
            Boot::UbootArmv7 => DEVICE_TYPE_ARMV7,
            Boot::Pi2 => DEVICE_TYPE_PI2,
            Boot::Pi3 => DEVICE_TYPE_PI3,
            Boot::Pi4 => DEVICE_TYPE_PI4,
        }
    }
    /// The ARM architecture it is for (`None` on x86).
    pub fn arm_arch(self) -> Option<Arch> {
        match self {
            Boot::Uboot | Boot::Pi3 | Boot::Pi4 => Some(Arch::Arm64),
            Boot::UbootArmv7 | Boot::Pi2 => Some(Arch::Armhf),
            Boot::Bios | Boot::Uefi => None,
        }
    }
}

/// GPT partition type of the EFI System Partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// The GPT disk GUID of the UEFI variant.
pub const GPT_DISK_GUID: &str = "ba1e4a00-0000-4000-8000-00000000d15c";

/// One filesystem partition of the layout.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    /// Kernel partition number (logicals from 5).
    pub index: u32,
    /// Filesystem label.
    pub label: &'static str,
    /// Offset in MiB.
    pub start_mib: u64,
    /// Size in MiB.
    pub size_mib: u64,
    /// vfat (else ext4).
    pub vfat: bool,
}

const fn p(index: u32, label: &'static str, start_mib: u64, size_mib: u64, vfat: bool) -> Part {
    Part {
        index,
        label,
        start_mib,
        size_mib,
        vfat,
    }
}

/// The partitions, 4 MiB aligned and in balenaOS's order, at scale-model
/// sizes (a real image is over 1 GiB): every migration scenario writes and
/// reads back the whole disk, at about 2 MB/s on raspi3b under TCG.
pub const LAYOUT: [Part; 5] = [
    p(1, "resin-boot", 4, 40, true),
    p(2, "resin-rootA", 44, 32, false),
    p(3, "resin-rootB", 76, 32, false),
    p(5, "resin-state", 112, 16, false),
    p(6, "resin-data", 132, 64, false),
];

/// The same layout at half the scale for the Raspberry Pi 2 ([`Boot::Pi2`]):
/// same partitions, labels, order and 4 MiB alignment, 100 MiB in all; its
/// SD card writes and reads back at ~0.65 MB/s under TCG.
pub const LAYOUT_SMALL: [Part; 5] = [
    p(1, "resin-boot", 4, 20, true),
    p(2, "resin-rootA", 24, 16, false),
    p(3, "resin-rootB", 40, 16, false),
    p(5, "resin-state", 60, 8, false),
    p(6, "resin-data", 72, 24, false),
];

/// The layout of the 64-bit Raspberry Pi images ([`Boot::Pi3`],
/// [`Boot::Pi4`]): [`LAYOUT`]'s 40 MiB resin-boot (the arm64 kernel, device
/// tree and reporter take 34.5 MB of it) with [`LAYOUT_SMALL`]'s other
/// partitions, 120 MiB in all. The Pi model's SD card is the lab's slowest
/// disk (about 2 MB/s under TCG, write and read-back): 80 MiB less to flash
/// is about 80 s less per Pi migration.
pub const LAYOUT_PI64: [Part; 5] = [
    p(1, "resin-boot", 4, 40, true),
    p(2, "resin-rootA", 44, 16, false),
    p(3, "resin-rootB", 60, 16, false),
    p(5, "resin-state", 80, 8, false),
    p(6, "resin-data", 92, 24, false),
];

/// The layout of the image for `boot`, its extended partition's start and
/// the disk size, in MiB.
pub fn layout(boot: Boot) -> (&'static [Part; 5], u64, u64) {
    match boot {
        Boot::Pi2 => (&LAYOUT_SMALL, 56, 100),
        Boot::Pi3 | Boot::Pi4 => (&LAYOUT_PI64, 76, 120),
        _ => (&LAYOUT, EXTENDED_START_MIB, DISK_MIB),
    }
}

/// A built image.
#[derive(Clone, Debug)]
pub struct BalenaImage {
    /// The raw disk (boot it directly).
    pub raw: PathBuf,
    /// The same, gzip-compressed (for `migrd -i`).
    pub gz: PathBuf,
    /// Modules the reporter loads, in order.
    pub modules: Vec<String>,
}

/// Build the BIOS image into `out_dir` with the lab's kernel and the
/// balena-reporter binary found by [`paths::reporter_bin`].
pub fn image(out_dir: &Path) -> Result<BalenaImage> {
    image_for(out_dir, Boot::Bios)
}

/// Build the image for `boot` into `out_dir`, like [`image`].
pub fn image_for(out_dir: &Path, boot: Boot) -> Result<BalenaImage> {
    match boot.arm_arch() {
        Some(arch) => build_for(
            out_dir,
            &paths::reporter_bin_for(arch.triple())?,
            &paths::kernel(arch.debian())?,
            boot,
        ),
        None => build_for(
            out_dir,
            &paths::reporter_bin()?,
            &paths::kernel("amd64")?,
            boot,
        ),
    }
}

/// Kernel partition number of a layout entry: the MBR layout has an
/// extended partition at 4, the GPT one numbers them in order.
pub fn part_number(part: &Part, boot: Boot) -> u32 {
    match boot {
        Boot::Bios | Boot::Uboot | Boot::UbootArmv7 | Boot::Pi2 | Boot::Pi3 | Boot::Pi4 => {
            part.index
        }
        Boot::Uefi if part.index > 4 => part.index - 1,
        Boot::Uefi => part.index,
    }
}

/// Build `out_dir/balena.img` and `out_dir/balena.img.gz` (BIOS).
pub fn build(out_dir: &Path, reporter: &Path, kernel: &Kernel) -> Result<BalenaImage> {
    build_for(out_dir, reporter, kernel, Boot::Bios)
}

/// Build `out_dir/balena.img` and `out_dir/balena.img.gz` booting with `fw`.
pub fn build_for(
    out_dir: &Path,
    reporter: &Path,
    kernel: &Kernel,
    fw: Boot,
) -> Result<BalenaImage> {
    std::fs::create_dir_all(out_dir)?;
    let work = out_dir.join("balena-build");
    let _ = std::fs::remove_dir_all(&work);
    let boot = work.join("boot");
    std::fs::create_dir_all(boot.join("grub"))?;
    std::fs::create_dir_all(boot.join("system-connections"))?;
    std::fs::create_dir_all(work.join("rootA/etc"))?;

    let modules = reporter_initramfs::write(reporter, kernel, &boot.join("balena-reporter.img"))?;
    // The Pi firmware's kernel is kernel7.img or kernel8.img (pi_boot_files).
    if !matches!(fw, Boot::Pi2 | Boot::Pi3 | Boot::Pi4) {
        std::fs::copy(&kernel.image, boot.join("vmlinuz"))
            .with_context(|| format!("copying {}", kernel.image.display()))?;
    }
    write_boot_files(&boot, fw)?;
    match fw {
        Boot::Bios => copy_grub_modules(&boot)?,
        Boot::Uefi => make_grub_efi(&boot, &work)?,
        Boot::Uboot => make_boot_scr(&boot, &work, Arch::Arm64)?,
        Boot::UbootArmv7 => make_boot_scr(&boot, &work, Arch::Armhf)?,
        Boot::Pi2 => pi_boot_files(&boot, kernel, Board::Pi2)?,
        Boot::Pi3 => pi_boot_files(&boot, kernel, Board::Pi3)?,
        Boot::Pi4 => pi_boot_files(&boot, kernel, Board::Pi4)?,
    }
    std::fs::write(work.join("rootA/etc/os-release"), os_release(fw))?;

    let disk = out_dir.join("balena.img");
    let (parts, _, disk_mib) = layout(fw);
    File::create(&disk)?.set_len(disk_mib << 20)?;
    partition(&disk, fw)?;
    for part in parts {
        let fs = work.join(format!("{}.fs", part.label));
        if part.vfat {
            make_vfat(&fs, part, &boot)?;
        } else {
            let tree = (part.label == "resin-rootA").then(|| work.join("rootA"));
            make_ext4(&fs, part, tree.as_deref())?;
        }
        copy_sparse(&fs, &disk, part.start_mib << 20)?;
        std::fs::remove_file(&fs)?;
    }
    if fw == Boot::Bios {
        install_grub(&disk, &work)?;
    }
    let gz = out_dir.join("balena.img.gz");
    gzip(&disk, &gz)?;
    std::fs::remove_dir_all(&work)?;
    Ok(BalenaImage {
        raw: disk,
        gz,
        modules,
    })
}

fn os_release(fw: Boot) -> String {
    let machine = fw.device_type();
    format!(
        "ID=\"balena-os\"\nNAME=\"balenaOS\"\nVERSION=\"{OS_VERSION}\"\nVERSION_ID=\"{OS_VERSION}\"\n\
         PRETTY_NAME=\"balenaOS {OS_VERSION} (migrd lab synthetic image)\"\n\
         MACHINE=\"{machine}\"\nVARIANT=\"Production\"\nVARIANT_ID=\"prod\"\n"
    )
}

fn write_boot_files(boot: &Path, fw: Boot) -> Result<()> {
    let (slug, name, arch) = match fw {
        Boot::Uboot => (
            DEVICE_TYPE_ARM64,
            "Generic aarch64 (migrd lab synthetic)",
            "aarch64",
        ),
        Boot::UbootArmv7 => (
            DEVICE_TYPE_ARMV7,
            "Generic ARMv7-a HF (migrd lab synthetic)",
            "armv7hf",
        ),
        Boot::Pi2 => (
            DEVICE_TYPE_PI2,
            "Raspberry Pi 2 (migrd lab synthetic)",
            "armv7hf",
        ),
        Boot::Pi3 => (
            DEVICE_TYPE_PI3,
            "Raspberry Pi 3 64-bit (migrd lab synthetic)",
            "aarch64",
        ),
        Boot::Pi4 => (
            DEVICE_TYPE_PI4,
            "Raspberry Pi 4 64-bit (migrd lab synthetic)",
            "aarch64",
        ),
        Boot::Bios | Boot::Uefi => (DEVICE_TYPE, "Generic x86_64 (migrd lab synthetic)", "amd64"),
    };
    std::fs::write(
        boot.join("device-type.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "slug": slug,
            "name": name,
            "arch": arch,
            "yocto": {"machine": slug, "fstype": "balenaos-img"},
        }))?,
    )?;
    std::fs::write(boot.join("os-release"), os_release(fw))?;
    std::fs::write(boot.join("balena-image"), b"")?;
    std::fs::write(
        boot.join("system-connections/resin-sample.ignore"),
        b"[connection]\nid=resin-sample\ntype=wifi\n",
    )?;
    std::fs::write(
        boot.join("grub/grub.cfg"),
        format!(
            "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
             terminal_input serial\nterminal_output serial\nset timeout=0\n\
             menuentry 'balenaOS (migrd lab synthetic)' --id balena {{\n\
             \techo 'Booting the synthetic balenaOS'\n\
             \tlinux /vmlinuz {CMDLINE}\n\tinitrd /balena-reporter.img\n}}\n"
        ),
    )?;
    Ok(())
}

/// `boot.scr` for U-Boot's distro boot (made by `mkimage`, as a board
/// vendor would): the kernel and the reporter from resin-boot, `booti`
/// (arm64) or `bootz` (armhf).
fn make_boot_scr(boot: &Path, work: &Path, arch: Arch) -> Result<()> {
    let bootcmd = arch.boot_cmd();
    let text = format!(
            "echo 'Booting the synthetic balenaOS'\n\
             load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{kernel_addr_r}} /vmlinuz\n\
             load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{ramdisk_addr_r}} /balena-reporter.img\n\
             setenv bootargs \"{CMDLINE_ARM64}\"\n\
             {bootcmd} ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{filesize}} ${{fdtcontroladdr}}\n"
    );
    tools::uboot_script(
        &text,
        "balenaOS (migrd lab synthetic)",
        &boot.join("boot.scr"),
        work,
        arch,
    )
}

/// The Pi firmware's files on resin-boot: the reporter is the initramfs.
fn pi_boot_files(boot: &Path, kernel: &Kernel, board: Board) -> Result<()> {
    let (arm_64bit, image) = match board.arch() {
        Arch::Arm64 => ("arm_64bit=1\n", "kernel8.img"),
        Arch::Armhf => ("", "kernel7.img"),
    };
    std::fs::copy(&kernel.image, boot.join(image))?;
    std::fs::write(
        boot.join("config.txt"),
        format!("{arm_64bit}kernel={image}\ninitramfs balena-reporter.img followkernel\n"),
    )?;
    std::fs::write(boot.join("cmdline.txt"), format!("{CMDLINE_ARM64}\n"))?;
    super::arm64_legacy::pi_dtb_to(kernel, board, boot)?;
    Ok(())
}

/// BIOS GRUB's modules on resin-boot (core.img loads them from there).
fn copy_grub_modules(boot: &Path) -> Result<()> {
    std::fs::create_dir_all(boot.join("grub/i386-pc"))?;
    for e in std::fs::read_dir(GRUB_DIR)
        .with_context(|| format!("{GRUB_DIR} (Debian package grub-pc-bin)"))?
    {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".mod") || name.ends_with(".lst") {
            std::fs::copy(e.path(), boot.join("grub/i386-pc").join(&name))?;
        }
    }
    Ok(())
}

/// GRUB for x86_64-efi as `\EFI\BOOT\bootx64.efi`, with every module it
/// needs built in and an early config that finds resin-boot by label.
fn make_grub_efi(boot: &Path, work: &Path) -> Result<()> {
    let early = work.join("early-efi.cfg");
    std::fs::write(
        &early,
        "search --no-floppy --label resin-boot --set=root\nset prefix=($root)/grub\n",
    )?;
    std::fs::create_dir_all(boot.join("EFI/BOOT"))?;
    tools::run(
        Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-d", GRUB_EFI_DIR, "-c"])
            .arg(&early)
            .arg("-o")
            .arg(boot.join("EFI/BOOT/bootx64.efi"))
            .args(["-p", "/grub"])
            .args([
                "part_gpt",
                "fat",
                "search",
                "search_label",
                "normal",
                "configfile",
                "serial",
                "terminal",
                "linux",
                "echo",
                "test",
            ]),
        "grub-efi-amd64-bin",
    )?;
    Ok(())
}

fn partition(disk: &Path, fw: Boot) -> Result<()> {
    let sec = |mib: u64| mib * 2048;
    let script = match fw {
        Boot::Bios | Boot::Uboot | Boot::UbootArmv7 | Boot::Pi2 | Boot::Pi3 | Boot::Pi4 => {
            mbr_script(&sec, fw)
        }
        Boot::Uefi => gpt_script(&sec),
    };
    sfdisk(disk, &script)
}

fn gpt_script(sec: &dyn Fn(u64) -> u64) -> String {
    let mut script = format!("label: gpt\nlabel-id: {GPT_DISK_GUID}\nunit: sectors\n\n");
    for part in &LAYOUT {
        let ty = if part.vfat {
            ESP_TYPE
        } else {
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        };
        script.push_str(&format!(
            "start={}, size={}, type={ty}, name=\"{}\"\n",
            sec(part.start_mib),
            sec(part.size_mib),
            part.label
        ));
    }
    script
}

fn mbr_script(sec: &dyn Fn(u64) -> u64, fw: Boot) -> String {
    let (parts, extended_start, _) = layout(fw);
    let mut script = String::from("label: dos\nlabel-id: 0xba1e4a00\nunit: sectors\n\n");
    for part in parts.iter().filter(|p| p.index < 4) {
        let (ty, flag) = if part.vfat {
            ("c", ", bootable")
        } else {
            ("83", "")
        };
        script.push_str(&format!(
            "start={}, size={}, type={ty}{flag}\n",
            sec(part.start_mib),
            sec(part.size_mib)
        ));
    }
    script.push_str(&format!("start={}, type=5\n", sec(extended_start)));
    for part in parts.iter().filter(|p| p.index > 4) {
        script.push_str(&format!(
            "start={}, size={}, type=83\n",
            sec(part.start_mib),
            sec(part.size_mib)
        ));
    }
    script
}

pub(crate) fn sfdisk(disk: &Path, script: &str) -> Result<()> {
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sfdisk (Debian package fdisk)")?;
    child
        .stdin
        .take()
        .context("sfdisk stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "sfdisk failed: {}\nscript:\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn make_vfat(fs: &Path, part: &Part, content: &Path) -> Result<()> {
    tools::run(
        Command::new("mkfs.vfat")
            .args(["-C", "-F", "16", "-n", part.label, "-i", "0BA1E4A0"])
            .arg(fs)
            .arg((part.size_mib * 1024).to_string()),
        "dosfstools",
    )?;
    tools::mcopy_dir(fs, content)
}

fn make_ext4(fs: &Path, part: &Part, tree: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-b", "4096", "-L", part.label]);
    if let Some(t) = tree {
        cmd.arg("-d").arg(t);
    }
    cmd.arg(fs).arg(format!("{}M", part.size_mib));
    tools::run(&mut cmd, "e2fsprogs")?;
    Ok(())
}

/// Copy `src` into `dst` at `offset`, skipping all-zero MiB blocks (the
/// destination was created sparse).
pub(crate) fn copy_sparse(src: &Path, dst: &Path, offset: u64) -> Result<()> {
    let mut r = File::open(src)?;
    let mut w = std::fs::OpenOptions::new().write(true).open(dst)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = offset;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = r.read(&mut buf[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            w.seek(SeekFrom::Start(at))?;
            w.write_all(&buf[..n])?;
        }
        at += n as u64;
    }
    w.sync_all()?;
    Ok(())
}

/// boot.img's code into the MBR (the partition table stays), core.img
/// after it; core.img finds resin-boot by label and reads `/grub` there.
fn install_grub(disk: &Path, work: &Path) -> Result<()> {
    let early = work.join("early.cfg");
    std::fs::write(
        &early,
        "search --no-floppy --label resin-boot --set=root\nset prefix=($root)/grub\n",
    )?;
    let core = work.join("core.img");
    tools::run(
        Command::new("grub-mkimage")
            .args(["-O", "i386-pc", "-d", GRUB_DIR, "-c"])
            .arg(&early)
            .arg("-o")
            .arg(&core)
            .args(["-p", "(hd0,msdos1)/grub"])
            .args([
                "biosdisk",
                "part_msdos",
                "fat",
                "search",
                "search_label",
                "normal",
                "configfile",
                "serial",
                "terminal",
                "linux",
                "echo",
                "test",
            ]),
        "grub-common",
    )?;
    let core = std::fs::read(&core)?;
    let gap = (LAYOUT[0].start_mib << 20) - 512;
    ensure!(
        (core.len() as u64) <= gap,
        "core.img ({} bytes) does not fit the {gap}-byte gap",
        core.len()
    );
    let boot_img = std::fs::read(Path::new(GRUB_DIR).join("boot.img"))?;
    ensure!(boot_img.len() == 512, "boot.img is not 512 bytes");
    let mut w = std::fs::OpenOptions::new().write(true).open(disk)?;
    w.write_all(&boot_img[..440])?;
    w.seek(SeekFrom::Start(512))?;
    w.write_all(&core)?;
    w.sync_all()?;
    Ok(())
}

fn gzip(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension("gz.part");
    let mut enc = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(File::create(&tmp)?),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut File::open(src)?, &mut enc)?;
    enc.finish()?.flush()?;
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_layouts_have_the_same_shape() {
        let labels = |l: &[Part]| {
            l.iter()
                .map(|p| (p.index, p.label, p.vfat))
                .collect::<Vec<_>>()
        };
        for boot in [Boot::Pi2, Boot::Pi3, Boot::Pi4] {
            let (small, ext, disk) = layout(boot);
            assert_eq!(labels(small), labels(&LAYOUT));
            let mut end = 0;
            for p in small {
                assert_eq!(p.start_mib % 4, 0, "{}", p.label);
                assert!(p.start_mib >= end, "{} overlaps", p.label);
                // Logical partitions start after the extended one and its EBR.
                assert_eq!(p.index > 4, p.start_mib > ext, "{boot:?} {}", p.label);
                end = p.start_mib + p.size_mib;
            }
            assert!(end <= disk && disk < DISK_MIB, "{boot:?} {end} {disk}");
        }
        assert_eq!(layout(Boot::Pi3).0[0].size_mib, LAYOUT[0].size_mib);
        assert_eq!(layout(Boot::Uboot).2, DISK_MIB);
    }
}
