//! migrd's U-Boot one-shot script on real U-Boot (Debian's u-boot-qemu
//! 2023.01, `qemu_arm64`, under qemu-system-aarch64 TCG): a FAT boot
//! partition holding the board's own boot.scr is armed with the files
//! `migrd_bootloaders::uboot::arm` generates. Boot 1: U-Boot runs migrd's
//! script, writes the flag back as `migrd_oneshot=0` with fatwrite, then
//! tries the ramdisk (a stand-in kernel here, which `booti` rejects) and
//! hands over to the board's original script. Boot 2: straight to the
//! original script. No Linux kernel is booted: this proves the
//! self-clearing and the fallback, not the ramdisk boot (see the report).
//!
//! `#[ignore]`d for a plain `cargo test`: needs qemu-system-arm,
//! u-boot-qemu, u-boot-tools, dosfstools, mtools and fdisk
//! (tests/lab/setup.sh).

use anyhow::{ensure, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::uboot::detect::EnvState;
use migrd_bootloaders::uboot::script::{script_image, ImageArch};
use migrd_bootloaders::uboot::{arm, detect, ArmInputs, BootFs, UbootFacts};
use migrd_lab::paths;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

fn sh(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// Put `bytes` at `path` inside the FAT image (folders made as needed).
fn put(fat: &Path, path: &str, bytes: &[u8], tmp: &Path) -> Result<()> {
    let src = tmp.join("put.tmp");
    std::fs::write(&src, bytes)?;
    let img = fat.display().to_string();
    let mut dir = String::new();
    for part in path
        .trim_start_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .skip(1)
        .rev()
    {
        dir = format!("{dir}/{part}");
        let _ = Command::new("mmd")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &img, &format!("::{dir}")])
            .output();
    }
    sh(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i", &img])
        .arg(&src)
        .arg(format!("::{path}")))?;
    Ok(())
}

fn boot(disk: &Path, log: &Path) -> Result<(String, f64)> {
    let t = Instant::now();
    let out = Command::new("timeout")
        .args([
            "120",
            "qemu-system-aarch64",
            "-accel",
            "tcg",
            "-M",
            "virt",
            "-cpu",
            "cortex-a57",
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
            "-bios",
            UBOOT,
            "-drive",
        ])
        .arg(format!("if=none,file={},format=raw,id=d0", disk.display()))
        .args(["-device", "virtio-blk-device,drive=d0"])
        .output()?;
    let serial = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(log, &serial)?;
    Ok((serial, t.elapsed().as_secs_f64()))
}

fn flag(disk: &Path, dir: &Path) -> Result<String> {
    let fat = dir.join("fat.now");
    sh(Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", fat.display()))
        .args(["bs=512", "skip=2048", "status=none"]))?;
    let out = sh(Command::new("mtype").env("MTOOLS_SKIP_CHECK", "1").args([
        "-i",
        &fat.display().to_string(),
        "::/migrd/oneshot.txt",
    ]))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
#[ignore = "lab: needs qemu-system-arm, u-boot-qemu, u-boot-tools (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn uboot_runs_the_oneshot_once_then_the_original_script() -> Result<()> {
    let logs = paths::log_dir("uboot-oneshot-script")?;
    let original = script_image(
        "echo ORIGINAL-BOOT-SCRIPT\npoweroff\n",
        ImageArch::Arm64,
        "board",
        0,
    );
    let facts = UbootFacts {
        filesystems: vec![BootFs {
            mount_point: "/boot".into(),
            fstype: "vfat".into(),
            files: vec!["/boot.scr".into()],
            partuuid: None,
        }],
        env: EnvState::NotConfigured,
        arch: ImageArch::Arm64,
    };
    let flow = detect(&facts)?;
    let changes = arm(
        &flow,
        &facts,
        &ArmInputs {
            kernel: Path::new("/boot/vmlinuz"),
            initramfs: Path::new("/boot/initrd"),
            cmdline: "console=ttyAMA0",
            original_script: Some(&original),
        },
    )?;
    let fat = logs.join("fat.img");
    let _ = std::fs::remove_file(&fat);
    sh(Command::new("mkfs.vfat")
        .args(["-C", "-n", "BOOT"])
        .arg(&fat)
        .arg("16384"))?;
    put(&fat, "/boot.scr", &original, &logs)?;
    for c in &changes {
        let in_fs = |p: &Path| p.strip_prefix("/boot").map(|r| format!("/{}", r.display()));
        match c {
            Change::MkDir { .. } => {}
            // A stand-in for the kernel and ramdisk: booti refuses it.
            Change::Copy { to, .. } => put(&fat, &in_fs(to)?, &[0u8; 4096], &logs)?,
            Change::Write { path, bytes, .. } => put(&fat, &in_fs(path)?, bytes, &logs)?,
            other => anyhow::bail!("unexpected change {other:?}"),
        }
    }
    let disk = logs.join("disk.img");
    std::fs::File::create(&disk)?.set_len(20 << 20)?;
    let mut sf = Command::new("sfdisk");
    sf.arg("-q").arg(&disk).stdin(std::process::Stdio::piped());
    let mut child = sf.spawn()?;
    std::io::Write::write_all(
        child.stdin.as_mut().context("sfdisk stdin")?,
        b"label: dos\nstart=2048, type=c, bootable\n",
    )?;
    ensure!(child.wait()?.success(), "sfdisk");
    sh(Command::new("dd")
        .arg(format!("if={}", fat.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=512", "seek=2048", "conv=notrunc", "status=none"]))?;
    ensure!(flag(&disk, &logs)? == "migrd_oneshot=1\n");

    let (s1, t1) = boot(&disk, &logs.join("boot1.log"))?;
    eprintln!("boot 1: {t1:.1}s");
    ensure!(
        s1.contains("migrd: one-shot flag cleared; booting the migration ramdisk"),
        "boot 1:\n{s1}"
    );
    ensure!(
        s1.contains("Bad Linux ARM64 Image magic"),
        "booti was not reached:\n{s1}"
    );
    ensure!(
        s1.contains("ORIGINAL-BOOT-SCRIPT"),
        "no fallback to the original script:\n{s1}"
    );
    ensure!(
        flag(&disk, &logs)?.starts_with("migrd_oneshot=0\n"),
        "flag after boot 1: {:?}",
        flag(&disk, &logs)?
    );

    let (s2, t2) = boot(&disk, &logs.join("boot2.log"))?;
    eprintln!("boot 2: {t2:.1}s");
    ensure!(
        !s2.contains("one-shot flag cleared"),
        "the one-shot ran twice:\n{s2}"
    );
    ensure!(s2.contains("ORIGINAL-BOOT-SCRIPT"), "boot 2:\n{s2}");
    Ok(())
}
