//! Network profiles for the new OS: every Wi-Fi, Ethernet and GSM profile
//! found in NetworkManager, wpa_supplicant and connman, converted to
//! NetworkManager keyfiles balenaOS reads from `resin-boot/system-connections`.
//!
//! Unlike takeover (which reads one source and, through a file-name clash,
//! keeps only the last Wi-Fi), every source is read and every profile gets
//! its own id (`migrd-wifi-01`, `migrd-wifi-02`, ...).

pub mod connman;
pub mod keyfile;
pub mod nm_keyfile;
pub mod wpa_supplicant;

use crate::probe::rootfs;
use keyfile::Keyfile;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Kind of connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Wi-Fi.
    Wifi,
    /// Wired Ethernet.
    Ethernet,
    /// Cellular (GSM/LTE modem).
    Gsm,
    /// Anything else (VPN, bridge, ...): reported, not migrated.
    Other,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wifi => "wifi",
            Kind::Ethernet => "ethernet",
            Kind::Gsm => "gsm",
            Kind::Other => "other",
        }
    }
}

/// Wi-Fi security (never the secret itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Security {
    /// No Wi-Fi security (open network, or not Wi-Fi).
    None,
    /// WPA/WPA2 personal.
    WpaPsk,
    /// WPA3 personal (SAE).
    Sae,
    /// WEP.
    Wep,
    /// 802.1X / EAP (not migrated: needs certificates and identities).
    Eap,
}

/// One profile found on the device.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// Id and file name in `system-connections` (empty when not migrated).
    pub id: String,
    /// Kind.
    pub kind: Kind,
    /// SSID for Wi-Fi, printable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    /// Security.
    pub security: Security,
    /// File it came from.
    pub source: String,
    /// Whether it will be written for the new OS.
    pub migrated: bool,
    /// Why not, or what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Keep the source's file name and id (balenaOS sources, `--nwmgr-cfg`).
    #[serde(skip)]
    pub keep_name: Option<String>,
    /// The keyfile to write (holds secrets; never serialised).
    #[serde(skip)]
    pub keyfile: Keyfile,
}

impl Profile {
    /// A profile that will not be migrated, with the reason.
    pub fn skipped(
        kind: Kind,
        ssid: Option<String>,
        security: Security,
        source: &str,
        why: &str,
    ) -> Self {
        Profile {
            id: String::new(),
            kind,
            ssid,
            security,
            source: source.into(),
            migrated: false,
            note: Some(why.into()),
            keep_name: None,
            keyfile: Keyfile::default(),
        }
    }
}

/// Which profiles to take (takeover's `--no-wifis`, `--wifi`, `--nwmgr-cfg`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Do not scan for Wi-Fi profiles (unless `wifi` names some).
    pub no_wifis: bool,
    /// Only these SSIDs (empty: all).
    pub wifi: Vec<String>,
    /// Keyfiles supplied by the operator, copied verbatim.
    pub nwmgr_cfg: Vec<PathBuf>,
}

/// All profiles found, migrated or not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NetworkSet {
    /// The profiles, in the order they will be written.
    pub profiles: Vec<Profile>,
}

/// An unusable `--nwmgr-cfg` file.
#[derive(Debug, thiserror::Error)]
#[error("--nwmgr-cfg {path}: {reason}")]
pub struct NwmgrCfgError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl NetworkSet {
    /// Profiles that will be written.
    pub fn migrated(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter().filter(|p| p.migrated)
    }

    /// `(file name, content)` of every keyfile to write, contents with secrets.
    pub fn files(&self) -> Vec<(String, String)> {
        self.migrated()
            .map(|p| (p.id.clone(), p.keyfile.render()))
            .collect()
    }

    /// Write the keyfiles into `dir` (created 0700), each 0600.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        crate::inputs::create_private_dir(dir)?;
        self.files()
            .into_iter()
            .map(|(name, text)| {
                let p = dir.join(name);
                crate::inputs::write_secret_file(&p, text.as_bytes())?;
                Ok(p)
            })
            .collect()
    }
}

