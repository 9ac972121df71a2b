//! An OVMF variable store read from the host, once QEMU has exited, with
//! `virt-fw-vars` (the virt-firmware tools from the Python registry,
//! installed by tests/lab/setup.sh into the lab's venv). Decoding the
//! Boot#### entries is left to the caller (migrd's own codec is what is
//! under test).

use crate::paths;
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The EFI global variable GUID.
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// One variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    /// Name (`Boot0004`).
    pub name: String,
    /// Vendor GUID, lowercase.
    pub guid: String,
    /// Attributes.
    pub attr: u32,
    /// Value.
    pub data: Vec<u8>,
}

/// `virt-fw-vars` in the lab's venv.
pub fn tool() -> Result<PathBuf> {
    let p = paths::lab_dir().join("venv/bin/virt-fw-vars");
    ensure!(
        p.is_file(),
        "{} is missing: run tests/lab/setup.sh (installs virt-firmware into the lab venv)",
        p.display()
    );
    Ok(p)
}

/// Run `virt-fw-vars` with `args`; its stdout and stderr.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(tool()?)
        .args(args)
        .output()
        .context("running virt-fw-vars")?;
    ensure!(
        out.status.success(),
        "virt-fw-vars {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Hex text to bytes.
pub fn unhex(s: &str) -> Result<Vec<u8>> {
    ensure!(s.len() % 2 == 0, "odd-length hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).with_context(|| format!("hex: {s}")))
        .collect()
}

/// Every variable in the store `vars`.
pub fn read(vars: &Path) -> Result<Vec<Var>> {
    let dump = vars.with_extension("json");
    run(&[
        "-i",
        &vars.display().to_string(),
        "--output-json",
        &dump.display().to_string(),
    ])?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&dump)?)
        .with_context(|| format!("{} is not JSON", dump.display()))?;
    v["variables"]
        .as_array()
        .context("no variables in the dump")?
        .iter()
        .map(|var| {
            Ok(Var {
                name: var["name"].as_str().unwrap_or_default().to_string(),
                guid: var["guid"].as_str().unwrap_or_default().to_lowercase(),
                attr: var["attr"].as_u64().unwrap_or_default() as u32,
                data: unhex(var["data"].as_str().unwrap_or_default())?,
            })
        })
        .collect()
}

/// A global variable's value.
pub fn global<'a>(vars: &'a [Var], name: &str) -> Option<&'a [u8]> {
    vars.iter()
        .find(|v| v.name == name && v.guid == GLOBAL)
        .map(|v| v.data.as_slice())
}

/// A list of u16 (BootOrder, BootNext).
pub fn u16s(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The Boot#### entries: number, bytes.
pub fn boot_entries(vars: &[Var]) -> Vec<(u16, Vec<u8>)> {
    vars.iter()
        .filter(|v| v.guid == GLOBAL && v.name.len() == 8 && v.name.starts_with("Boot"))
        .filter_map(|v| {
            u16::from_str_radix(&v.name[4..], 16)
                .ok()
                .map(|n| (n, v.data.clone()))
        })
        .collect()
}
