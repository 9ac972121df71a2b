//! What both Raspberry Pi strategies read from the device: the firmware
//! partition, config.txt, the model, what the firmware boots now, and
//! whether the ramdisk can use the firmware's kernel file.

use super::Ctx;
use anyhow::{bail, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::rpi::{CurrentBoot, Inputs, Model};
use std::path::{Path, PathBuf};

/// The firmware partition as the strategies see it.
#[derive(Clone, Debug)]
pub struct RpiBoot {
    /// Where it is mounted on the device (`/boot/firmware`, `/boot`).
    pub boot_dir: PathBuf,
    /// config.txt's text.
    pub config_txt: String,
    /// The model.
    pub model: Model,
    /// What the firmware boots now.
    pub current: CurrentBoot,
    /// The running kernel's image (device path), when the firmware's
    /// kernel file is not that kernel (then it is copied for the ramdisk).
    pub kernel_copy: Option<PathBuf>,
    /// PARTUUID of the firmware partition, if known.
    pub partuuid: Option<String>,
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

impl RpiBoot {
    /// Read the device (changes nothing).
    pub fn read(ctx: &Ctx) -> Result<RpiBoot> {
        let f = ctx.facts;
        let rpi = f.boot.rpi.as_ref().context(
            "this is not a Raspberry Pi booted by its firmware (no config.txt partition found); pick another --boot-via",
        )?;
        let model_str = f.board.model.as_deref().unwrap_or_default();
        let model = Model::from_dt_model(model_str).with_context(|| {
            format!("unknown Raspberry Pi model '{model_str}' (device-tree model); cannot tell which config.txt sections apply")
        })?;
        let boot_dir = PathBuf::from(&rpi.boot_dir);
        let on_boot = ctx.on(&boot_dir);
        let cfg_path = on_boot.join("config.txt");
        let config_txt = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!(
                "reading {}: the firmware's config.txt is needed to arm a Raspberry Pi boot",
                ctx.device_path(&cfg_path).display()
            )
        })?;
        let running_64bit = f.kernel_machine.as_deref() == Some("aarch64");
        let include = |name: &str| std::fs::read_to_string(on_boot.join(name)).ok();
        let current = CurrentBoot::read(&config_txt, model, running_64bit, &include)?;
        let fw_kernel = current.path(&on_boot, &current.kernel);
        // Without /boot/vmlinuz-<release> (Raspberry Pi OS before bookworm)
        // the firmware's kernel file is the running kernel.
        let kernel_copy = if fw_kernel.is_file()
            && (!ctx.kernel.image.is_file() || same_bytes(&fw_kernel, &ctx.kernel.image))
        {
            None
        } else if ctx.kernel.image.is_file() {
            // The firmware boots another file (or none we can find): boot
            // the running kernel, whose modules the ramdisk carries.
            Some(ctx.device_path(&ctx.kernel.image))
        } else {
            bail!(
                "neither the firmware's kernel {} nor the running kernel's image {} is readable",
                ctx.device_path(&fw_kernel).display(),
                ctx.device_path(&ctx.kernel.image).display()
            );
        };
        let partuuid = [&f.disks.boot_firmware, &f.disks.boot]
            .into_iter()
            .flatten()
            .find(|m| m.mount_point == rpi.boot_dir)
            .and_then(|m| m.partuuid.clone());
        Ok(RpiBoot {
            boot_dir,
            config_txt,
            model,
            current,
            kernel_copy,
            partuuid,
        })
    }

    /// The strategy inputs for the built ramdisk (`initramfs` as a device
    /// path: the journal roots every path).
    pub fn inputs<'a>(&'a self, initramfs: &'a Path, cmdline: &'a str) -> Inputs<'a> {
        Inputs {
            boot_dir: &self.boot_dir,
            config_txt: &self.config_txt,
            current: &self.current,
            initramfs,
            cmdline,
            kernel_copy: self.kernel_copy.as_deref(),
        }
    }
}