fn read_nwmgr_cfg(path: &Path) -> Result<Profile, NwmgrCfgError> {
    let err = |reason: String| NwmgrCfgError {
        path: path.into(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let k = Keyfile::parse(&text);
    let Some(kind) = k.get("connection", "type") else {
        return Err(err(
            "not a NetworkManager keyfile (no [connection] type=)".into()
        ));
    };
    let mut p = nm_keyfile::profile_from(k.clone(), &path.display().to_string());
    p.migrated = true;
    p.note = Some(format!(
        "supplied with --nwmgr-cfg (type {kind}), copied verbatim"
    ));
    p.keyfile = k;
    let base = path
        .file_name()
        .map(|n| {
            n.to_string_lossy().replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '.',
                "_",
            )
        })
        .unwrap_or_else(|| "nwmgr".into());
    p.keep_name = Some(base);
    Ok(p)
}

/// balenaOS keeps its profiles in `/mnt/boot/system-connections`: copied
/// verbatim with their names (takeover does the same).
fn balena_os_profiles(root: &Path) -> Vec<Profile> {
    let dir = rootfs::join(root, Path::new("mnt/boot/system-connections"));
    let mut v: Vec<Profile> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.is_file() && p.extension().map_or(true, |e| e != "ignore"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let k = Keyfile::parse(&text);
            let mut prof = nm_keyfile::profile_from(
                k.clone(),
                &format!(
                    "/mnt/boot/system-connections/{}",
                    p.file_name()?.to_string_lossy()
                ),
            );
            prof.migrated = true;
            prof.keyfile = k;
            prof.keep_name = Some(p.file_name()?.to_string_lossy().into_owned());
            prof.note = Some("balenaOS profile, copied verbatim".into());
            Some(prof)
        })
        .collect();
    v.sort_by(|a, b| a.source.cmp(&b.source));
    v
}

/// Gather every profile under `root` and apply the selection.
pub fn collect(root: &Path, sel: &Selection, balena_os: bool) -> Result<NetworkSet, NwmgrCfgError> {
    let mut found: Vec<Profile> = Vec::new();
    for f in &sel.nwmgr_cfg {
        found.push(read_nwmgr_cfg(f)?);
    }
    if balena_os {
        found.extend(balena_os_profiles(root));
    } else {
        found.extend(nm_keyfile::scan(root));
        found.extend(wpa_supplicant::scan(root));
        found.extend(connman::scan(root));
    }
    let mut seen_ssids: Vec<String> = Vec::new();
    let mut counters = std::collections::BTreeMap::<&'static str, u32>::new();
    let mut out = Vec::new();
    for mut p in found {
        let operator_supplied = p.keep_name.is_some();
        if p.migrated && p.kind == Kind::Wifi && !operator_supplied {
            let ssid = p.ssid.clone().unwrap_or_default();
            if !sel.wifi.is_empty() && !sel.wifi.contains(&ssid) {
                p.migrated = false;
                p.note = Some("not in the --wifi list".into());
            } else if sel.no_wifis && sel.wifi.is_empty() {
                p.migrated = false;
                p.note = Some("Wi-Fi not migrated (--no-wifis)".into());
            } else if seen_ssids.contains(&ssid) {
                p.migrated = false;
                p.note = Some(format!("duplicate of an earlier profile for SSID {ssid:?}"));
            }
        }
        if p.migrated {
            if let Some(s) = &p.ssid {
                seen_ssids.push(s.clone());
            }
            p.id = match &p.keep_name {
                Some(n) => n.clone(),
                None => {
                    let n = counters.entry(p.kind.name()).or_insert(0);
                    *n += 1;
                    let id = format!("migrd-{}-{:02}", p.kind.name(), n);
                    p.keyfile.set("connection", "id", id.as_str());
                    id
                }
            };
        }
        out.push(p);
    }
    // Two operator files with the same base name must not overwrite each other.
    let mut names: Vec<String> = Vec::new();
    for p in out.iter_mut().filter(|p| p.migrated) {
        let mut id = p.id.clone();
        let mut n = 2;
        while names.contains(&id) {
            id = format!("{}-{n}", p.id);
            n += 1;
        }
        p.id = id.clone();
        names.push(id);
    }
    Ok(NetworkSet { profiles: out })
}
