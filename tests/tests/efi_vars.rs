//! migrd's EFI_LOAD_OPTION codec against OVMF vars files, read and written
//! with `virt-fw-vars` (virt-firmware, installed by tests/lab/setup.sh into
//! the lab's venv):
//!
//! * every Boot#### that OVMF itself writes on a first boot, and those
//!   virt-fw-vars makes, decode and re-encode byte for byte;
//! * an entry migrd encodes (HD + File + command line) is read back by
//!   virt-fw-vars with the same description, partition and file.
//!
//! `#[ignore]`d for a plain `cargo test` (needs QEMU, OVMF and virt-fw-vars);
//! tests/lab/test.sh runs them, and they fail when a tool is missing.

use anyhow::{ensure, Context, Result};
use migrd_init::efi::load_option::{HardDrive, LoadOption, Node, PartSignature};
use migrd_init::efi::vars::GLOBAL;
use migrd_lab::paths;
use migrd_lab::qemu::{Ended, Qemu};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

use migrd_lab::uefi_vars::{self, run as fw_vars};

fn fresh_vars(dir: &Path) -> Result<PathBuf> {
    let v = dir.join("vars.fd");
    std::fs::copy(OVMF_VARS, &v).with_context(|| {
        format!("copying {OVMF_VARS} (Debian package ovmf; tests/lab/setup.sh)")
    })?;
    Ok(v)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every Boot#### in the vars file: (name, bytes).
fn boot_entries(vars: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(uefi_vars::boot_entries(&uefi_vars::read(vars)?)
        .into_iter()
        .map(|(n, data)| (format!("Boot{n:04X}"), data))
        .collect())
}

fn set_json(vars: &Path, dir: &Path, entries: &[(String, Vec<u8>)]) -> Result<()> {
    let j = json!({"version": 2, "variables": entries.iter().map(|(n, d)| json!({
        "name": n, "guid": GLOBAL, "attr": 7, "data": hex(d)})).collect::<Vec<_>>()});
    let f = dir.join("set.json");
    std::fs::write(&f, serde_json::to_vec(&j)?)?;
    fw_vars(&[
        "--inplace",
        &vars.display().to_string(),
        "--set-json",
        &f.display().to_string(),
    ])?;
    Ok(())
}

#[test]
#[ignore = "lab: needs QEMU, OVMF and virt-fw-vars (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn ovmf_and_virt_fw_vars_entries_round_trip_byte_identical() -> Result<()> {
    let logs = paths::log_dir("efi-vars-roundtrip")?;
    let vars = fresh_vars(&logs)?;
    // OVMF's own entries: boot it once with a GPT disk holding an empty ESP;
    // it enumerates devices, writes Boot#### and drops to its shell.
    let disk = logs.join("disk.img");
    std::fs::File::create(&disk)?.set_len(64 << 20)?;
    let mut c = Command::new("sfdisk")
        .args(["-q", &disk.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("sfdisk (fdisk package)")?;
    std::io::Write::write_all(
        c.stdin.as_mut().context("sfdisk stdin")?,
        b"label: gpt\nsize=32M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n",
    )?;
    ensure!(c.wait()?.success(), "sfdisk failed");
    let mut q = Qemu::x86_64(&logs);
    q.args([
        "-M",
        "q35",
        "-drive",
        &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
        "-drive",
        &format!("if=pflash,format=raw,file={}", vars.display()),
    ])
    .disk(&disk, None);
    let run = q.run(Duration::from_secs(120), Some("Shell>"))?;
    ensure!(
        run.ended == Ended::Matched,
        "OVMF did not reach its shell in 120 s ({:?}); see {}",
        run.ended,
        run.log.display()
    );
    eprintln!(
        "OVMF first boot to its shell: {:.1}s",
        run.elapsed.as_secs_f64()
    );
    let firmware = boot_entries(&vars)?;
    ensure!(firmware.len() >= 3, "OVMF wrote only {firmware:?}");

    // Entries virt-fw-vars builds: short-form FilePath and a URI node.
    fw_vars(&[
        "--inplace",
        &vars.display().to_string(),
        "--append-boot-filepath",
        r"\EFI\debian\grubx64.efi",
        "--set-boot-uri",
        "http://192.0.2.1/boot.iso",
    ])?;
    // And two of migrd's own through JSON (GPT and MBR partitions).
    let ours = [
        LoadOption::new(
            "gpt entry",
            HardDrive {
                partition: 1,
                start: 2048,
                size: 65536,
                signature: PartSignature::Gpt("0fc63daf-8483-4772-8e79-3d69d8477de4".parse()?),
            },
            r"\EFI\migrd\vmlinuz.efi",
            Some(r"initrd=\EFI\migrd\initrd.img console=ttyS0"),
        ),
        LoadOption::new(
            "mbr entry",
            HardDrive {
                partition: 5,
                start: 63,
                size: 1000,
                signature: PartSignature::Mbr(0x1234abcd),
            },
            r"\EFI\BOOT\BOOTX64.EFI",
            None,
        ),
    ];
    set_json(
        &vars,
        &logs,
        &[
            ("Boot0010".into(), ours[0].encode()),
            ("Boot0011".into(), ours[1].encode()),
        ],
    )?;

    let all = boot_entries(&vars)?;
    let mut report = String::new();
    for (name, bytes) in &all {
        let o = LoadOption::decode(bytes).with_context(|| format!("decoding {name}"))?;
        ensure!(
            o.encode() == *bytes,
            "{name} did not re-encode byte-identically: {o:?}"
        );
        report.push_str(&format!("{name}: {o}\n"));
    }
    std::fs::write(logs.join("entries.txt"), &report)?;
    eprint!("{report}");
    for (name, _) in &firmware {
        ensure!(all.iter().any(|(n, _)| n == name), "{name} vanished");
    }
    // The firmware's UiApp and shell entries are firmware-volume paths.
    ensure!(
        report.contains("UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile("),
        "{report}"
    );
    // virt-fw-vars's short-form entry is a bare File node.
    let grub = all
        .iter()
        .map(|(_, b)| LoadOption::decode(b))
        .filter_map(Result::ok)
        .find(|o| o.file() == Some(r"\EFI\debian\grubx64.efi"))
        .context("the --append-boot-filepath entry is missing")?;
    ensure!(grub.path == vec![Node::File(r"\EFI\debian\grubx64.efi".into()), Node::End]);
    for (i, n) in ["Boot0010", "Boot0011"].iter().enumerate() {
        let (_, b) = all
            .iter()
            .find(|(x, _)| x == n)
            .context("our entry is missing")?;
        ensure!(
            LoadOption::decode(b)? == ours[i],
            "{n} changed on the way through virt-fw-vars"
        );
    }
    Ok(())
}

#[test]
#[ignore = "lab: needs virt-fw-vars (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn virt_fw_vars_reads_migrds_entry() -> Result<()> {
    let logs = paths::log_dir("efi-vars-ours")?;
    let vars = fresh_vars(&logs)?;
    let guid = "5a1b2c3d-4e5f-4061-8273-8495a6b7c8d9";
    let o = LoadOption::new(
        "migrd one-shot",
        HardDrive {
            partition: 1,
            start: 0x800,
            size: 0x100000,
            signature: PartSignature::Gpt(guid.parse()?),
        },
        r"\EFI\migrd\vmlinuz.efi",
        Some(r"initrd=\EFI\migrd\initrd.img console=ttyS0 migrd.plan=x"),
    );
    set_json(&vars, &logs, &[("Boot0007".into(), o.encode())])?;
    let printed = fw_vars(&["-i", &vars.display().to_string(), "-p"])?;
    std::fs::write(logs.join("print.txt"), &printed)?;
    let line = printed
        .lines()
        .find(|l| l.starts_with("Boot0007"))
        .with_context(|| format!("virt-fw-vars does not list Boot0007:\n{printed}"))?;
    eprintln!("{line}");
    ensure!(line.contains(r#"title="migrd one-shot""#), "{line}");
    ensure!(
        line.contains(r"Partition(nr=1)/FilePath(\EFI\migrd\vmlinuz.efi)"),
        "{line}"
    );
    // virt-firmware's own parser and encoder, through its Python API: the
    // partition GUID it reads from our bytes, and the bytes it builds for
    // the same entry.
    let py = paths::lab_dir().join("venv/bin/python3");
    let out = Command::new(&py)
        .args(["-c", PY_READ_AND_BUILD, &vars.display().to_string(), guid])
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    ensure!(
        out.status.success(),
        "virt-firmware API: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout)?;
    eprintln!("{j}");
    ensure!(
        j["partuuid"] == guid,
        "partition GUID read back as {}",
        j["partuuid"]
    );
    ensure!(
        j["pnr"] == 1 && j["start"] == 0x800 && j["size"] == 0x100000,
        "{j}"
    );
    ensure!(j["file"] == r"\EFI\migrd\vmlinuz.efi", "{j}");
    ensure!(j["optdata"] == hex(&o.optional_data), "{j}");
    ensure!(
        j["built"] == hex(&o.encode()),
        "virt-firmware encodes the same entry differently:\n{}\n{}",
        j["built"],
        hex(&o.encode())
    );
    Ok(())
}

/// Reads Boot0007 from the vars file (argv[1]) with virt-firmware and
/// builds the same HD(GPT argv[2]) + File entry with its encoder.
const PY_READ_AND_BUILD: &str = r#"
import json, struct, sys
from virt.firmware.varstore import edk2
from virt.firmware.efi import bootentry, devpath, ucs16
e = bootentry.BootEntry(data=edk2.Edk2VarStore(sys.argv[1]).get_varlist()['Boot0007'].data)
hd = [x for x in e.devicepath if x.is_type(4, 1)][0]
pnr, start, size = struct.unpack_from('<LQQ', hd.data)
fp = [x for x in e.devicepath if x.is_type(4, 4)][0]
el = devpath.DevicePathElem()
el.set_gpt(1, 0x800, 0x100000, sys.argv[2])
dp = devpath.DevicePath.filepath(str(fp.get_filepath()))
dp.insert(0, el)
built = bootentry.BootEntry(attr=1, title=ucs16.from_string('migrd one-shot'), devicepath=dp, optdata=e.optdata)
print(json.dumps({'partuuid': str(hd.get_partuuid()), 'pnr': pnr, 'start': start, 'size': size,
                  'file': str(fp.get_filepath()), 'optdata': e.optdata.hex(), 'built': bytes(built).hex()}))
"#;
