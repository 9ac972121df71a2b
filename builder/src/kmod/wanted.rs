//! The modules a migration ramdisk asks for. Names or aliases; each entry
//! says whether the build must fail when the kernel has it neither built in
//! nor as a module.

/// One wanted module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Module name or alias (`virtio_blk`, `crypto-crc32c`, `fs-vfat`).
    pub name: &'static str,
    /// Why the ramdisk wants it.
    pub reason: &'static str,
    /// Fail the build when the kernel has no such module.
    pub required: bool,
}

const fn w(name: &'static str, reason: &'static str, required: bool) -> Wanted {
    Wanted {
        name,
        reason,
        required,
    }
}

/// Storage drivers: whichever the device's disk uses. None is required on
/// its own, because a kernel carries only some of them; stage 2 reports a
/// missing target disk by its identity if the right driver is absent.
pub const STORAGE: &[Wanted] = &[
    w("virtio_blk", "virtual disks (QEMU, clouds)", false),
    w("virtio_pci", "virtio devices on PCI", false),
    w("virtio_mmio", "virtio devices on MMIO (arm virt)", false),
    w("virtio_scsi", "virtio SCSI disks", false),
    w("sd_mod", "SCSI/SATA/USB disks", false),
    w("ahci", "SATA controllers", false),
    w("ata_piix", "older Intel SATA/IDE controllers", false),
    w("nvme", "NVMe drives", false),
    w("mmc_block", "SD cards and eMMC", false),
    w("sdhci_pci", "SD/eMMC controllers on PCI", false),
    w("sdhci_acpi", "SD/eMMC controllers on ACPI platforms", false),
    w("sdhci_iproc", "Raspberry Pi SD controller", false),
    w("bcm2835", "Raspberry Pi SD host (older models)", false),
    w("sdhci_of_dwcmshc", "Rockchip/others eMMC", false),
    w("usb_storage", "USB mass storage", false),
    w("uas", "USB attached SCSI", false),
    w("xhci_pci", "USB 3 host controllers", false),
    w("ehci_pci", "USB 2 host controllers", false),
];

/// Filesystems stage 2 mounts (boot and data partitions of the new OS, the
/// log device), and the checksum ext4 needs.
pub const FILESYSTEMS: &[Wanted] = &[
    w("vfat", "resin-boot and EFI system partitions", true),
    w("nls_cp437", "vfat default codepage", false),
    // Debian sets CONFIG_FAT_DEFAULT_IOCHARSET="ascii": without nls_ascii a
    // plain vfat mount fails with EINVAL ("IO charset ascii not found").
    w(
        "nls_ascii",
        "vfat default iocharset on Debian kernels",
        false,
    ),
    w("nls_iso8859_1", "vfat default iocharset", false),
    w("nls_utf8", "vfat utf8 names", false),
    w("ext4", "resin-data and the log device", true),
    w("crypto-crc32c", "ext4 metadata checksums", false),
];

/// Firmware interfaces.
pub const FIRMWARE: &[Wanted] = &[w("efivarfs", "UEFI boot entries", false)];

/// The default wanted set, in a stable order.
pub fn default_set() -> Vec<Wanted> {
    STORAGE
        .iter()
        .chain(FILESYSTEMS)
        .chain(FIRMWARE)
        .copied()
        .collect()
}
