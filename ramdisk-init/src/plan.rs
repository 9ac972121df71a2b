//! The Plan: the one contract between stage 1 (`migrd`) and stage 2
//! (`migrd-init`).
//!
//! Stage 1 decides everything and writes it into `/plan.json` inside the
//! ramdisk; stage 2 only executes. The format is versioned: stage 2 refuses a
//! plan whose `version` it does not know instead of guessing.

use crate::arch::Arch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The plan format version this build writes and understands.
pub const PLAN_VERSION: u32 = 1;

/// Where the plan lives inside the ramdisk.
pub const PLAN_PATH: &str = "/plan.json";

/// Everything stage 2 needs to know, decided by stage 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Format version; see [`PLAN_VERSION`].
    pub version: u32,
    /// Which migrd wrote it (`migrd 0.1.0`), for the log.
    pub created_by: String,
    /// CPU architecture of the ramdisk.
    pub arch: Arch,
    /// The disk to flash, by stable identity.
    pub target: TargetDisk,
    /// Files of the payload, each checked before use.
    pub payload: Vec<PayloadFile>,
    /// Kernel modules to load, paths inside the ramdisk, in load order.
    #[serde(default)]
    pub modules: Vec<String>,
    /// How this boot was armed and how to disarm it.
    pub boot: BootPlan,
    /// Files to write into the new OS after flashing.
    #[serde(default)]
    pub inject: Vec<Injection>,
    /// Logging of stage 2.
    #[serde(default)]
    pub log: LogSettings,
    /// Run every step up to the point of no return, then go back.
    #[serde(default)]
    pub pretend: bool,
    /// After flashing a UEFI image: create the new OS's firmware boot entry
    /// and remove stale ones. Absent on BIOS machines and with
    /// `--no-efi-setup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_setup: Option<EfiSetup>,
    /// Where stage 2 leaves its result for the old OS when it goes back
    /// (fallback or pretend), read by `migrd status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusLocation>,
    /// The hardware watchdog stage 2 arms; absent in plans from before
    /// it existed, which then run with none.
    #[serde(default)]
    pub watchdog: WatchdogPlan,
    /// How long each step may take before stage 2 gives up on it.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// Hooks for the lab only; a production plan leaves them empty.
    #[serde(default, skip_serializing_if = "TestHooks::is_empty")]
    pub test: TestHooks,
    /// What stage 1 learnt decoding the whole image: stage 2 flashes with
    /// this size as the expected one and compares the hash of what it
    /// wrote. Absent in plans from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_decoded: Option<DecodedImage>,
}

/// The decoded (raw disk) image as stage 1 validated it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodedImage {
    /// Decoded size in bytes.
    pub size: u64,
    /// SHA-256 of the decoded bytes, lowercase hex (as `sha256sum` of the
    /// raw image, and as the flash engine reports what it wrote).
    pub sha256: String,
}

/// Longest `target.wait_secs` a plan may ask for (10 minutes): a ramdisk
/// waiting longer for a disk that is not coming only delays the fallback.
pub const MAX_TARGET_WAIT_SECS: u32 = 600;

/// The hardware watchdog stage 2 arms first thing, so that a hang (a
/// driver, a dying SD card, a mount) resets the machine instead of
/// stranding it. No device means the device has none (or stage 1 could
/// not tell): stage 2 then relies on [`Deadlines`] and its own reboot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogPlan {
    /// Device node stage 1 saw (`/dev/watchdog0`). The number may differ in
    /// the ramdisk, so stage 2 first looks for the watchdog whose
    /// `identity` matches and uses this path only when none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `/sys/class/watchdog/<name>/identity` (`i6300ESB timer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Driver (`i6300esb`, `bcm2835_wdt`), for the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Module that provides it, packed and loaded with the others; `None`
    /// when built into the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Timeout to set, in seconds (the driver may round it; stage 2 reads
    /// back what it got).
    #[serde(default = "default_watchdog_timeout")]
    pub timeout_secs: u32,
}

/// Watchdog timeout asked for when the driver allows it.
pub const DEFAULT_WATCHDOG_TIMEOUT_SECS: u32 = 60;

