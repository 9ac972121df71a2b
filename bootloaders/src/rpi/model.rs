//! Raspberry Pi models as the firmware tells them apart: which conditional
//! filters (`[pi4]`, `[cm4]`, …) a model obeys, whether its bootloader has
//! the tryboot one-shot flag, and which kernel file it loads by default.

use std::fmt;

/// A Raspberry Pi model, at the detail the firmware's filters need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Pi 1 A/B/A+/B+ and Compute Module 1.
    Pi1,
    /// Pi Zero and Zero W.
    Zero,
    /// Pi Zero 2 W.
    Zero2,
    /// Pi 2 B.
    Pi2,
    /// Pi 3 B.
    Pi3,
    /// Pi 3 B+ and 3 A+.
    Pi3Plus,
    /// Compute Module 3 and 3+.
    Cm3,
    /// Pi 4 B.
    Pi4,
    /// Pi 400.
    Pi400,
    /// Compute Module 4 and 4S.
    Cm4,
    /// Pi 5 and Pi 500.
    Pi5,
    /// Compute Module 5.
    Cm5,
}

impl Model {
    /// The model from the device-tree `model` string
    /// (`Raspberry Pi 3 Model B Plus Rev 1.3`); `None` if it is not a Pi.
    pub fn from_dt_model(s: &str) -> Option<Model> {
        let s = s.trim_end_matches('\0').trim();
        let rest = s.strip_prefix("Raspberry Pi ")?;
        let word = |p: &str| rest == p || rest.starts_with(&format!("{p} "));
        Some(if word("Compute Module 5") {
            Model::Cm5
        } else if word("Compute Module 4") || word("Compute Module 4S") {
            Model::Cm4
        } else if word("Compute Module 3") {
            Model::Cm3
        } else if word("Compute Module") {
            Model::Pi1
        } else if word("Zero 2 W") {
            Model::Zero2
        } else if word("Zero") || word("Zero W") || word("Zero WH") {
            Model::Zero
        } else if word("5") || word("500") {
            Model::Pi5
        } else if word("400") {
            Model::Pi400
        } else if word("4") {
            Model::Pi4
        } else if word("3") {
            if rest.contains(" Plus") {
                Model::Pi3Plus
            } else {
                Model::Pi3
            }
        } else if word("2") {
            Model::Pi2
        } else if word("Model") {
            Model::Pi1
        } else {
            return None;
        })
    }

    /// The model from a short name as the lab and tests use it (`pi3`,
    /// `pi3+`, `pi4`, `cm4`, …: the model filter names).
    pub fn from_name(s: &str) -> Option<Model> {
        Some(match s.to_ascii_lowercase().as_str() {
            "pi1" => Model::Pi1,
            "pi0" | "zero" => Model::Zero,
            "pi02" | "zero2" => Model::Zero2,
            "pi2" => Model::Pi2,
            "pi3" => Model::Pi3,
            "pi3+" => Model::Pi3Plus,
            "cm3" => Model::Cm3,
            "pi4" => Model::Pi4,
            "pi400" => Model::Pi400,
            "cm4" => Model::Cm4,
            "pi5" => Model::Pi5,
            "cm5" => Model::Cm5,
            _ => return None,
        })
    }