/// Refuse before any change when the copies do not fit on the firmware
/// partition (FAT partitions of 256–512 MiB are common).
pub fn check_space(ctx: &Ctx, boot_dir: &Path, changes: &[Change]) -> Result<()> {
    let need: u64 = changes
        .iter()
        .map(|c| match c {
            Change::Copy { from, .. } => std::fs::metadata(ctx.on(from))
                .map(|m| m.len())
                .unwrap_or(0),
            Change::Write { bytes, .. } => bytes.len() as u64,
            _ => 0,
        })
        .sum::<u64>()
        + (1 << 20);
    let dir = ctx.on(boot_dir);
    let st = nix::sys::statvfs::statvfs(&dir)
        .with_context(|| format!("reading free space on {}", boot_dir.display()))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < need {
        bail!(
            "the firmware partition {} has {free} bytes free; the ramdisk and its files need {need}. \
             Free space there (old kernels, backups) or use a smaller payload placement",
            boot_dir.display()
        );
    }
    Ok(())
}

/// A Raspberry Pi device made from a fixture tree, for the strategies'
/// tests.
#[cfg(test)]
pub mod testing {
    use crate::commands::migrate_args::MigrateArgs;
    use crate::migrate::kernel::RunningKernel;
    use crate::probe::Facts;
    use clap::Parser;
    use std::path::{Path, PathBuf};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: MigrateArgs,
    }

    /// A copy of `tests/fixtures/<name>` with the boot partition's kernel
    /// file, the running kernel image, the ramdisk and a PARTUUID link.
    pub struct Device {
        /// Holds the tree.
        pub dir: tempfile::TempDir,
        /// The probe's facts.
        pub facts: Facts,
        /// The running kernel.
        pub kernel: RunningKernel,
        /// Parsed default migrate flags.
        pub args: MigrateArgs,
    }

    fn copy_tree(from: &Path, to: &Path) {
        for e in walkdir::WalkDir::new(from) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(from).unwrap();
            let dst = to.join(rel);
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&dst).unwrap();
            } else if e.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dst).unwrap();
            } else {
                std::fs::copy(e.path(), &dst).unwrap();
            }
        }
    }

    /// Build the device; `boot` is the firmware partition's mount point,
    /// `fw_kernel` the kernel file the firmware loads (given the same
    /// bytes as the running kernel when `same_kernel`).
    pub fn device(name: &str, boot: &str, fw_kernel: &str, same_kernel: bool) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        copy_tree(&fx, r);
        let release = std::fs::read_to_string(r.join("proc/sys/kernel/osrelease"))
            .unwrap()
            .trim()
            .to_string();
        let image = r.join("boot").join(format!("vmlinuz-{release}"));
        std::fs::write(&image, b"running kernel").unwrap();
        let b = r.join(boot.trim_start_matches('/'));
        let fw = if same_kernel {
            &b"running kernel"[..]
        } else {
            b"older kernel"
        };
        std::fs::write(b.join(fw_kernel), fw).unwrap();
        std::fs::create_dir_all(r.join("var/lib/migrd")).unwrap();
        std::fs::write(r.join("var/lib/migrd/initramfs.img"), b"ramdisk bytes").unwrap();
        std::fs::create_dir_all(r.join("dev/disk/by-partuuid")).unwrap();
        for n in ["1", "2"] {
            let link = r.join(format!("dev/disk/by-partuuid/4e5f6a7b-0{n}"));
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("../../mmcblk0p{n}"), link).unwrap();
            }
        }
        let facts = crate::probe::probe(r);
        let kernel = RunningKernel {
            release,
            image,
            modules_dir: r.join("lib/modules"),
            config: None,
            consoles: vec!["console=serial0,115200".into()],
        };
        let args = Cli::parse_from(["migrd"]).a;
        Device {
            dir,
            facts,
            kernel,
            args,
        }
    }

    /// A copy of `tests/fixtures/<name>` as it is: no
    /// `/boot/vmlinuz-<release>` (Raspberry Pi OS before bookworm), the
    /// running kernel found the way `migrd migrate` finds it for the Pi
    /// strategies, plus the ramdisk and `/dev/vcio` (a Raspberry Pi kernel).
    pub fn firmware_only(name: &str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        copy_tree(&fx, r);
        std::fs::write(r.join("dev/vcio"), b"").unwrap();
        std::fs::create_dir_all(r.join("var/lib/migrd")).unwrap();
        std::fs::write(r.join("var/lib/migrd/initramfs.img"), b"ramdisk bytes").unwrap();
        let kernel =
            crate::migrate::kernel::running_for(r, migrd_bootloaders::StrategyKind::RpiConfig)
                .unwrap();
        Device {
            facts: crate::probe::probe(r),
            kernel,
            args: Cli::parse_from(["migrd"]).a,
            dir,
        }
    }

    impl Device {
        /// The strategy context.
        pub fn ctx(&self) -> super::Ctx<'_> {
            super::Ctx {
                root: self.dir.path(),
                facts: &self.facts,
                kernel: &self.kernel,
                args: &self.args,
            }
        }

        /// A file under the root, as text.
        pub fn text(&self, p: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(p.trim_start_matches('/')))
                .unwrap_or_else(|e| format!("<{e}>"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rpi_config::ConfigArmer;
    use super::super::rpi_tryboot::TrybootArmer;
    use super::super::Armer;
    use super::testing::firmware_only;
    use super::*;

    /// As in bootloaders/tests/golden_rpi.rs, so the files compare.
    const CMDLINE: &str = "console=serial0,115200 console=tty1 rootfstype=ramfs panic=10";
    const RAMDISK: &str = "/var/lib/migrd/work/ramdisk/initramfs.img";

    fn golden(case: &str, strategy: &str, file: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../bootloaders/tests/golden/rpi")
            .join(case)
            .join(strategy)
            .join(file);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn written(changes: &[Change], name: &str) -> Vec<u8> {
        changes
            .iter()
            .find_map(|c| match c {
                Change::Write { path, bytes, .. } if path.ends_with(name) => Some(bytes.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} not written: {changes:?}"))
    }

    #[test]
    fn without_vmlinuz_both_pi_strategies_boot_the_firmwares_kernel_file() {
        for (name, kernel) in [
            ("rpi4-bullseye", "kernel7l.img"),
            ("rpi4-bullseye-arm64", "kernel8.img"),
        ] {
            let d = firmware_only(name);
            // What failed before the Pi armers ran.
            assert!(crate::migrate::kernel::running(d.dir.path()).is_err());
            let ctx = d.ctx();
            let boot = RpiBoot::read(&ctx).unwrap();
            assert_eq!(boot.current.kernel, kernel, "{name}");
            assert_eq!(
                boot.kernel_copy, None,
                "{name}: no copy of a missing vmlinuz"
            );

            let mut c = ConfigArmer::default();
            c.prepare(&ctx).unwrap();
            let ch = c.changes_for(&ctx, Path::new(RAMDISK), CMDLINE).unwrap();
            assert!(
                !ch.iter().any(
                    |c| matches!(c, Change::Copy { to, .. } if to.ends_with("migrd-kernel.img"))
                ),
                "{name}: {ch:?}"
            );
            let cfg = written(&ch, "config.txt");
            assert!(
                String::from_utf8_lossy(&cfg).contains(&format!("\nkernel={kernel}\n")),
                "{name}"
            );
            assert_eq!(cfg, golden(name, "config", "config.txt"), "{name}");
            assert_eq!(
                written(&ch, "migrd-cmdline.txt"),
                golden(name, "config", "migrd-cmdline.txt")
            );

            let mut t = TrybootArmer::default();
            t.prepare(&ctx).unwrap();
            let ch = t.changes_for(&ctx, Path::new(RAMDISK), CMDLINE).unwrap();
            assert_eq!(
                written(&ch, "tryboot.txt"),
                golden(name, "tryboot", "tryboot.txt"),
                "{name}"
            );
        }
    }
}
