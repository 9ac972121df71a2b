//! How the board boots, from the files on its boot filesystems, and where
//! migrd's one-shot script can run first.

use super::env::Env;
use super::script::ImageArch;
use std::path::PathBuf;

/// The files distro boot looks for, in its order, per prefix.
pub const BOOT_FILES: [&str; 3] = ["extlinux/extlinux.conf", "boot.scr.uimg", "boot.scr"];
/// Distro boot's `boot_prefixes`.
pub const PREFIXES: [&str; 2] = ["/", "/boot/"];

/// One filesystem U-Boot may read boot files from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFs {
    /// Where it is mounted on the running system (`/boot`, `/`).
    pub mount_point: PathBuf,
    /// Its type (`vfat`, `ext4`, ...).
    pub fstype: String,
    /// Boot files present, as paths inside the filesystem (`/boot.scr`,
    /// `/boot/extlinux/extlinux.conf`, `/uEnv.txt`).
    pub files: Vec<String>,
    /// The PARTUUID of its partition, if known (the ramdisk finds the
    /// partition by it to restore a file in the restore-first mode).
    pub partuuid: Option<String>,
}

/// What the U-Boot environment says, when `/etc/fw_env.config` exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvState {
    /// No fw_env.config.
    NotConfigured,
    /// Configured but not readable (the reason).
    Unreadable(String),
    /// Read and CRC-checked.
    Read(Env),
}

/// Everything the U-Boot strategy needs to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UbootFacts {
    /// Candidate boot filesystems, most likely first (`/boot/firmware`,
    /// `/boot`, `/`).
    pub filesystems: Vec<BootFs>,
    /// The U-Boot environment.
    pub env: EnvState,
    /// The kernel's architecture.
    pub arch: ImageArch,
}

impl UbootFacts {
    /// Whether the board counts boots (`bootlimit` in its environment).
    pub fn counts_boots(&self) -> bool {
        matches!(&self.env, EnvState::Read(e) if e.get("bootlimit").is_some())
    }
}

/// Where migrd's script goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The board boots a script: migrd's script takes its place and runs
    /// the original (kept next to it) when not booting the ramdisk.
    ReplaceScript {
        /// Index into [`UbootFacts::filesystems`].
        fs: usize,
        /// The script, inside the filesystem (`/boot.scr`).
        script: String,
    },
    /// The board boots `/boot/extlinux/extlinux.conf`: `/boot.scr` runs
    /// before it, and when migrd's script returns, distro boot goes on to
    /// extlinux.conf as before.
    BeforeExtlinux {
        /// Index into [`UbootFacts::filesystems`].
        fs: usize,
        /// The extlinux.conf, inside the filesystem.
        extlinux: String,
    },
}

impl Flow {
    /// Index of the filesystem.
    pub fn fs(&self) -> usize {
        match self {
            Flow::ReplaceScript { fs, .. } | Flow::BeforeExtlinux { fs, .. } => *fs,
        }
    }
}

/// Why no self-clearing one-shot boot is possible.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UbootError {
    /// extlinux.conf at the first place distro boot looks.
    #[error(
        "U-Boot boots {path} on {mount}: distro boot reads /extlinux/extlinux.conf before any boot script, \
         so no file migrd adds would run first, and changing extlinux.conf would not undo itself \
         (a failed ramdisk would boot again and again). Use --boot-via kexec, or move extlinux.conf \
         to /boot/extlinux/ on that filesystem"
    )]
    ExtlinuxFirst {
        /// The file as the device sees it.
        path: String,
        /// Its filesystem.
        mount: String,
    },
    /// A filesystem U-Boot cannot write.
    #[error(
        "U-Boot boots from {mount}, a {fstype} filesystem: U-Boot can only write FAT and ext2/3/4, so it could not \
         clear the one-shot flag before booting the ramdisk. Use --boot-via kexec"
    )]
    NotWritable {
        /// The filesystem.
        mount: String,
        /// Its type.
        fstype: String,
    },
    /// Only uEnv.txt: a board-specific bootcmd, not distro boot.
    #[error(
        "found {path} but no extlinux.conf or boot.scr: this board's own U-Boot bootcmd reads uEnv.txt, \
         and migrd cannot make a one-shot entry there that clears itself. Use --boot-via kexec"
    )]
    UEnvOnly {
        /// The uEnv.txt.
        path: String,
    },
    /// Nothing U-Boot boots.
    #[error(
        "no U-Boot boot files (extlinux/extlinux.conf, boot.scr, boot.scr.uimg under / or /boot/) on {searched}; \
         this device does not boot through U-Boot's distro boot. Use another --boot-via"
    )]
    NotFound {
        /// The filesystems searched.
        searched: String,
    },
}

fn uboot_can_write(fstype: &str) -> bool {
    matches!(fstype, "vfat" | "msdos" | "fat" | "ext2" | "ext3" | "ext4")
}

