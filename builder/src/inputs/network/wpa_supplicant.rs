//! `wpa_supplicant.conf` `network={...}` blocks → NetworkManager keyfiles.
//!
//! Handles what takeover ignored: hex SSIDs (taken literally there),
//! `P"..."` SSIDs, raw 64-hex PSKs, WPA3-SAE (`key_mgmt=SAE`,
//! `sae_password`), open and WEP networks, `scan_ssid=1` (hidden),
//! `priority`, `bssid`, `disabled=1`. EAP networks are reported, not
//! migrated.

use super::keyfile::{wifi_keyfile, WifiSpec};
use super::{Kind, Profile, Security};
use crate::probe::rootfs;
use std::collections::BTreeMap;
use std::path::Path;

/// One `network={...}` block's settings, values as written.
pub type Block = BTreeMap<String, String>;

/// Parse the network blocks of a wpa_supplicant.conf.
pub fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut cur: Option<Block> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let compact: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        if compact == "network={" {
            cur = Some(Block::new());
            continue;
        }
        if l == "}" {
            if let Some(b) = cur.take() {
                blocks.push(b);
            }
            continue;
        }
        if let (Some(b), Some((k, v))) = (cur.as_mut(), l.split_once('=')) {
            b.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    blocks
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Decode an SSID value: `"text"`, hex bytes, or printf-style `P"..."`.
pub fn decode_ssid(v: &str) -> Option<Vec<u8>> {
    if let Some(q) = v.strip_prefix("P\"").and_then(|s| s.strip_suffix('"')) {
        let mut out = Vec::new();
        let mut it = q.bytes().peekable();
        while let Some(b) = it.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            match it.next()? {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let h: String = [it.next()?, it.next()?]
                        .iter()
                        .map(|&c| c as char)
                        .collect();
                    out.push(u8::from_str_radix(&h, 16).ok()?);
                }
                c => out.push(c),
            }
        }
        return Some(out);
    }
    if let Some(q) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Some(q.as_bytes().to_vec());
    }
    hex_bytes(v)
}

fn unquote(v: &str) -> Option<&str> {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
}

/// The keys a network block holds, as NetworkManager takes them.
struct Keys<'b> {
    /// `key_mgmt`, upper case.
    mgmt: String,
    /// Quoted: an 8–63 character passphrase; unquoted: 64 hex digits (raw
    /// PSK).
    psk: Option<&'b str>,
    sae_password: Option<&'b str>,
    wep: Option<&'b str>,
}

impl<'b> Keys<'b> {
    fn of(b: &'b Block) -> Self {
        let psk = b.get("psk").map(String::as_str).and_then(|p| {
            unquote(p).or_else(|| (p.len() == 64 && hex_bytes(p).is_some()).then_some(p))
        });
        Keys {
            mgmt: b
                .get("key_mgmt")
                .map(|s| s.to_ascii_uppercase())
                .unwrap_or_default(),
            psk,
            sae_password: b.get("sae_password").and_then(|p| unquote(p)),
            wep: b.get("wep_key0").map(|k| unquote(k).unwrap_or(k)),
        }
    }

    /// The security these keys and `key_mgmt` make.
    fn security(&self, b: &Block) -> Security {
        let mgmts: Vec<&str> = self.mgmt.split_whitespace().collect();
        let wpa_psk = mgmts.iter().any(|m| m.starts_with("WPA-PSK"));
        let has_eap = mgmts.iter().any(|m| m.contains("EAP") || *m == "IEEE8021X")
            && self.psk.is_none()
            || (self.mgmt.is_empty()
                && self.psk.is_none()
                && (b.contains_key("eap") || b.contains_key("identity")));
        if has_eap {
            Security::Eap
        } else if mgmts.contains(&"SAE") && !wpa_psk {
            Security::Sae
        } else if self.psk.is_some() || wpa_psk {
            Security::WpaPsk
        } else if self.wep.is_some() {
            Security::Wep
        } else {
            Security::None
        }
    }
}

