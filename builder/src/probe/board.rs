//! Which board this is: the device-tree model on Arm, DMI on x86, matched
//! against the table in `data/device-types.json`.

use super::device_types::{device_types, BoardEntry};
use super::rootfs;
use serde::Serialize;
use std::path::Path;

/// The board, as far as the probe could tell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Board {
    /// The raw model string (device-tree `model`, or DMI vendor + product).
    pub model: Option<String>,
    /// `device-tree`, `dmi` or `none`.
    pub source: String,
    /// Table id of the matching board (`rpi-4`), if any.
    pub id: Option<String>,
    /// Human name of the matching board.
    pub name: Option<String>,
    /// Family (`rpi`, `beaglebone`, `jetson`, `x86`).
    pub family: Option<String>,
    /// Compatible balena slugs, best first (empty when unknown).
    pub slugs: Vec<String>,
    /// Architecture the board's CPU runs (`armv6`, `armv7`, `aarch64`, `x86_64`).
    pub arch: Option<String>,
    /// Whether its firmware has Raspberry Pi tryboot.
    pub tryboot: bool,
}

/// Match a model string from `source` against the table. DMI entries only
/// apply to x86 kernels (Arm servers have DMI too); an entry that names its
/// running kernels (`kernels`) applies only to those.
pub fn lookup(
    model: &str,
    source: &str,
    kernel_machine: Option<&str>,
) -> Option<&'static BoardEntry> {
    device_types().boards.iter().find(|b| {
        b.source == source
            && (source != "dmi" || kernel_machine.map_or(true, |m| m == b.arch))
            && (b.kernels.is_empty()
                || kernel_machine.map_or(true, |m| b.kernels.iter().any(|k| k == m)))
            && regex::Regex::new(&b.pattern).is_ok_and(|r| r.is_match(model))
    })
}

fn dmi_model(root: &Path) -> Option<String> {
    let vendor = rootfs::read_trimmed(root, "sys/class/dmi/id/sys_vendor");
    let product = rootfs::read_trimmed(root, "sys/class/dmi/id/product_name");
    let s = [vendor, product]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!s.is_empty()).then_some(s)
}

