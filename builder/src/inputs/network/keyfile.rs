//! A NetworkManager keyfile as ordered sections of `key=value` lines: parsed
//! from existing profiles, built for converted ones, rendered for balenaOS.

/// An ordered keyfile. Values are kept exactly as written (keyfile escapes
/// included), so copying a profile does not change its meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyfile {
    /// `(section, [(key, value)])`, in file order.
    pub sections: Vec<(String, Vec<(String, String)>)>,
}

impl Keyfile {
    /// Parse keyfile / INI text. Comments (`#`, `;`) and blank lines are dropped.
    pub fn parse(text: &str) -> Keyfile {
        let mut k = Keyfile::default();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                k.sections.push((name.trim().to_string(), Vec::new()));
            } else if let Some((key, value)) = l.split_once('=') {
                if k.sections.is_empty() {
                    continue; // keys before any section are invalid in keyfiles
                }
                if let Some((_, kv)) = k.sections.last_mut() {
                    kv.push((key.trim().to_string(), value.trim_start().to_string()));
                }
            }
        }
        k
    }

    /// A value.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .filter(|(s, _)| s == section)
            .flat_map(|(_, kv)| kv.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a section exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|(s, _)| s == section)
    }

    /// Set a value, adding the section and key as needed.
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<String>) {
        let value = value.into();
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let kv = &mut self.sections[idx].1;
        match kv.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value,
            None => kv.push((key.to_string(), value)),
        }
    }

    /// Remove a key.
    pub fn remove(&mut self, section: &str, key: &str) {
        for (s, kv) in &mut self.sections {
            if s == section {
                kv.retain(|(k, _)| k != key);
            }
        }
    }

    /// Render as keyfile text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (s, kv)) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{s}]\n"));
            for (k, v) in kv {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        out
    }
}

/// Encode an SSID for a keyfile: plain text when it is printable and has
/// nothing keyfile would reinterpret, else NM's byte-list form (`72;105;`).
pub fn ssid_value(ssid: &[u8]) -> String {
    let plain = std::str::from_utf8(ssid).ok().filter(|s| {
        !s.is_empty()
            && !s.starts_with(' ')
            && !s.ends_with(' ')
            && s.chars().all(|c| !c.is_control() && c != '\\' && c != ';')
            && !s.chars().all(|c| c.is_ascii_digit())
    });
    match plain {
        Some(s) => s.to_string(),
        None => ssid.iter().map(|b| format!("{b};")).collect(),
    }
}

/// Decode a keyfile SSID value (plain text or byte list) for display.
pub fn ssid_display(value: &str) -> String {
    let v = value.trim();
    if v.contains(';')
        && v.split(';')
            .filter(|p| !p.is_empty())
            .all(|p| p.parse::<u8>().is_ok())
    {
        let bytes: Vec<u8> = v.split(';').filter_map(|p| p.parse().ok()).collect();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    v.to_string()
}

/// Escape a string value the way keyfile (GKeyFile) reads it back.
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' ' if i == 0 => out.push_str("\\s"),
            c => out.push(c),
        }
    }
    out
}

/// What a converted Wi-Fi profile needs.
#[derive(Clone, Debug, Default)]
pub struct WifiSpec<'a> {
    /// SSID bytes.
    pub ssid: &'a [u8],
    /// Security.
    pub security: Option<super::Security>,
    /// WPA passphrase (8–63 chars) or 64-hex raw PSK.
    pub psk: Option<&'a str>,
    /// WEP key 0.
    pub wep_key: Option<&'a str>,
    /// Hidden network (probe by SSID).
    pub hidden: bool,
    /// Autoconnect priority.
    pub priority: Option<i32>,
    /// Lock to one access point.
    pub bssid: Option<&'a str>,
    /// Static IPv4 `address/prefix` and gateway, if the source had one.
    pub ipv4: Option<(String, Option<String>)>,
    /// DNS servers for a static address.
    pub dns: Vec<String>,
}

/// Build a Wi-Fi keyfile (the id is set by the caller).
pub fn wifi_keyfile(w: &WifiSpec<'_>) -> Keyfile {
    use super::Security;
    let mut k = Keyfile::default();
    k.set("connection", "id", "");
    k.set("connection", "type", "wifi");
    if let Some(p) = w.priority {
        k.set(
            "connection",
            "autoconnect-priority",
            p.clamp(-999, 999).to_string(),
        );
    }
    k.set("wifi", "mode", "infrastructure");
    k.set("wifi", "ssid", ssid_value(w.ssid));
    if w.hidden {
        k.set("wifi", "hidden", "true");
    }
    if let Some(b) = w.bssid {
        k.set("wifi", "bssid", b.to_ascii_uppercase());
    }
    match w.security.unwrap_or(Security::None) {
        Security::WpaPsk | Security::Sae => {
            let mgmt = if w.security == Some(Security::Sae) {
                "sae"
            } else {
                "wpa-psk"
            };
            k.set("wifi-security", "key-mgmt", mgmt);
            if let Some(p) = w.psk {
                k.set("wifi-security", "psk", escape_value(p));
            }
        }
        Security::Wep => {
            k.set("wifi-security", "key-mgmt", "none");
            k.set("wifi-security", "auth-alg", "open");
            if let Some(key) = w.wep_key {
                k.set("wifi-security", "wep-key0", escape_value(key));
                // Type 1: a key (10/26 hex digits or 5/13 ASCII characters),
                // which is what wpa_supplicant's wep_key0 and connman hold.
                k.set("wifi-security", "wep-key-type", "1");
            }
        }
        Security::None | Security::Eap => {}
    }
    match &w.ipv4 {
        Some((addr, gw)) => {
            let v = match gw {
                Some(g) => format!("{addr},{g}"),
                None => addr.clone(),
            };
            k.set("ipv4", "method", "manual");
            k.set("ipv4", "address1", v);
            if !w.dns.is_empty() {
                k.set(
                    "ipv4",
                    "dns",
                    w.dns.iter().map(|d| format!("{d};")).collect::<String>(),
                );
            }
        }
        None => k.set("ipv4", "method", "auto"),
    }
    k.set("ipv6", "addr-gen-mode", "stable-privacy");
    k.set("ipv6", "method", "auto");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_set_render_round_trip() {
        let mut k = Keyfile::parse("# c\n[connection]\nid=Home\ntype=wifi\n\n[wifi]\nssid=Home\n");
        assert_eq!(k.get("connection", "id"), Some("Home"));
        k.set("connection", "id", "migrd-wifi-01");
        k.set("ipv4", "method", "auto");
        k.remove("wifi", "ssid");
        assert_eq!(
            k.render(),
            "[connection]\nid=migrd-wifi-01\ntype=wifi\n\n[wifi]\n\n[ipv4]\nmethod=auto\n"
        );
    }

    #[test]
    fn ssid_encoding() {
        assert_eq!(ssid_value(b"Cafe Wifi"), "Cafe Wifi");
        assert_eq!(ssid_value(b"a;b"), "97;59;98;");
        assert_eq!(ssid_value(b"1234"), "49;50;51;52;");
        assert_eq!(ssid_value(&[0xff, 0x41]), "255;65;");
        assert_eq!(ssid_display("72;105;"), "Hi");
        assert_eq!(ssid_display("Home"), "Home");
    }
}