/// Convert one block.
pub fn convert(b: &Block, source: &str) -> Profile {
    let ssid = b.get("ssid").and_then(|v| decode_ssid(v));
    let shown = ssid
        .as_ref()
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let Some(ssid) = ssid else {
        return Profile::skipped(
            Kind::Wifi,
            None,
            Security::None,
            source,
            "network block without a readable ssid",
        );
    };
    let keys = Keys::of(b);
    let security = keys.security(b);
    if security == Security::Eap {
        return Profile::skipped(Kind::Wifi, shown, security, source, "WPA-EAP (802.1X) is not migrated: it needs certificates and identities; supply a keyfile with --nwmgr-cfg");
    }
    if b.get("disabled").map(String::as_str) == Some("1") {
        return Profile::skipped(
            Kind::Wifi,
            shown,
            security,
            source,
            "disabled in wpa_supplicant.conf (disabled=1)",
        );
    }
    let secret = match security {
        Security::Sae => keys.sae_password.or(keys.psk),
        _ => keys.psk,
    };
    if matches!(security, Security::WpaPsk | Security::Sae) && secret.is_none() {
        return Profile::skipped(
            Kind::Wifi,
            shown,
            security,
            source,
            "WPA network without a usable psk",
        );
    }
    let keyfile = wifi_keyfile(&WifiSpec {
        ssid: &ssid,
        security: Some(security),
        psk: secret,
        wep_key: keys.wep,
        hidden: b.get("scan_ssid").map(String::as_str) == Some("1"),
        priority: b.get("priority").and_then(|p| p.parse().ok()),
        bssid: b.get("bssid").map(String::as_str),
        ..WifiSpec::default()
    });
    Profile {
        id: String::new(),
        kind: Kind::Wifi,
        ssid: shown,
        security,
        source: source.into(),
        migrated: true,
        note: None,
        keep_name: None,
        keyfile,
    }
}

/// Convert every block of a file's text.
pub fn convert_text(text: &str, source: &str) -> Vec<Profile> {
    parse_blocks(text)
        .iter()
        .map(|b| convert(b, source))
        .collect()
}

/// `/etc/wpa_supplicant/wpa_supplicant.conf` and per-interface
/// `wpa_supplicant-<iface>.conf` files.
pub fn scan(root: &Path) -> Vec<Profile> {
    let dir = rootfs::join(root, Path::new("etc/wpa_supplicant"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("wpa_supplicant") && n.ends_with(".conf"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .flat_map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).unwrap_or_default();
            convert_text(&text, &format!("/etc/wpa_supplicant/{n}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a Raspbian buster file written by raspi-config plus
    /// hand-added networks.
    const CONF: &str = r#"ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev
update_config=1
country=DE

network={
	ssid="Home Net"
	psk="correct horse battery"
	key_mgmt=WPA-PSK
	priority=5
}

network={
	ssid=4f6666696365
	psk=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
	scan_ssid=1
}

network={
	ssid="Cafe"
	key_mgmt=NONE
}

network={
	ssid="NewRouter"
	key_mgmt=SAE
	sae_password="wpa3 secret"
	ieee80211w=2
}

network={
	ssid="Corp"
	key_mgmt=WPA-EAP
	eap=PEAP
	identity="bob"
	password="x"
}

network={
	ssid="Old"
	psk="oldpassword"
	disabled=1
}
"#;

    #[test]
    fn every_block_kind() {
        let ps = convert_text(CONF, "/etc/wpa_supplicant/wpa_supplicant.conf");
        assert_eq!(ps.len(), 6);
        let home = &ps[0];
        assert!(home.migrated);
        assert_eq!(home.ssid.as_deref(), Some("Home Net"));
        assert_eq!(home.security, Security::WpaPsk);
        let k = &home.keyfile;
        assert_eq!(k.get("wifi-security", "psk"), Some("correct horse battery"));
        assert_eq!(k.get("connection", "autoconnect-priority"), Some("5"));
        let office = &ps[1];
        assert_eq!(office.ssid.as_deref(), Some("Office"), "hex SSID decoded");
        assert_eq!(office.keyfile.get("wifi", "hidden"), Some("true"));
        assert_eq!(
            office.keyfile.get("wifi-security", "psk").map(str::len),
            Some(64)
        );
        assert_eq!(ps[2].security, Security::None);
        assert!(ps[2].migrated && !ps[2].keyfile.has_section("wifi-security"));
        assert_eq!(ps[3].security, Security::Sae);
        assert_eq!(ps[3].keyfile.get("wifi-security", "key-mgmt"), Some("sae"));
        assert_eq!(
            ps[3].keyfile.get("wifi-security", "psk"),
            Some("wpa3 secret")
        );
        assert!(!ps[4].migrated && ps[4].security == Security::Eap);
        assert!(!ps[5].migrated);
    }

    #[test]
    fn ssid_forms() {
        assert_eq!(decode_ssid("\"a b\""), Some(b"a b".to_vec()));
        assert_eq!(decode_ssid("414243"), Some(b"ABC".to_vec()));
        assert_eq!(
            decode_ssid("P\"caf\\xc3\\xa9\""),
            Some("café".as_bytes().to_vec())
        );
        assert_eq!(decode_ssid("xyz"), None);
    }

    #[test]
    fn transition_mode_is_wpa_psk_and_bad_psk_is_refused() {
        let ps = convert_text("network={\nssid=\"T\"\npsk=\"password1\"\nkey_mgmt=WPA-PSK SAE\n}\nnetwork={\nssid=\"B\"\npsk=nothex\nkey_mgmt=WPA-PSK\n}\n", "x");
        assert_eq!(ps[0].security, Security::WpaPsk);
        assert!(!ps[1].migrated);
    }
}