/// Probe the board under `root`.
pub fn probe(root: &Path, kernel_machine: Option<&str>) -> Board {
    let dt = rootfs::read_trimmed(root, "proc/device-tree/model")
        .or_else(|| rootfs::read_trimmed(root, "sys/firmware/devicetree/base/model"));
    let (model, source) = match (dt, dmi_model(root)) {
        (Some(m), _) => (Some(m), "device-tree"),
        (None, Some(m)) => (Some(m), "dmi"),
        (None, None) if kernel_machine == Some("x86_64") => (Some(String::new()), "dmi"),
        (None, None) => (None, "none"),
    };
    let entry = model
        .as_deref()
        .and_then(|m| lookup(m, source, kernel_machine));
    Board {
        model: model.filter(|m| !m.is_empty()),
        source: source.to_string(),
        id: entry.map(|e| e.id.clone()),
        name: entry.map(|e| e.name.clone()),
        family: entry.map(|e| e.family.clone()),
        slugs: entry.map(|e| e.slugs.clone()).unwrap_or_default(),
        arch: entry.map(|e| e.arch.clone()),
        tryboot: entry.is_some_and(|e| e.tryboot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(model: &str) -> Option<&'static str> {
        lookup(model, "device-tree", Some("aarch64")).map(|b| b.id.as_str())
    }

    #[test]
    fn every_raspberry_pi_model_string() {
        let cases = [
            ("Raspberry Pi Model B Rev 2", "rpi-1"),
            ("Raspberry Pi Model B Plus Rev 1.2", "rpi-1"),
            ("Raspberry Pi Model A Plus Rev 1.1", "rpi-1"),
            ("Raspberry Pi Compute Module Rev 1.0", "rpi-1"),
            ("Raspberry Pi Zero Rev 1.3", "rpi-zero"),
            ("Raspberry Pi Zero W Rev 1.1", "rpi-zero"),
            ("Raspberry Pi Zero 2 W Rev 1.0", "rpi-zero-2w"),
            ("Raspberry Pi 2 Model B Rev 1.1", "rpi-2"),
            ("Raspberry Pi 3 Model B Rev 1.2", "rpi-3"),
            ("Raspberry Pi 3 Model B Plus Rev 1.3", "rpi-3"),
            ("Raspberry Pi 3 Model A Plus Rev 1.0", "rpi-3"),
            ("Raspberry Pi Compute Module 3 Rev 1.0", "rpi-cm3"),
            ("Raspberry Pi Compute Module 3 Plus Rev 1.0", "rpi-cm3"),
            ("Raspberry Pi 4 Model B Rev 1.4", "rpi-4"),
            ("Raspberry Pi 400 Rev 1.0", "rpi-400"),
            ("Raspberry Pi Compute Module 4 Rev 1.0", "rpi-cm4"),
            ("Raspberry Pi Compute Module 4S Rev 1.0", "rpi-cm4"),
            ("Raspberry Pi 5 Model B Rev 1.0", "rpi-5"),
            ("Raspberry Pi 500 Rev 1.0", "rpi-5"),
            ("Raspberry Pi Compute Module 5 Rev 1.0", "rpi-cm5"),
        ];
        for (m, want) in cases {
            assert_eq!(id(m), Some(want), "{m}");
        }
    }

    #[test]
    fn beaglebones_and_jetsons() {
        assert_eq!(id("TI AM335x BeagleBone Black"), Some("beaglebone-black"));
        assert_eq!(
            id("TI AM335x BeagleBone Black Wireless"),
            Some("beaglebone-black-wireless")
        );
        assert_eq!(id("TI AM335x BeagleBone Green"), Some("beaglebone-green"));
        assert_eq!(
            id("TI AM335x BeagleBone Green Wireless"),
            Some("beaglebone-green-wireless")
        );
        assert_eq!(id("TI AM335x BeagleBone"), Some("beaglebone-green"));
        assert_eq!(id("Jetson-AGX"), Some("jetson-xavier"));
        assert_eq!(
            id("NVIDIA Jetson Xavier NX Developer Kit"),
            Some("jetson-xavier-nx")
        );
        assert_eq!(id("NVIDIA Jetson Nano Developer Kit"), Some("jetson-nano"));
        assert_eq!(id("Pine64 RockPro64 v2.1"), None);
    }

    #[test]
    fn qemu_virt_is_generic_aarch64() {
        assert_eq!(id("linux,dummy-virt"), Some("qemu-arm64-virt"));
        let b = lookup("linux,dummy-virt", "device-tree", Some("aarch64"));
        assert_eq!(
            b.map(|b| b.slugs.clone()),
            Some(vec!["generic-aarch64".to_string()])
        );
    }

    #[test]
    fn qemu_virt_with_a_32_bit_kernel_is_generic_armv7ahf() {
        for m in ["armv7l", "armv8l"] {
            let b = lookup("linux,dummy-virt", "device-tree", Some(m));
            assert_eq!(b.map(|b| b.id.as_str()), Some("qemu-arm-virt"), "{m}");
            assert_eq!(
                b.map(|b| (b.arch.as_str(), b.slugs.clone())),
                Some(("armv7", vec!["generic-armv7ahf".to_string()]))
            );
        }
        // A board whose entry names no kernels matches under any of them.
        let pi3 = lookup(
            "Raspberry Pi 3 Model B Rev 1.2",
            "device-tree",
            Some("armv7l"),
        );
        assert_eq!(pi3.map(|b| b.id.as_str()), Some("rpi-3"));
    }

    #[test]
    fn dmi_on_x86_only() {
        let nuc = lookup("Intel(R) Client Systems NUC8i5BEH", "dmi", Some("x86_64"));
        assert_eq!(nuc.map(|b| b.id.as_str()), Some("intel-nuc"));
        let pc = lookup("LENOVO 20XW0055GE", "dmi", Some("x86_64"));
        assert_eq!(pc.map(|b| b.slugs[0].as_str()), Some("generic-amd64"));
        assert!(lookup("Ampere Altra", "dmi", Some("aarch64")).is_none());
    }

    #[test]
    fn probe_reads_device_tree_with_trailing_nul() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("proc/device-tree")).unwrap();
        std::fs::write(
            d.path().join("proc/device-tree/model"),
            b"Raspberry Pi 3 Model B Plus Rev 1.3\0",
        )
        .unwrap();
        let b = probe(d.path(), Some("armv7l"));
        assert_eq!(b.id.as_deref(), Some("rpi-3"));
        assert_eq!(b.slugs[0], "raspberrypi3");
        assert!(!b.tryboot);
        let none = probe(tempfile::tempdir().unwrap().path(), Some("armv7l"));
        assert_eq!(none.source, "none");
        assert!(none.slugs.is_empty());
    }
}