fn default_watchdog_timeout() -> u32 {
    DEFAULT_WATCHDOG_TIMEOUT_SECS
}

impl Default for WatchdogPlan {
    fn default() -> Self {
        WatchdogPlan {
            device: None,
            identity: None,
            driver: None,
            module: None,
            timeout_secs: DEFAULT_WATCHDOG_TIMEOUT_SECS,
        }
    }
}

/// Longest time, in seconds, each part of stage 2 may take. Past a
/// deadline before the point of no return stage 2 stops petting the
/// watchdog and goes back to the old OS (or the watchdog resets it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// From PID 1's start to the point of no return, all steps together.
    #[serde(default = "default_before_ponr")]
    pub before_ponr_secs: u32,
    /// Loading every module.
    #[serde(default = "default_modules")]
    pub modules_secs: u32,
    /// Finding the target disk: must exceed `target.wait_secs`.
    #[serde(default = "default_find_target")]
    pub find_target_secs: u32,
    /// Verifying the payload (reading and hashing every file).
    #[serde(default = "default_verify")]
    pub verify_secs: u32,
    /// Longest time without progress while flashing (no bytes written).
    #[serde(default = "default_flash_stall")]
    pub flash_stall_secs: u32,
}

fn default_before_ponr() -> u32 {
    1800
}
fn default_modules() -> u32 {
    180
}
fn default_find_target() -> u32 {
    MAX_TARGET_WAIT_SECS + 60
}
fn default_verify() -> u32 {
    900
}
fn default_flash_stall() -> u32 {
    300
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            before_ponr_secs: default_before_ponr(),
            modules_secs: default_modules(),
            find_target_secs: default_find_target(),
            verify_secs: default_verify(),
            flash_stall_secs: default_flash_stall(),
        }
    }
}

impl Deadlines {
    /// The defaults with the find-target deadline fitted to a target wait:
    /// the wait plus a minute for the checks around it.
    pub fn for_target_wait(wait_secs: u32) -> Self {
        Deadlines {
            find_target_secs: wait_secs.saturating_add(60),
            ..Deadlines::default()
        }
    }

    /// Each deadline is non-zero, no step's exceeds the whole run's, and
    /// the target wait fits in its step.
    fn check(&self, target_wait: u32) -> Result<(), String> {
        let steps = [
            ("modules_secs", self.modules_secs),
            ("find_target_secs", self.find_target_secs),
            ("verify_secs", self.verify_secs),
            ("flash_stall_secs", self.flash_stall_secs),
        ];
        for (name, v) in steps {
            if v == 0 || v > self.before_ponr_secs {
                return Err(format!(
                    "deadlines.{name} is {v}: it must be between 1 and before_ponr_secs ({})",
                    self.before_ponr_secs
                ));
            }
        }
        if target_wait >= self.find_target_secs {
            return Err(format!(
                "target.wait_secs ({target_wait}) is not below deadlines.find_target_secs ({})",
                self.find_target_secs
            ));
        }
        Ok(())
    }
}

/// The firmware boot entry stage 2 makes for the flashed OS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfiSetup {
    /// PARTUUIDs (GPT GUIDs or MBR `SIG-NN`) of the partitions the flash
    /// overwrites: firmware entries pointing at them are removed.
    #[serde(default)]
    pub old_partuuids: Vec<String>,
}

/// A file on the old OS's filesystem where stage 2 writes its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusLocation {
    /// UUID of the filesystem (as blkid prints it).
    pub fs_uuid: String,
    /// Its type (`ext4`, `vfat`).
    pub fstype: String,
    /// Path of the status file relative to the filesystem root.
    pub path: String,
}

/// Test-only behaviour, for lab scenarios that must prove the fallbacks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestHooks {
    /// Make PID 1 exit right after this step (e.g. `plan`), so the kernel
    /// panics and `panic=` reboots: proves the panic path falls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_after: Option<String>,
    /// Make this step hang forever (e.g. `verify`), as a dead driver or SD
    /// card would: proves the deadline guard brings the device back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_at: Option<String>,
    /// Make this step hang forever with the deadline guard stopped too (the
    /// hardware watchdog stays armed, unpetted), as when the kernel no
    /// longer runs PID 1's threads: proves the hardware watchdog resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wedge_at: Option<String>,
}