    /// The model filters (`[pi4]`, `[cm4]`, …) this model obeys. A Pi 400
    /// obeys `[pi4]` and `[pi400]`; a 3 B+ obeys `[pi3]` and `[pi3+]`.
    pub fn filters(self) -> &'static [&'static str] {
        match self {
            Model::Pi1 => &["pi1"],
            Model::Zero => &["pi0", "pi0w"],
            Model::Zero2 => &["pi0", "pi02"],
            Model::Pi2 => &["pi2"],
            Model::Pi3 => &["pi3"],
            Model::Pi3Plus => &["pi3", "pi3+"],
            Model::Cm3 => &["pi3", "cm3"],
            Model::Pi4 => &["pi4"],
            Model::Pi400 => &["pi4", "pi400"],
            Model::Cm4 => &["pi4", "cm4", "cm4s"],
            Model::Pi5 => &["pi5", "pi500"],
            Model::Cm5 => &["pi5", "cm5"],
        }
    }

    /// Whether the bootloader has the one-shot tryboot flag that makes the
    /// next boot read `tryboot.txt` and clears itself first (the EEPROM
    /// bootloaders of the Pi 4 family and the Pi 5; `bootcode.bin` on older
    /// models has no such flag).
    pub fn has_tryboot(self) -> bool {
        matches!(
            self,
            Model::Pi4 | Model::Pi400 | Model::Cm4 | Model::Pi5 | Model::Cm5
        )
    }

    /// Whether a 64-bit kernel is started when config.txt does not say
    /// `arm_64bit` (current firmware: the Pi 4 family and the Pi 5).
    pub fn default_arm_64bit(self) -> bool {
        matches!(
            self,
            Model::Pi4 | Model::Pi400 | Model::Cm4 | Model::Pi5 | Model::Cm5
        )
    }

    /// The kernel file the firmware loads without `kernel=`.
    pub fn default_kernel(self, arm_64bit: bool) -> &'static str {
        match self {
            Model::Pi5 | Model::Cm5 => "kernel_2712.img",
            _ if arm_64bit => "kernel8.img",
            Model::Pi4 | Model::Pi400 | Model::Cm4 => "kernel7l.img",
            Model::Pi2 | Model::Pi3 | Model::Pi3Plus | Model::Cm3 | Model::Zero2 => "kernel7.img",
            Model::Pi1 | Model::Zero => "kernel.img",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self {
            Model::Pi1 => "Raspberry Pi 1",
            Model::Zero => "Raspberry Pi Zero",
            Model::Zero2 => "Raspberry Pi Zero 2 W",
            Model::Pi2 => "Raspberry Pi 2",
            Model::Pi3 => "Raspberry Pi 3",
            Model::Pi3Plus => "Raspberry Pi 3+",
            Model::Cm3 => "Compute Module 3",
            Model::Pi4 => "Raspberry Pi 4",
            Model::Pi400 => "Raspberry Pi 400",
            Model::Cm4 => "Compute Module 4",
            Model::Pi5 => "Raspberry Pi 5",
            Model::Cm5 => "Compute Module 5",
        };
        f.write_str(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tree_model_strings() {
        let cases = [
            ("Raspberry Pi Model B Rev 2", Model::Pi1),
            ("Raspberry Pi Compute Module Rev 1.0", Model::Pi1),
            ("Raspberry Pi Zero W Rev 1.1", Model::Zero),
            ("Raspberry Pi Zero 2 W Rev 1.0", Model::Zero2),
            ("Raspberry Pi 2 Model B Rev 1.1", Model::Pi2),
            ("Raspberry Pi 3 Model B Rev 1.2", Model::Pi3),
            ("Raspberry Pi 3 Model B Plus Rev 1.3\0", Model::Pi3Plus),
            ("Raspberry Pi 3 Model A Plus Rev 1.0", Model::Pi3Plus),
            ("Raspberry Pi Compute Module 3 Plus Rev 1.0", Model::Cm3),
            ("Raspberry Pi 4 Model B Rev 1.4", Model::Pi4),
            ("Raspberry Pi 400 Rev 1.0", Model::Pi400),
            ("Raspberry Pi Compute Module 4S Rev 1.0", Model::Cm4),
            ("Raspberry Pi 5 Model B Rev 1.0", Model::Pi5),
            ("Raspberry Pi 500 Rev 1.0", Model::Pi5),
            ("Raspberry Pi Compute Module 5 Rev 1.0", Model::Cm5),
        ];
        for (s, m) in cases {
            assert_eq!(Model::from_dt_model(s), Some(m), "{s}");
        }
        assert_eq!(Model::from_dt_model("TI AM335x BeagleBone Black"), None);
        assert_eq!(Model::from_dt_model("Raspberry Pi 9 Model Z"), None);
    }

    #[test]
    fn tryboot_only_on_eeprom_bootloaders() {
        let with: Vec<_> = [
            Model::Pi1,
            Model::Zero,
            Model::Zero2,
            Model::Pi2,
            Model::Pi3,
            Model::Pi3Plus,
            Model::Cm3,
            Model::Pi4,
            Model::Pi400,
            Model::Cm4,
            Model::Pi5,
            Model::Cm5,
        ]
        .into_iter()
        .filter(|m| m.has_tryboot())
        .collect();
        assert_eq!(
            with,
            [Model::Pi4, Model::Pi400, Model::Cm4, Model::Pi5, Model::Cm5]
        );
    }

    #[test]
    fn default_kernels_by_model_and_arm_64bit() {
        assert_eq!(Model::Pi3.default_kernel(false), "kernel7.img");
        assert_eq!(Model::Pi3.default_kernel(true), "kernel8.img");
        assert_eq!(Model::Pi4.default_kernel(false), "kernel7l.img");
        assert_eq!(Model::Pi4.default_kernel(true), "kernel8.img");
        assert_eq!(Model::Zero.default_kernel(false), "kernel.img");
        assert_eq!(Model::Pi5.default_kernel(false), "kernel_2712.img");
        assert!(Model::Pi400.filters().contains(&"pi4"));
        assert!(Model::Pi3Plus.filters().contains(&"pi3"));
        assert_eq!(Model::from_name("pi3+"), Some(Model::Pi3Plus));
    }
}
