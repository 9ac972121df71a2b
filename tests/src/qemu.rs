//! Running QEMU for a scenario: serial console to a file, stop on exit, on a
//! pattern, or on timeout (then killed), logs kept in the scenario's folder.
//!
//! KVM is not used unless `MIGRD_LAB_ACCEL=kvm`: on the machines this lab
//! was measured on, `/dev/kvm` exists but cannot run stock guests.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// QEMU exited by itself (guest powered off or rebooted with
    /// `-no-reboot`), with this exit code.
    Exited(Option<i32>),
    /// The pattern appeared on the serial console; QEMU was stopped.
    Matched,
    /// Neither happened in time; QEMU was killed.
    TimedOut,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Run {
    /// How it ended.
    pub ended: Ended,
    /// The serial console output.
    pub serial: String,
    /// Wall time.
    pub elapsed: Duration,
    /// The serial log file.
    pub log: PathBuf,
}

/// TCG for `raspi3b` (the Pi 3 and Pi 4 scenarios): one host thread runs
/// the machine's four vCPUs in turn (`thread=single`). With a thread per
/// vCPU (QEMU's default for Arm guests) the arm64 kernel's early boot
/// crawls: it changes kernel page tables and code tens of thousands of
/// times (the linear map, then 44,279 ftrace call sites patched one at a
/// time), each followed by a TLB flush broadcast to all CPUs, which QEMU
/// runs as work all four threads must stop for. Measured on an idle 2-core
/// host with Debian's 6.1.0-57-arm64 on the Pi 3 model: the kernel's
/// messages up to its ftrace patching came after 35 s with a thread per
/// vCPU and after 1.6 s with one thread, the old OS's shell after 51.6 s
/// and 9.4 s; the whole of `migrate_rpi` scenario 1 took 374 s of wall and
/// 486 s of CPU time against 289 s and 274 s. The guest still sees four
/// cores.
const PI3_TCG: &str = "tcg,thread=single";

/// TCG for `raspi2b` (the Pi 2 scenarios): one host thread per vCPU. With
/// `thread=single` Debian's armhf kernel (6.1.0-57-armmp) stops for good
/// right after "uart-pl011 3f201000.serial: no DMA platform data" (before
/// its SD card is found; tried alone and two at a time on this host), so
/// the Pi 2 keeps QEMU's default and its slower boot (about 80 s to the
/// shell).
const PI2_TCG: &str = "tcg";

/// vCPUs of the x86 and arm `virt` guests: one. The lab runs one scenario
/// per host core, so a guest's second vCPU only adds a thread competing
/// for the same cores. Measured on `migrate_bios` scenario 1 alone on an
/// idle 2-core host: 2 vCPUs 157 s wall and 177 s of CPU, 1 vCPU 143 s
/// wall and 144 s of CPU (a Debian boot to its prompt: 57 s of CPU with
/// 2, 45 s with 1). Nothing migrd does needs a second CPU.
const ONE_VCPU: &str = "1";

/// A QEMU command being put together.
#[derive(Clone, Debug)]
pub struct Qemu {
    bin: String,
    args: Vec<String>,
    log_dir: PathBuf,
    disks: usize,
}

impl Qemu {
    /// `bin` with no arguments yet, logs in `log_dir`.
    fn bare(bin: &str, log_dir: &Path) -> Self {
        Qemu {
            bin: bin.into(),
            args: Vec::new(),
            log_dir: log_dir.to_path_buf(),
            disks: 0,
        }
    }

    /// An x86_64 PC (`-M pc`, SeaBIOS) with 512 MiB, one CPU (see
    /// [`ONE_VCPU`]), no display, no
    /// network, serial console to `<log_dir>/serial.log`, and a hardware
    /// watchdog (`i6300esb`, QEMU's default action: reset) that the old OS
    /// loads a driver for and the migration ramdisk arms: a ramdisk that
    /// stopped petting it would reset the machine mid-scenario.
    pub fn x86_64(log_dir: &Path) -> Self {
        let accel = std::env::var("MIGRD_LAB_ACCEL").unwrap_or_else(|_| "tcg".into());
        let mut q = Qemu::bare("qemu-system-x86_64", log_dir);
        q.args([
            "-accel", &accel, "-m", "512", "-smp", ONE_VCPU, "-display", "none",
        ]);
        q.args(["-monitor", "none", "-no-reboot", "-nic", "none"]);
        q.args(["-device", "i6300esb"]);
        q
    }

    /// QEMU's arm64 `virt` machine (Cortex-A57, TCG), 512 MiB, one CPU, no
    /// display, no network, and a hardware watchdog on its PCIe bus
    /// (`i6300esb`: `virt` has none of its own; Debian's arm64 kernel has
    /// the driver); add the firmware (`-bios`) and disks.
    pub fn aarch64_virt(log_dir: &Path) -> Self {
        let mut q = Qemu::arm_virt(log_dir, "qemu-system-aarch64", "cortex-a57");
        q.args(["-device", "i6300esb"]);
        q
    }

    /// QEMU's 32-bit arm `virt` machine (Cortex-A15, TCG), otherwise as
    /// [`Qemu::aarch64_virt`].
    pub fn armv7_virt(log_dir: &Path) -> Self {
        Qemu::arm_virt(log_dir, "qemu-system-arm", "cortex-a15")
    }

    fn arm_virt(log_dir: &Path, bin: &str, cpu: &str) -> Self {
        let mut q = Qemu::bare(bin, log_dir);
        q.args(["-accel", "tcg", "-M", "virt", "-cpu", cpu, "-m", "512"]);
        q.args(["-smp", ONE_VCPU, "-display", "none", "-monitor", "none"]);
        q.args(["-no-reboot", "-nic", "none"]);
        q
    }