impl TestHooks {
    /// True when no hook is set.
    pub fn is_empty(&self) -> bool {
        self.exit_after.is_none() && self.hang_at.is_none() && self.wedge_at.is_none()
    }
}

/// How stage 2 finds the disk to flash. Device names (`/dev/sda`) move between
/// boots, so the plan names the disk by what stays: serial, WWN, a
/// `/dev/disk/by-id` name, or the PARTUUID of a partition on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDisk {
    /// Disk serial as the kernel reports it (`/sys/block/X/serial`,
    /// `/sys/block/X/device/serial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// World Wide Name (`/sys/block/X/device/wwid` or `.../wwn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// A `/dev/disk/by-id/` name, as udev made it on the old OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_id: Option<String>,
    /// PARTUUID of a partition on the disk (GPT GUID or `MBRSIG-NN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    /// Kernel name seen by stage 1; a hint only, never used on its own unless
    /// `allow_name_only` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_hint: Option<String>,
    /// Accept the name hint as the only identity (operator asked for it).
    #[serde(default)]
    pub allow_name_only: bool,
    /// Expected size in bytes, checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// How long to wait for the disk to appear, in seconds.
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u32,
}

fn default_wait_secs() -> u32 {
    30
}

impl TargetDisk {
    /// True when the plan names the disk by at least one stable identity, or
    /// the operator explicitly allowed a bare name.
    pub fn is_identified(&self) -> bool {
        self.serial.is_some()
            || self.wwn.is_some()
            || self.by_id.is_some()
            || self.partuuid.is_some()
            || (self.allow_name_only && self.name_hint.is_some())
    }
}

/// What a payload file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadRole {
    /// The balenaOS disk image (compressed or raw).
    Image,
    /// The device's config.json.
    Config,
    /// A NetworkManager keyfile.
    Network,
    /// The backup archive.
    Backup,
    /// Anything else stage 1 chose to carry.
    Other,
}

/// Compression of a payload file, as recognised by its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// Zstandard (`28 b5 2f fd`).
    Zstd,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// A zip archive holding one file (balena dashboard downloads).
    Zip,
}

/// Where a payload file is, relative to the ramdisk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Placement {
    /// Inside the initramfs at `path`.
    Embedded {
        /// Absolute path inside the ramdisk.
        path: String,
    },
}

/// One file of the payload, with the size and hash stage 2 checks before
/// trusting it (an initramfs unpack can fail silently and leave a short file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadFile {
    /// What the file is for.
    pub role: PayloadRole,
    /// Where it is.
    pub placement: Placement,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Compression of the file's content.
    pub compression: Compression,
}

impl PayloadFile {
    /// Path of the file inside the ramdisk.
    pub fn path(&self) -> &str {
        match &self.placement {
            Placement::Embedded { path } => path,
        }
    }
}

/// The one-shot boot mechanism that started this ramdisk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootStrategy {
    /// Nothing armed by migrd (offline `migrd build`; the operator boots it).
    None,
    /// GRUB `next_entry` in grubenv.
    Grub,
    /// UEFI `BootNext` to a Boot#### entry.
    Efi,
    /// Raspberry Pi `tryboot.txt` and the firmware's tryboot flag.
    RpiTryboot,
    /// Raspberry Pi `config.txt`/`cmdline.txt` edits.
    RpiConfig,
    /// U-Boot self-clearing entry.
    Uboot,
    /// U-Boot restore-first mode: the board's own boot file was edited and
    /// stage 2 restores it (`--uboot-restore-first`).
    UbootRestoreFirst,
    /// `kexec_file_load`; nothing persistent armed.
    Kexec,
}

impl BootStrategy {
    /// Whether a reboot boots the old OS without stage 2's disarm step
    /// (the Raspberry Pi config.txt edit and the U-Boot restore-first edit
    /// need stage 2 to restore them).
    pub fn self_clearing(self) -> bool {
        !matches!(
            self,
            BootStrategy::RpiConfig | BootStrategy::UbootRestoreFirst
        )
    }
}

