//! UEFI `BootNext`: the running kernel (EFI stub) and the ramdisk on the
//! ESP, a new Boot#### entry, BootNext set last. The firmware clears
//! BootNext itself; stage 2 deletes the entry in its disarm step.

use super::{Armer, Ctx, Prepared};
use crate::probe::disks::{self, MountedOn};
use crate::probe::{mounts, rootfs};
use crate::ramdisk::Built;
use anyhow::{bail, Context, Result};
use migrd_bootloaders::change::Change;
use migrd_bootloaders::efi::{self, ArmInputs, EfiFacts, Esp};
use migrd_bootloaders::StrategyKind;
use migrd_init::efi::load_option::{HardDrive, PartSignature};
use migrd_init::efi::vars::{EfiVars, DEFAULT_DIR};
use migrd_init::plan::DisarmAction;
use std::io::Read;
use std::path::Path;

/// Where distributions mount the ESP.
pub const ESP_MOUNTS: [&str; 2] = ["/boot/efi", "/efi"];

/// Stage 1 of the BootNext strategy.
#[derive(Default)]
pub struct EfiArmer {
    facts: Option<EfiFacts>,
}

/// The Hard Drive node of a partition from its PARTUUID (GPT GUID or MBR
/// `SIGNATURE-NN`) and its sysfs start and size (512-byte sectors), in the
/// disk's logical blocks.
pub fn hd_node(
    partuuid: &str,
    partition: u32,
    start: u64,
    size: u64,
    lbs: u64,
) -> Result<HardDrive> {
    let per = (lbs / 512).max(1);
    let signature = match partuuid.split_once('-') {
        Some((sig, nn)) if sig.len() == 8 && nn.len() == 2 => PartSignature::Mbr(
            u32::from_str_radix(sig, 16)
                .with_context(|| format!("PARTUUID {partuuid}: MBR signature is not hex"))?,
        ),
        _ => PartSignature::Gpt(partuuid.parse()?),
    };
    Ok(HardDrive {
        partition,
        start: start / per,
        size: size / per,
        signature,
    })
}

fn sys_u64(dir: &Path, rel: &str) -> Result<u64> {
    rootfs::read_trimmed(dir, rel)
        .with_context(|| format!("reading {}/{rel}", dir.display()))?
        .parse()
        .with_context(|| format!("{}/{rel} is not a number", dir.display()))
}

/// The ESP: the vfat mounted at /boot/efi or /efi, its partition and its
/// free space.
fn esp(root: &Path) -> Result<Option<Esp>> {
    let all = mounts::read(root);
    let Some(m) = ESP_MOUNTS
        .iter()
        .find_map(|p| mounts::mounted_at(&all, p).filter(|m| m.fstype == "vfat"))
    else {
        return Ok(None);
    };
    let on: MountedOn = disks::mounted_on(root, &all, &m.mount_point)
        .with_context(|| format!("cannot find the partition under {}", m.mount_point))?;
    let (part, disk) = match (on.layers.first(), on.disks.as_slice()) {
        (Some(p), [d]) if p.kind == "partition" => (p.name.clone(), d.clone()),
        _ => bail!(
            "the ESP at {} is not a plain partition of one disk ({:?})",
            m.mount_point,
            on.layers
        ),
    };
    let partuuid = on.partuuid.clone().with_context(|| {
        format!(
            "cannot tell the PARTUUID of the ESP ({part}); /dev/disk/by-partuuid has no link for it"
        )
    })?;
    let pdir = rootfs::join(root, &Path::new("sys/class/block").join(&part));
    let ddir = rootfs::join(root, &Path::new("sys/block").join(&disk));
    let lbs = sys_u64(&ddir, "queue/logical_block_size").unwrap_or(512);
    let hd = hd_node(
        &partuuid,
        sys_u64(&pdir, "partition")? as u32,
        sys_u64(&pdir, "start")?,
        sys_u64(&pdir, "size")?,
        lbs,
    )?;
    let mount = Path::new(&m.mount_point).to_path_buf();
    let st = nix::sys::statvfs::statvfs(&rootfs::join(root, &mount))
        .with_context(|| format!("statvfs {}", m.mount_point))?;
    Ok(Some(Esp {
        mount,
        hd,
        free_bytes: st.blocks_available() as u64 * st.fragment_size() as u64,
    }))
}

/// Existing Boot#### numbers, and BootCurrent with its entry's path.
type FirmwareEntries = (Vec<u16>, Option<(u16, String)>);

/// The firmware's boot entries and BootCurrent's path from efivarfs.
fn firmware(root: &Path) -> Result<FirmwareEntries> {
    let vars = EfiVars::new(rootfs::join(root, Path::new(DEFAULT_DIR)));
    let numbers = vars.boot_numbers()?;
    let current = match vars.boot_current()? {
        Some(n) => vars
            .read(&migrd_init::efi::vars::boot_var(n))?
            .and_then(|v| migrd_init::efi::load_option::LoadOption::decode(&v.data).ok())
            .map(|o| (n, o.path_string())),
        None => None,
    };
    Ok((numbers, current))
}

/// The running kernel must be a PE (EFI stub) for the firmware to start it.
fn check_efi_stub(image: &Path) -> Result<()> {
    let mut head = [0u8; 2];
    std::fs::File::open(image)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading the running kernel {}", image.display()))?;
    if &head != b"MZ" {
        bail!(
            "the running kernel {} is not an EFI executable (no PE header), so the firmware cannot start it \
             from a boot entry; use --boot-via grub or kexec",
            image.display()
        );
    }
    Ok(())
}