    /// QEMU's Raspberry Pi 3 Model B (`raspi3b`, TCG, 1 GiB, its four
    /// cores), no display. QEMU cannot run the Pi's GPU firmware: each boot
    /// passes the kernel, device tree, initramfs and command line the
    /// firmware would load (`-kernel`, `-dtb`, `-initrd`, `-append`) and
    /// the SD card (`-drive if=sd`). `-no-reboot`: a restart through the
    /// Pi's watchdog block (which QEMU emulates; Linux needs its
    /// `bcm2835_wdt` driver) ends QEMU; a kernel without that driver halts
    /// instead, and the machine never exits.
    ///
    /// TCG as [`PI3_TCG`] says.
    pub fn raspi3b(log_dir: &Path) -> Self {
        let mut q = Qemu::bare("qemu-system-aarch64", log_dir);
        q.args([
            "-accel", PI3_TCG, "-M", "raspi3b", "-m", "1G", "-display", "none",
        ]);
        q.args(["-monitor", "none", "-no-reboot"]);
        q
    }

    /// QEMU's Raspberry Pi 2 Model B (`raspi2b`, BCM2836, four Cortex-A7,
    /// TCG, 1 GiB), no display; booted like [`Qemu::raspi3b`].
    pub fn raspi2b(log_dir: &Path) -> Self {
        let mut q = Qemu::bare("qemu-system-arm", log_dir);
        q.args([
            "-accel", PI2_TCG, "-M", "raspi2b", "-m", "1G", "-display", "none",
        ]);
        q.args(["-monitor", "none", "-no-reboot"]);
        q
    }

    /// Append arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, a: I) -> &mut Self {
        self.args
            .extend(a.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// Boot a kernel directly with an initramfs and command line.
    pub fn kernel(&mut self, image: &Path, initrd: &Path, append: &str) -> &mut Self {
        self.args([
            "-kernel",
            &image.display().to_string(),
            "-initrd",
            &initrd.display().to_string(),
            "-append",
            append,
        ])
    }

    /// Attach a raw disk image as a virtio-blk PCI disk, optionally with a
    /// serial number the guest sees in `/sys/block/vdX/serial`.
    pub fn disk(&mut self, image: &Path, serial: Option<&str>) -> &mut Self {
        let id = format!("d{}", self.disks);
        self.disks += 1;
        let drive = format!("file={},format=raw,if=none,id={id}", image.display());
        let mut dev = format!("virtio-blk-pci,drive={id}");
        if let Some(s) = serial {
            dev.push_str(&format!(",serial={s}"));
        }
        self.args(["-drive", &drive, "-device", &dev])
    }

    /// The scenario's log folder.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The command line with the log folder written as `@`: two devices
    /// with the same fingerprint differ only in their files' contents
    /// (see [`crate::warm_start`]).
    pub fn fingerprint(&self) -> String {
        let dir = self.log_dir.display().to_string();
        format!("{} {}", self.bin, self.args.join(" ")).replace(&dir, "@")
    }

    /// The same machine with its files (disks, variable store) and logs
    /// in `dir` instead of the log folder, under the same names.
    pub fn moved_to(&self, dir: &Path) -> Qemu {
        let from = self.log_dir.display().to_string();
        let to = dir.display().to_string();
        Qemu {
            bin: self.bin.clone(),
            args: self.args.iter().map(|a| a.replace(&from, &to)).collect(),
            log_dir: dir.to_path_buf(),
            disks: self.disks,
        }
    }

    /// Start QEMU with `extra` arguments after the configured ones (e.g. a
    /// serial chardev), the command line in `<log_dir>/<stem>.cmd` and
    /// QEMU's own output in `<stem>.out`. The caller drives and reaps it
    /// (see [`crate::guest::Guest`]).
    pub fn spawn_with(&self, extra: &[String], stem: &str) -> Result<Child> {
        let out = std::fs::File::create(self.log_dir.join(format!("{stem}.out")))?;
        let err = out.try_clone()?;
        std::fs::write(
            self.log_dir.join(format!("{stem}.cmd")),
            format!("{} {} {}\n", self.bin, self.args.join(" "), extra.join(" ")),
        )?;
        Command::new(&self.bin)
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} (install QEMU: tests/lab/setup.sh)", self.bin))
    }

    fn spawn(&self, log: &Path) -> Result<Child> {
        let out = std::fs::File::create(self.log_dir.join("qemu.out"))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .args(["-serial", &format!("file:{}", log.display())])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::fs::write(
            self.log_dir.join("qemu.cmd"),
            format!("{} {}\n", self.bin, self.args.join(" ")),
        )?;
        cmd.spawn()
            .with_context(|| format!("starting {} (install QEMU: tests/lab/setup.sh)", self.bin))
    }

    /// Run until QEMU exits, `until` appears on the console, or `timeout`.
    pub fn run(&self, timeout: Duration, until: Option<&str>) -> Result<Run> {
        let log = self.log_dir.join("serial.log");
        std::fs::write(&log, b"")?;
        let started = Instant::now();
        let mut child = self.spawn(&log)?;
        let ended = loop {
            if let Some(status) = child.try_wait()? {
                break Ended::Exited(status.code());
            }
            if let Some(p) = until {
                let text = std::fs::read(&log).unwrap_or_default();
                if String::from_utf8_lossy(&text).contains(p) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Ended::Matched;
                }
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break Ended::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let serial = String::from_utf8_lossy(&std::fs::read(&log)?).into_owned();
        Ok(Run {
            ended,
            serial,
            elapsed: started.elapsed(),
            log,
        })
    }
}
