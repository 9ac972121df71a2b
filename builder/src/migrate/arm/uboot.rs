//! U-Boot distro boot: migrd's boot script runs first once, clears its own
//! flag with `fatwrite`/`ext4write` and boots the ramdisk (see
//! `migrd_bootloaders::uboot`). Self-clearing, so stage 2 has nothing to
//! disarm.

use super::{Armer, Ctx, Prepared};
use crate::probe::mounts::{self, Mount};
use crate::ramdisk::Built;
use anyhow::{bail, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::uboot::detect::{EnvState, BOOT_FILES, PREFIXES};
use migrd_bootloaders::uboot::env::{active_copy, Copy as EnvCopy, Env};
use migrd_bootloaders::uboot::script::ImageArch;
use migrd_bootloaders::uboot::{self, fw_config, ArmInputs, BootFs, Flow, UbootFacts};
use migrd_bootloaders::StrategyKind;
use migrd_init::arch::Arch;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where boot filesystems are mounted, most specific first.
const MOUNT_POINTS: [&str; 3] = ["/boot/firmware", "/boot", "/"];

/// Stage 1 of the U-Boot strategy.
#[derive(Default)]
pub struct UbootArmer {
    decided: Option<(UbootFacts, Flow, Option<Vec<u8>>)>,
}

/// The boot files on the filesystem mounted at `mp`, as U-Boot sees them
/// (paths inside that filesystem). `other` are the other candidate mount
/// points: their files are not on this filesystem.
fn boot_fs(root: &Path, mp: &str, fstype: &str, other: &[&str]) -> BootFs {
    let base = root.join(mp.trim_start_matches('/'));
    let mut files = Vec::new();
    for prefix in PREFIXES {
        let device_dir = format!("{}{prefix}", mp.trim_end_matches('/'));
        if other.iter().any(|o| {
            *o != mp && (device_dir == format!("{o}/") || device_dir.starts_with(&format!("{o}/")))
        }) {
            continue; // that folder is another filesystem's mount point
        }
        for f in BOOT_FILES.iter().chain(&["uEnv.txt"]) {
            let in_fs = format!("{prefix}{f}");
            if base.join(in_fs.trim_start_matches('/')).is_file() {
                files.push(in_fs);
            }
        }
    }
    BootFs {
        mount_point: PathBuf::from(mp),
        fstype: fstype.to_string(),
        files,
    }
}

fn filesystems(root: &Path, mounts: &[Mount]) -> Vec<BootFs> {
    let present: Vec<&str> = MOUNT_POINTS
        .into_iter()
        .filter(|mp| *mp == "/" || mounts::mounted_at(mounts, mp).is_some())
        .collect();
    present
        .iter()
        .map(|mp| {
            let fstype = mounts::mounted_at(mounts, mp)
                .map(|m| m.fstype.as_str())
                .unwrap_or("unknown");
            boot_fs(root, mp, fstype, &present)
        })
        .collect()
}

fn read_copy(root: &Path, loc: &fw_config::EnvLocation, redundant: bool) -> Result<EnvCopy> {
    let path = root.join(loc.device.trim_start_matches('/'));
    let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", loc.device))?;
    let start = if loc.offset < 0 {
        f.seek(SeekFrom::End(loc.offset))?
    } else {
        f.seek(SeekFrom::Start(loc.offset.unsigned_abs()))?
    };
    let mut buf = vec![0; loc.size];
    f.read_exact(&mut buf)
        .with_context(|| format!("reading {} bytes at {start} of {}", loc.size, loc.device))?;
    Ok(Env::decode(&buf, redundant, &loc.device)?)
}

/// The U-Boot environment through `/etc/fw_env.config`, as far as it can be
/// read (reported, never needed for arming).
fn environment(root: &Path) -> EnvState {
    let cfg = root.join("etc/fw_env.config");
    let Ok(text) = std::fs::read_to_string(&cfg) else {
        return EnvState::NotConfigured;
    };
    let conf = match fw_config::parse(&text, "/etc/fw_env.config") {
        Ok(c) => c,
        Err(e) => return EnvState::Unreadable(e.to_string()),
    };
    let copies: Vec<Result<EnvCopy, String>> = conf
        .copies
        .iter()
        .map(|l| read_copy(root, l, conf.redundant()).map_err(|e| format!("{e:#}")))
        .collect();
    let ok = |i: usize| copies.get(i).and_then(|c| c.as_ref().ok());
    match active_copy(ok(0), ok(1)).and_then(ok) {
        Some(c) => EnvState::Read(c.env.clone()),
        None => EnvState::Unreadable(
            copies
                .iter()
                .filter_map(|c| c.as_ref().err().cloned())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// What the U-Boot strategy knows about the device under `root`.
pub fn facts(root: &Path, arch: Option<Arch>) -> Result<UbootFacts> {
    let arch = match arch {
        Some(Arch::Aarch64) => ImageArch::Arm64,
        Some(Arch::Armv7) => ImageArch::Arm,
        other => bail!(
            "the U-Boot strategy boots ARM kernels only, and this kernel is {}",
            other
                .map(|a| a.to_string())
                .unwrap_or_else(|| "of an unknown architecture".into())
        ),
    };
    let mounts = mounts::read(root);
    Ok(UbootFacts {
        filesystems: filesystems(root, &mounts),
        env: environment(root),
        arch,
    })
}

impl Armer for UbootArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Uboot
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        let f = facts(ctx.root, ctx.facts.arch)?;
        let flow = uboot::detect(&f)?;
        let original = match &flow {
            Flow::ReplaceScript { fs, script } => {
                let p = f.filesystems[*fs]
                    .mount_point
                    .join(script.trim_start_matches('/'));
                Some(
                    std::fs::read(ctx.on(&p))
                        .with_context(|| format!("reading {}", p.display()))?,
                )
            }
            Flow::BeforeExtlinux { .. } => None,
        };
        self.decided = Some((f, flow, original));
        Ok(Prepared::default())
    }

    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>> {
        let (f, flow, original) = self
            .decided
            .as_ref()
            .context("internal: U-Boot strategy used before prepare")?;
        let kernel = ctx.device_path(&ctx.kernel.image);
        let initramfs = ctx.device_path(&built.initramfs);
        Ok(uboot::arm(
            flow,
            f,
            &ArmInputs {
                kernel: &kernel,
                initramfs: &initramfs,
                cmdline: &built.cmdline,
                original_script: original.as_deref(),
            },
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mountinfo(root: &Path, lines: &[(&str, &str)]) {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (mp, fs))| format!("{i} 1 179:{i} / {mp} rw - {fs} /dev/mmcblk0p{i} rw\n"))
            .collect();
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::write(root.join("proc/self/mountinfo"), text).unwrap();
    }

    #[test]
    fn separate_fat_boot_with_boot_scr_is_replaced_there() {
        let d = tempfile::tempdir().unwrap();
        mountinfo(d.path(), &[("/", "ext4"), ("/boot", "vfat")]);
        std::fs::create_dir_all(d.path().join("boot")).unwrap();
        std::fs::write(d.path().join("boot/boot.scr"), b"x").unwrap();
        let f = facts(d.path(), Some(Arch::Aarch64)).unwrap();
        assert_eq!(f.filesystems.len(), 2);
        assert_eq!(f.filesystems[0].files, vec!["/boot.scr".to_string()]);
        // "/"'s /boot/ prefix is the other filesystem: not counted twice.
        assert!(f.filesystems[1].files.is_empty());
        assert_eq!(
            uboot::detect(&f).unwrap(),
            Flow::ReplaceScript {
                fs: 0,
                script: "/boot.scr".into()
            }
        );
        assert_eq!(f.env, EnvState::NotConfigured);
    }

    #[test]
    fn environment_is_read_through_fw_env_config_at_an_offset() {
        let d = tempfile::tempdir().unwrap();
        mountinfo(d.path(), &[("/", "ext4")]);
        let mut env = Env::new();
        env.set("bootlimit", "3").unwrap();
        let mut disk = vec![0u8; 0x3000];
        disk[0x1000..0x2000].copy_from_slice(&env.encode(0x1000, None).unwrap());
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("dev/mmcblk0"), &disk).unwrap();
        std::fs::write(
            d.path().join("etc/fw_env.config"),
            "/dev/mmcblk0 -0x2000 0x1000\n",
        )
        .unwrap();
        let f = facts(d.path(), Some(Arch::Armv7)).unwrap();
        assert!(f.counts_boots(), "{:?}", f.env);
        std::fs::write(
            d.path().join("etc/fw_env.config"),
            "/dev/mmcblk0 0 0x1000\n",
        )
        .unwrap();
        let f = facts(d.path(), Some(Arch::Armv7)).unwrap();
        assert!(
            matches!(&f.env, EnvState::Unreadable(e) if e.contains("CRC32")),
            "{:?}",
            f.env
        );
    }

    #[test]
    fn x86_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = facts(d.path(), Some(Arch::X86_64)).unwrap_err().to_string();
        assert!(e.contains("ARM kernels only"), "{e}");
    }
}