impl Armer for EfiArmer {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Efi
    }

    fn prepare(&mut self, ctx: &Ctx) -> Result<Prepared> {
        let (boot_numbers, boot_current) = if ctx.facts.boot.secure_boot == Some(true) {
            (vec![], None)
        } else {
            firmware(ctx.root)?
        };
        let f = EfiFacts {
            esp: esp(ctx.root)?,
            secure_boot: ctx.facts.boot.secure_boot,
            boot_numbers,
            boot_current,
        };
        let kernel_size = std::fs::metadata(&ctx.kernel.image)
            .map(|m| m.len())
            .with_context(|| format!("reading {}", ctx.kernel.image.display()))?;
        efi::detect(&f, kernel_size)?;
        check_efi_stub(&ctx.kernel.image)?;
        let name = efi::entry_var(&f).context("no free Boot#### number")?;
        if let Some((n, path)) = &f.boot_current {
            log::info!("firmware booted Boot{n:04X} ({path}); BootOrder stays as it is");
        }
        self.facts = Some(f);
        Ok(Prepared {
            disarm: vec![DisarmAction::DeleteEfiVar { name }],
            ..Prepared::default()
        })
    }

    fn changes(&self, ctx: &Ctx, built: &Built) -> Result<Vec<Change>> {
        let f = self
            .facts
            .as_ref()
            .context("internal: EFI strategy used before prepare")?;
        let size = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .with_context(|| format!("reading {}", p.display()))
        };
        let kernel = ctx.device_path(&ctx.kernel.image);
        let initramfs = ctx.device_path(&built.initramfs);
        Ok(efi::arm(
            f,
            &ArmInputs {
                kernel: &kernel,
                kernel_size: size(&ctx.kernel.image)?,
                initramfs: &initramfs,
                initramfs_size: size(&built.initramfs)?,
                cmdline: &built.cmdline,
            },
        )?)
    }

    fn no_reboot_hint(&self) -> &'static str {
        "reboot when ready: the firmware starts the migration entry once (BootNext)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hd_nodes_from_gpt_and_mbr_partuuids() {
        let h = hd_node(
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            1,
            2048,
            1_048_576,
            512,
        )
        .unwrap();
        assert_eq!(
            migrd_init::efi::load_option::Node::HardDrive(h).to_string(),
            "HD(1,GPT,0fc63daf-8483-4772-8e79-3d69d8477de4,0x800,0x100000)"
        );
        let m = hd_node("1234abcd-05", 5, 4096, 8192, 512).unwrap();
        assert_eq!(m.signature, PartSignature::Mbr(0x1234abcd));
        assert_eq!(m.partuuid(), "1234abcd-05");
        // sysfs counts 512-byte sectors; a 4Kn disk's LBAs are 8 of them.
        let k = hd_node("0fc63daf-8483-4772-8e79-3d69d8477de4", 1, 2048, 16384, 4096).unwrap();
        assert_eq!((k.start, k.size), (256, 2048));
        assert!(hd_node("zzzzzzzz-01", 1, 0, 0, 512).is_err());
        assert!(hd_node("not-a-guid", 1, 0, 0, 512).is_err());
    }

    #[test]
    fn the_esp_of_the_ubuntu_uefi_fixture() {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ubuntu2204-uefi-lvm");
        let e = esp(&root).unwrap().unwrap();
        assert_eq!(e.mount, Path::new("/boot/efi"));
        assert_eq!(
            migrd_init::efi::load_option::Node::HardDrive(e.hd).to_string(),
            "HD(1,GPT,3f1b6c2a-8e4d-4b7a-9c1e-2d5f8a0b7c6e,0x800,0x219800)"
        );
        assert!(e.free_bytes > 0);
        // No ESP mounted: none found (the strategy then refuses).
        let d = tempfile::tempdir().unwrap();
        assert_eq!(esp(d.path()).unwrap(), None);
    }

    #[test]
    fn only_pe_kernels_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        let pe = d.path().join("vmlinuz-pe");
        std::fs::write(&pe, b"MZ\x90\x00rest").unwrap();
        check_efi_stub(&pe).unwrap();
        let elf = d.path().join("vmlinux");
        std::fs::write(&elf, b"\x7fELF").unwrap();
        let e = check_efi_stub(&elf).unwrap_err().to_string();
        assert!(
            e.contains("not an EFI executable") && e.contains("--boot-via grub"),
            "{e}"
        );
    }

    #[test]
    fn firmware_entries_and_boot_current_from_efivarfs() {
        use migrd_init::efi::vars::{boot_var, global};
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&dir).unwrap();
        let v = EfiVars::new(&dir);
        let o = efi::load_option(
            hd_node("0fc63daf-8483-4772-8e79-3d69d8477de4", 1, 2048, 4096, 512).unwrap(),
            "x",
        );
        v.write(&boot_var(0), 7, &o.encode()).unwrap();
        v.write(&boot_var(2), 7, &o.encode()).unwrap();
        v.write(&global("BootCurrent"), 6, &[2, 0]).unwrap();
        let (numbers, current) = firmware(d.path()).unwrap();
        assert_eq!(numbers, [0, 2]);
        let (n, path) = current.unwrap();
        assert_eq!(n, 2);
        assert!(path.ends_with(r"File(\EFI\migrd\vmlinuz.efi)"), "{path}");
    }
}
