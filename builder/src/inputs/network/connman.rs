//! connman service settings (`/var/lib/connman/<service>/settings`) →
//! NetworkManager keyfiles. The security is the last part of the service
//! id (`..._managed_psk`); static IPv4 settings are carried over.

use super::keyfile::{wifi_keyfile, Keyfile, WifiSpec};
use super::wpa_supplicant::decode_ssid;
use super::{Kind, Profile, Security};
use crate::probe::rootfs;
use std::path::Path;

fn static_ipv4(k: &Keyfile, s: &str) -> Option<(String, Option<String>)> {
    if k.get(s, "IPv4.method") != Some("manual") {
        return None;
    }
    let addr = k.get(s, "IPv4.local_address")?;
    let prefix = k.get(s, "IPv4.netmask_prefixlen").unwrap_or("24");
    Some((
        format!("{addr}/{prefix}"),
        k.get(s, "IPv4.gateway").map(str::to_string),
    ))
}

fn dns(k: &Keyfile, s: &str) -> Vec<String> {
    k.get(s, "Nameservers")
        .map(|v| {
            v.split(';')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Convert one settings file.
pub fn convert(text: &str, source: &str) -> Option<Profile> {
    let k = Keyfile::parse(text);
    let (section, _) = k.sections.first()?;
    let s = section.as_str();
    Some(if s.starts_with("ethernet_") {
        ethernet(&k, s, source)
    } else if s.starts_with("wifi_") {
        wifi(&k, s, source)
    } else {
        Profile::skipped(
            Kind::Other,
            None,
            Security::None,
            source,
            "connman service type not migrated",
        )
    })
}

/// An `ethernet_*` service: DHCP, or its static IPv4 settings.
fn ethernet(k: &Keyfile, s: &str, source: &str) -> Profile {
    let mut out = Keyfile::default();
    out.set("connection", "id", "");
    out.set("connection", "type", "ethernet");
    out.set("ethernet", "", "");
    out.remove("ethernet", "");
    match static_ipv4(k, s) {
        Some((addr, gw)) => {
            out.set("ipv4", "method", "manual");
            out.set(
                "ipv4",
                "address1",
                gw.map_or(addr.clone(), |g| format!("{addr},{g}")),
            );
            let d = dns(k, s);
            if !d.is_empty() {
                out.set(
                    "ipv4",
                    "dns",
                    d.iter().map(|x| format!("{x};")).collect::<String>(),
                );
            }
        }
        None => out.set("ipv4", "method", "auto"),
    }
    out.set("ipv6", "method", "auto");
    Profile {
        id: String::new(),
        kind: Kind::Ethernet,
        ssid: None,
        security: Security::None,
        source: source.into(),
        migrated: true,
        note: None,
        keep_name: None,
        keyfile: out,
    }
}

/// A `wifi_*` service: its SSID, security (the id's last part) and
/// passphrase; 802.1X and services without a passphrase are skipped.
fn wifi(k: &Keyfile, s: &str, source: &str) -> Profile {
    let ssid = k
        .get(s, "SSID")
        .and_then(decode_ssid)
        .or_else(|| k.get(s, "Name").map(|n| n.as_bytes().to_vec()));
    let shown = ssid
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let security = match s.rsplit('_').next() {
        Some("psk") => Security::WpaPsk,
        Some("sae") => Security::Sae,
        Some("wep") => Security::Wep,
        Some("ieee8021x") => Security::Eap,
        _ => Security::None,
    };
    let Some(ssid) = ssid else {
        return Profile::skipped(Kind::Wifi, None, security, source, "no SSID or Name");
    };
    if security == Security::Eap {
        return Profile::skipped(
            Kind::Wifi,
            shown,
            security,
            source,
            "802.1X is not migrated: supply a keyfile with --nwmgr-cfg",
        );
    }
    let pass = k.get(s, "Passphrase");
    if security != Security::None && pass.is_none() {
        return Profile::skipped(Kind::Wifi, shown, security, source, "no Passphrase stored");
    }
    let keyfile = wifi_keyfile(&WifiSpec {
        ssid: &ssid,
        security: Some(security),
        psk: pass.filter(|_| security != Security::Wep),
        wep_key: pass.filter(|_| security == Security::Wep),
        hidden: k.get(s, "Hidden") == Some("true"),
        ipv4: static_ipv4(k, s),
        dns: dns(k, s),
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

/// Every `<root>/var/lib/connman/*/settings`.
pub fn scan(root: &Path) -> Vec<Profile> {
    let dir = rootfs::join(root, Path::new("var/lib/connman"));
    let mut services: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("settings").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    services.sort();
    services
        .into_iter()
        .filter_map(|s| {
            let text = std::fs::read_to_string(dir.join(&s).join("settings")).ok()?;
            convert(&text, &format!("/var/lib/connman/{s}/settings"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wifi_psk_with_static_address() {
        let t = "[wifi_d05fb8123456_486f6d65_managed_psk]\nName=Home\nSSID=486f6d65\nFrequency=2412\nFavorite=true\nAutoConnect=true\nModified=2019-05-01T10:00:00.000000Z\nPassphrase=s3cret pass\nIPv4.method=manual\nIPv4.netmask_prefixlen=24\nIPv4.local_address=10.0.0.7\nIPv4.gateway=10.0.0.1\nNameservers=10.0.0.1;1.1.1.1;\nIPv6.method=auto\nIPv6.privacy=disabled\n";
        let p = convert(t, "x").unwrap();
        assert!(p.migrated);
        assert_eq!(p.ssid.as_deref(), Some("Home"));
        assert_eq!(p.security, Security::WpaPsk);
        assert_eq!(p.keyfile.get("wifi-security", "psk"), Some("s3cret pass"));
        assert_eq!(
            p.keyfile.get("ipv4", "address1"),
            Some("10.0.0.7/24,10.0.0.1")
        );
        assert_eq!(p.keyfile.get("ipv4", "dns"), Some("10.0.0.1;1.1.1.1;"));
    }

    #[test]
    fn open_ethernet_and_eap() {
        let open = convert(
            "[wifi_x_46726565_managed_none]\nName=Free\nSSID=46726565\n",
            "x",
        )
        .unwrap();
        assert!(open.migrated && open.security == Security::None);
        let eth = convert(
            "[ethernet_d05fb8123456_cable]\nAutoConnect=true\nIPv4.method=dhcp\n",
            "x",
        )
        .unwrap();
        assert!(eth.migrated && eth.kind == Kind::Ethernet);
        assert_eq!(eth.keyfile.get("ipv4", "method"), Some("auto"));
        let eap = convert("[wifi_x_436f7270_managed_ieee8021x]\nName=Corp\n", "x").unwrap();
        assert!(!eap.migrated);
    }
}