/// The first boot file distro boot would take on `fs`.
fn first_boot_file(fs: &BootFs) -> Option<String> {
    PREFIXES
        .iter()
        .flat_map(|p| BOOT_FILES.iter().map(move |f| format!("{p}{f}")))
        .find(|path| fs.files.iter().any(|f| f == path))
}

/// Decide where migrd's one-shot script goes, or why it cannot.
pub fn detect(facts: &UbootFacts) -> Result<Flow, UbootError> {
    for (i, fs) in facts.filesystems.iter().enumerate() {
        let Some(first) = first_boot_file(fs) else {
            continue;
        };
        let mount = fs.mount_point.display().to_string();
        if !uboot_can_write(&fs.fstype) {
            return Err(UbootError::NotWritable {
                mount,
                fstype: fs.fstype.clone(),
            });
        }
        return if first == "/extlinux/extlinux.conf" {
            Err(UbootError::ExtlinuxFirst {
                path: fs
                    .mount_point
                    .join("extlinux/extlinux.conf")
                    .display()
                    .to_string(),
                mount,
            })
        } else if first.ends_with("extlinux.conf") {
            Ok(Flow::BeforeExtlinux {
                fs: i,
                extlinux: first,
            })
        } else {
            Ok(Flow::ReplaceScript {
                fs: i,
                script: first,
            })
        };
    }
    if let Some((fs, f)) = facts.filesystems.iter().find_map(|fs| {
        fs.files
            .iter()
            .find(|f| f.ends_with("uEnv.txt"))
            .map(|f| (fs, f))
    }) {
        return Err(UbootError::UEnvOnly {
            path: fs
                .mount_point
                .join(f.trim_start_matches('/'))
                .display()
                .to_string(),
        });
    }
    Err(UbootError::NotFound {
        searched: facts
            .filesystems
            .iter()
            .map(|f| f.mount_point.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(mp: &str, fstype: &str, files: &[&str]) -> BootFs {
        BootFs {
            mount_point: PathBuf::from(mp),
            fstype: fstype.into(),
            files: files.iter().map(|s| s.to_string()).collect(),
            partuuid: None,
        }
    }

    fn facts(filesystems: Vec<BootFs>) -> UbootFacts {
        UbootFacts {
            filesystems,
            env: EnvState::NotConfigured,
            arch: ImageArch::Arm64,
        }
    }

    #[test]
    fn script_is_replaced_where_distro_boot_finds_it() {
        let f = facts(vec![fs("/boot", "vfat", &["/boot.scr", "/uEnv.txt"])]);
        assert_eq!(
            detect(&f),
            Ok(Flow::ReplaceScript {
                fs: 0,
                script: "/boot.scr".into()
            })
        );
        // boot.scr.uimg is taken before boot.scr; "/" before "/boot/".
        let f = facts(vec![fs("/", "ext4", &["/boot/boot.scr", "/boot.scr.uimg"])]);
        assert_eq!(
            detect(&f),
            Ok(Flow::ReplaceScript {
                fs: 0,
                script: "/boot.scr.uimg".into()
            })
        );
    }

    #[test]
    fn extlinux_under_boot_is_preceded_by_a_root_script() {
        let f = facts(vec![
            fs("/boot/firmware", "vfat", &[]),
            fs("/", "ext4", &["/boot/extlinux/extlinux.conf"]),
        ]);
        assert_eq!(
            detect(&f),
            Ok(Flow::BeforeExtlinux {
                fs: 1,
                extlinux: "/boot/extlinux/extlinux.conf".into()
            })
        );
    }

    #[test]
    fn refusals_explain_and_offer_a_way_out() {
        let e = detect(&facts(vec![fs(
            "/boot",
            "vfat",
            &["/extlinux/extlinux.conf", "/boot.scr"],
        )]))
        .unwrap_err();
        assert!(matches!(e, UbootError::ExtlinuxFirst { .. }));
        assert!(
            e.to_string().contains("/boot/extlinux/extlinux.conf")
                && e.to_string().contains("kexec")
        );
        let e = detect(&facts(vec![fs("/", "btrfs", &["/boot/boot.scr"])])).unwrap_err();
        assert!(e.to_string().contains("btrfs"), "{e}");
        let e = detect(&facts(vec![fs("/", "ext4", &["/boot/uEnv.txt"])])).unwrap_err();
        assert_eq!(
            e,
            UbootError::UEnvOnly {
                path: "/boot/uEnv.txt".into()
            }
        );
        let e = detect(&facts(vec![fs("/boot", "vfat", &[]), fs("/", "ext4", &[])])).unwrap_err();
        assert!(e.to_string().contains("/boot, /"), "{e}");
    }

    #[test]
    fn boot_counting_is_read_from_the_environment() {
        let mut f = facts(vec![]);
        assert!(!f.counts_boots());
        let mut env = Env::new();
        env.set("bootlimit", "3").unwrap();
        f.env = EnvState::Read(env);
        assert!(f.counts_boots());
    }
}