/// A change stage 2 must undo first thing, so that any later failure boots
/// the old OS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DisarmAction {
    /// Put a file on a partition back to the bytes it had before arming.
    RestoreFile {
        /// PARTUUID of the partition holding the file.
        partuuid: String,
        /// Filesystem type to mount it with (`vfat`, `ext4`).
        fstype: String,
        /// Path of the file relative to the filesystem root.
        path: String,
        /// Path inside the ramdisk of the saved original bytes.
        original: String,
    },
    /// Delete an EFI variable (the ramdisk's Boot#### entry).
    DeleteEfiVar {
        /// Variable name with GUID, as in efivarfs (`Boot0007-8be4df61-...`).
        name: String,
    },
}

/// How the ramdisk was armed and what stage 2 undoes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootPlan {
    /// The mechanism.
    pub strategy: BootStrategy,
    /// Undo steps, run in order at the start of stage 2.
    #[serde(default)]
    pub disarm: Vec<DisarmAction>,
}

/// Where an injected file goes in the new OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectTarget {
    /// The `resin-boot` partition.
    ResinBoot,
    /// The `resin-data` partition.
    ResinData,
}

/// A file written into the flashed OS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// Path inside the ramdisk of the content.
    pub source: String,
    /// Partition it goes to.
    pub partition: InjectTarget,
    /// Path relative to that partition's root.
    pub path: String,
    /// Permission bits (0600 for anything holding a secret).
    pub mode: u32,
}

/// Log verbosity of stage 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Step results (default).
    #[default]
    Info,
    /// Details.
    Debug,
    /// Everything.
    Trace,
}

/// Logging of stage 2.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Verbosity.
    #[serde(default)]
    pub level: LogLevel,
    /// A filesystem on another disk (a USB stick) where stage 2 copies its
    /// log before leaving, whatever the outcome (takeover's `-l`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<StatusLocation>,
}

/// Why a plan could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not JSON, or not a plan.
    #[error("plan is not valid JSON for a migrd plan: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by a migrd with another plan format.
    #[error(
        "plan format version {found} is not supported by this migrd-init (it reads version {supported}); \
         rebuild the ramdisk with the same migrd release as its init"
    )]
    UnsupportedVersion {
        /// Version in the file.
        found: u64,
        /// Version this build reads.
        supported: u32,
    },
    /// Parsed, but inconsistent.
    #[error("plan is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u64>,
}

impl Plan {
    /// Parse and validate a plan. The version is checked before anything
    /// else, so a plan from another release gets a version error, not a
    /// confusing field error.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let probe: VersionProbe = serde_json::from_str(text)?;
        match probe.version {
            Some(v) if v == u64::from(PLAN_VERSION) => {}
            Some(v) => {
                return Err(PlanError::UnsupportedVersion {
                    found: v,
                    supported: PLAN_VERSION,
                })
            }
            None => return Err(PlanError::Invalid("no \"version\" field".into())),
        }
        let plan: Plan = serde_json::from_str(text)?;
        plan.validate()?;
        Ok(plan)
    }

    /// Serialize as stable, pretty JSON (field order is declaration order, so
    /// the same plan gives the same bytes).
    pub fn to_json(&self) -> Result<String, PlanError> {
        let mut s = serde_json::to_string_pretty(self)?;
        s.push('\n');
        Ok(s)
    }

    /// Checks that cannot be expressed in the types.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.target.wait_secs > MAX_TARGET_WAIT_SECS {
            return Err(PlanError::Invalid(format!(
                "target.wait_secs is {}; at most {MAX_TARGET_WAIT_SECS} seconds",
                self.target.wait_secs
            )));
        }
        self.deadlines
            .check(self.target.wait_secs)
            .map_err(PlanError::Invalid)?;
        if self.watchdog.timeout_secs == 0 {
            return Err(PlanError::Invalid("watchdog.timeout_secs is 0".into()));
        }
        if !self.target.is_identified() {
            return Err(PlanError::Invalid(
                "target disk has no stable identity (serial, wwn, by-id or partuuid)".into(),
            ));
        }
        let mut seen = BTreeMap::new();
        for f in &self.payload {
            let p = f.path();
            if !p.starts_with('/') {
                return Err(PlanError::Invalid(format!(
                    "payload path '{p}' is not absolute"
                )));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PlanError::Invalid(format!(
                    "payload '{p}' has a malformed sha256 '{}'",
                    f.sha256
                )));
            }
            if seen.insert(p.to_string(), ()).is_some() {
                return Err(PlanError::Invalid(format!(
                    "payload path '{p}' listed twice"
                )));
            }
        }
        if self
            .payload
            .iter()
            .filter(|f| f.role == PayloadRole::Image)
            .count()
            > 1
        {
            return Err(PlanError::Invalid(
                "more than one image in the payload".into(),
            ));
        }
        if let Some(d) = &self.image_decoded {
            if d.sha256.len() != 64 || !d.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PlanError::Invalid(format!(
                    "image_decoded has a malformed sha256 '{}'",
                    d.sha256
                )));
            }
        }
        Ok(())
    }

    /// The image payload file, if any.
    pub fn image(&self) -> Option<&PayloadFile> {
        self.payload.iter().find(|f| f.role == PayloadRole::Image)
    }
}

