//! NetworkManager keyfiles (`/etc/NetworkManager/system-connections`):
//! Wi-Fi, Ethernet (DHCP or static) and GSM profiles are copied with the
//! settings balenaOS's NetworkManager understands. takeover copied only
//! Wi-Fi keyfiles; Ethernet with a static address and modems were lost.

use super::keyfile::{ssid_display, Keyfile};
use super::{Kind, Profile, Security};
use crate::probe::rootfs;
use std::path::Path;

/// Keys tied to the old system that must not follow the profile: the
/// interface name (`eth0` may be `end0` or `enp1s0` on the new kernel),
/// user permissions (a user-owned profile would not start at boot), and
/// run-time state.
const DROP: [(&str, &str); 4] = [
    ("connection", "interface-name"),
    ("connection", "permissions"),
    ("connection", "timestamp"),
    ("connection", "secondaries"),
];

fn kind_of(t: &str) -> Kind {
    match t {
        "wifi" | "802-11-wireless" => Kind::Wifi,
        "ethernet" | "802-3-ethernet" => Kind::Ethernet,
        "gsm" => Kind::Gsm,
        _ => Kind::Other,
    }
}

fn wifi_section(k: &Keyfile) -> &'static str {
    if k.has_section("802-11-wireless") {
        "802-11-wireless"
    } else {
        "wifi"
    }
}

fn security_section(k: &Keyfile) -> &'static str {
    if k.has_section("802-11-wireless-security") {
        "802-11-wireless-security"
    } else {
        "wifi-security"
    }
}

/// Classify a keyfile (kind, SSID, security) and decide whether it can be
/// migrated. The keyfile is stored unchanged.
pub fn profile_from(k: Keyfile, source: &str) -> Profile {
    let t = k.get("connection", "type").unwrap_or("");
    let kind = kind_of(t);
    let ssid = (kind == Kind::Wifi)
        .then(|| k.get(wifi_section(&k), "ssid").map(ssid_display))
        .flatten();
    let sec = security_section(&k);
    let security = match (kind, k.get(sec, "key-mgmt")) {
        (Kind::Wifi, Some("wpa-psk")) => Security::WpaPsk,
        (Kind::Wifi, Some("sae")) => Security::Sae,
        (Kind::Wifi, Some("wpa-eap" | "wpa-eap-suite-b-192" | "ieee8021x")) => Security::Eap,
        (Kind::Wifi, Some("none")) if k.get(sec, "wep-key0").is_some() => Security::Wep,
        _ if k.has_section("802-1x") => Security::Eap,
        _ => Security::None,
    };
    let why_not = if kind == Kind::Other {
        Some(format!(
            "connection type {t:?} is not migrated (only wifi, ethernet, gsm)"
        ))
    } else if security == Security::Eap {
        Some("802.1X/EAP needs certificates and identities migrd does not copy; supply a keyfile with --nwmgr-cfg".into())
    } else if matches!(security, Security::WpaPsk | Security::Sae) && k.get(sec, "psk").is_none() {
        Some("the passphrase is not stored in the file (kept by a secret agent); supply a keyfile with --nwmgr-cfg".into())
    } else if kind == Kind::Wifi && ssid.is_none() {
        Some("no SSID".into())
    } else {
        None
    };
    Profile {
        id: String::new(),
        kind,
        ssid,
        security,
        source: source.into(),
        migrated: why_not.is_none(),
        note: why_not,
        keep_name: None,
        keyfile: k,
    }
}

/// Convert one keyfile from the old system.
pub fn convert(text: &str, source: &str) -> Profile {
    let mut p = profile_from(Keyfile::parse(text), source);
    for (s, key) in DROP {
        p.keyfile.remove(s, key);
    }
    // Hard-wired interface MACs stay: the hardware does not change.
    p
}