/// A small valid plan for tests in this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn sample_plan() -> Plan {
        Plan {
            version: PLAN_VERSION,
            created_by: "migrd test".into(),
            arch: Arch::X86_64,
            target: TargetDisk {
                serial: Some("DISK1".into()),
                wait_secs: 5,
                ..Default::default()
            },
            payload: vec![PayloadFile {
                role: PayloadRole::Image,
                placement: Placement::Embedded {
                    path: "/payload/balena.img.gz".into(),
                },
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                compression: Compression::Gzip,
            }],
            modules: vec!["/lib/modules/virtio_blk.ko".into()],
            boot: BootPlan {
                strategy: BootStrategy::None,
                disarm: vec![],
            },
            inject: vec![],
            log: LogSettings::default(),
            pretend: false,
            efi_setup: None,
            status: None,
            watchdog: WatchdogPlan::default(),
            deadlines: Deadlines::default(),
            test: TestHooks::default(),
            image_decoded: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample_plan as sample;
    use super::*;

    #[test]
    fn round_trips_through_json() -> Result<(), PlanError> {
        let p = sample();
        let back = Plan::from_json(&p.to_json()?)?;
        assert_eq!(p, back);
        Ok(())
    }

    /// Plans written before `image_decoded` existed still parse; new ones
    /// carry it through JSON, and a malformed hash in it is refused.
    #[test]
    fn image_decoded_is_optional_and_round_trips() -> Result<(), PlanError> {
        let old = sample().to_json()?;
        assert!(!old.contains("image_decoded"));
        assert_eq!(Plan::from_json(&old)?.image_decoded, None);
        let mut p = sample();
        p.image_decoded = Some(DecodedImage {
            size: 4096,
            sha256: "ab".repeat(32),
        });
        assert_eq!(Plan::from_json(&p.to_json()?)?, p);
        if let Some(d) = &mut p.image_decoded {
            d.sha256 = "zz".into();
        }
        assert!(Plan::from_json(&p.to_json()?).is_err());
        Ok(())
    }

    #[test]
    fn serialization_is_stable() -> Result<(), PlanError> {
        assert_eq!(sample().to_json()?, sample().to_json()?);
        Ok(())
    }

    #[test]
    fn refuses_unknown_version_before_other_fields() {
        let text = r#"{"version": 99, "something": "from the future"}"#;
        match Plan::from_json(text) {
            Err(PlanError::UnsupportedVersion {
                found: 99,
                supported,
            }) => {
                assert_eq!(supported, PLAN_VERSION)
            }
            other => panic!("expected a version error, got {other:?}"),
        }
        let msg = Plan::from_json(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("version 99") && msg.contains("rebuild"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_missing_version_and_garbage() {
        assert!(matches!(Plan::from_json("{}"), Err(PlanError::Invalid(_))));
        assert!(matches!(
            Plan::from_json("not json"),
            Err(PlanError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_unknown_fields() -> Result<(), PlanError> {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()?)?;
        v["surprise"] = serde_json::json!(1);
        assert!(matches!(
            Plan::from_json(&v.to_string()),
            Err(PlanError::Malformed(_))
        ));
        Ok(())
    }

    #[test]
    fn refuses_target_without_stable_identity() -> Result<(), PlanError> {
        let mut p = sample();
        p.target = TargetDisk {
            name_hint: Some("sda".into()),
            ..Default::default()
        };
        assert!(matches!(
            Plan::from_json(&p.to_json()?),
            Err(PlanError::Invalid(_))
        ));
        p.target.allow_name_only = true;
        assert!(Plan::from_json(&p.to_json()?).is_ok());
        Ok(())
    }

    #[test]
    fn refuses_bad_hashes_and_duplicates() -> Result<(), PlanError> {
        let mut p = sample();
        p.payload[0].sha256 = "xyz".into();
        assert!(matches!(p.validate(), Err(PlanError::Invalid(_))));
        let mut p = sample();
        let dup = p.payload[0].clone();
        p.payload.push(dup);
        assert!(matches!(p.validate(), Err(PlanError::Invalid(_))));
        Ok(())
    }

    /// A plan written before the watchdog and deadlines existed parses,
    /// with no watchdog and the default deadlines.
    #[test]
    fn a_plan_without_watchdog_or_deadlines_parses_with_defaults() -> Result<(), PlanError> {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()?)?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| PlanError::Invalid("not an object".into()))?;
        assert!(obj.remove("watchdog").is_some() && obj.remove("deadlines").is_some());
        let p = Plan::from_json(&v.to_string())?;
        assert_eq!(p.watchdog.device, None);
        assert_eq!(p.watchdog.timeout_secs, 60);
        assert_eq!(p.deadlines, Deadlines::default());
        assert_eq!(p.deadlines.find_target_secs, 660);
        Ok(())
    }

    /// The sections as stage 1 writes them come back whole; a section with
    /// only some fields takes the defaults for the rest.
    #[test]
    fn watchdog_and_deadlines_round_trip_and_fill_defaults() -> Result<(), PlanError> {
        let mut p = sample();
        p.watchdog = WatchdogPlan {
            device: Some("/dev/watchdog0".into()),
            identity: Some("i6300ESB timer".into()),
            driver: Some("i6300esb".into()),
            module: Some("i6300esb".into()),
            timeout_secs: 30,
        };
        p.deadlines = Deadlines::for_target_wait(120);
        let text = p.to_json()?;
        assert!(text.contains("\"find_target_secs\": 180"), "{text}");
        assert_eq!(Plan::from_json(&text)?, p);
        let mut v: serde_json::Value = serde_json::from_str(&text)?;
        v["watchdog"] = serde_json::json!({"device": "/dev/watchdog1"});
        v["deadlines"] = serde_json::json!({"verify_secs": 100});
        let back = Plan::from_json(&v.to_string())?;
        assert_eq!(back.watchdog.timeout_secs, 60);
        assert_eq!(back.watchdog.device.as_deref(), Some("/dev/watchdog1"));
        assert_eq!(back.deadlines.verify_secs, 100);
        assert_eq!(back.deadlines.before_ponr_secs, 1800);
        Ok(())
    }

    #[test]
    fn refuses_deadlines_that_cannot_hold() {
        let bad = |f: &dyn Fn(&mut Plan)| {
            let mut p = sample();
            f(&mut p);
            p.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(&|p| p.target.wait_secs = 601).contains("at most 600"));
        assert!(bad(&|p| p.deadlines.find_target_secs = 5).contains("wait_secs (5)"));
        assert!(bad(&|p| p.deadlines.verify_secs = 0).contains("verify_secs is 0"));
        assert!(bad(&|p| p.deadlines.modules_secs = 4000).contains("modules_secs is 4000"));
        assert!(bad(&|p| p.watchdog.timeout_secs = 0).contains("timeout_secs is 0"));
        assert_eq!(bad(&|p| p.target.wait_secs = 600), "");
    }
}