/// Every keyfile in `<root>/etc/NetworkManager/system-connections`.
pub fn scan(root: &Path) -> Vec<Profile> {
    let dir = rootfs::join(root, Path::new("etc/NetworkManager/system-connections"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(&f).ok()?;
            let name = f.file_name()?.to_string_lossy().into_owned();
            Some(convert(
                &text,
                &format!("/etc/NetworkManager/system-connections/{name}"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Raspberry Pi OS bookworm's imager writes it.
    const PI_WIFI: &str = "[connection]\nid=preconfigured\nuuid=6d7b7d47-2a2e-4d3b-9c4f-0e6c5a7b8e3c\ntype=wifi\ninterface-name=wlan0\ntimestamp=1700000000\n\n[wifi]\nmode=infrastructure\nssid=Office WLAN\nhidden=true\n\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\n[ipv4]\nmethod=auto\n\n[ipv6]\naddr-gen-mode=default\nmethod=auto\n\n[proxy]\n";

    const STATIC_ETH: &str = "[connection]\nid=Wired static\nuuid=1c3a0f0e-9f1b-4c55-a0b2-5a9d0c1e2f33\ntype=ethernet\ninterface-name=eth0\npermissions=user:pi:;\n\n[ethernet]\n\n[ipv4]\naddress1=192.168.10.20/24,192.168.10.1\ndns=192.168.10.1;8.8.8.8;\nmethod=manual\n\n[ipv6]\nmethod=ignore\n";

    #[test]
    fn wifi_keeps_settings_and_drops_host_ties() {
        let p = convert(PI_WIFI, "x");
        assert!(p.migrated);
        assert_eq!(p.kind, Kind::Wifi);
        assert_eq!(p.ssid.as_deref(), Some("Office WLAN"));
        assert_eq!(p.security, Security::WpaPsk);
        let out = p.keyfile.render();
        assert!(!out.contains("interface-name") && !out.contains("timestamp"));
        assert!(out.contains("hidden=true") && out.contains("psk=0123"));
    }

    #[test]
    fn static_ethernet_and_gsm_are_migrated() {
        let p = convert(STATIC_ETH, "x");
        assert!(p.migrated);
        assert_eq!(p.kind, Kind::Ethernet);
        let out = p.keyfile.render();
        assert!(
            out.contains("address1=192.168.10.20/24,192.168.10.1") && out.contains("method=manual")
        );
        assert!(!out.contains("permissions"));
        let gsm = convert(
            "[connection]\nid=LTE\ntype=gsm\n\n[gsm]\napn=internet.t-mobile\npin=1234\n",
            "x",
        );
        assert!(gsm.migrated && gsm.kind == Kind::Gsm);
    }

    #[test]
    fn eap_vpn_and_agent_secrets_are_reported_not_migrated() {
        let eap = convert("[connection]\nid=Corp\ntype=wifi\n[wifi]\nssid=Corp\n[wifi-security]\nkey-mgmt=wpa-eap\n[802-1x]\neap=peap;\nidentity=bob\n", "x");
        assert!(!eap.migrated && eap.security == Security::Eap);
        let vpn = convert("[connection]\nid=vpn\ntype=vpn\n[vpn]\nservice-type=org.freedesktop.NetworkManager.openvpn\n", "x");
        assert!(!vpn.migrated && vpn.kind == Kind::Other);
        let agent = convert("[connection]\nid=Home\ntype=wifi\n[wifi]\nssid=Home\n[wifi-security]\nkey-mgmt=wpa-psk\npsk-flags=1\n", "x");
        assert!(!agent.migrated);
        assert!(agent.note.unwrap_or_default().contains("secret agent"));
    }

    #[test]
    fn legacy_section_names_and_sae() {
        let p = convert("[connection]\nid=x\ntype=802-11-wireless\n[802-11-wireless]\nssid=72;111;109;101;\n[802-11-wireless-security]\nkey-mgmt=sae\npsk=secretpass\n", "x");
        assert!(p.migrated);
        assert_eq!(p.ssid.as_deref(), Some("Home"));
        assert_eq!(p.security, Security::Sae);
    }
}
