//! An emulator of the balena API endpoints migrd uses (DESIGN.md), on
//! 127.0.0.1, plus a TCP port standing in for the VPN. std::net only.
//!
//! Endpoints: `GET /ping`, `GET /v6/release` (versions for the slug in
//! `$filter`), `GET /v6/device_type` (contract or id for the slug in
//! `$filter`), `POST /download` (the image; honours `Range`), `PATCH
//! /v6/device(uuid='…')`. Every request is recorded; behaviour knobs
//! simulate bad keys, HTTP errors and dropped connections.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// How the emulator behaves.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The accepted API key (others get 401).
    pub key: String,
    /// Versions per slug (published order).
    pub versions: BTreeMap<String, Vec<String>>,
    /// Slugs whose contract makes them flasher types.
    pub flasher: Vec<String>,
    /// The image served by /download.
    pub image: Vec<u8>,
    /// Close the connection after this many body bytes, for this many downloads.
    pub drop_after: Option<(usize, u32)>,
    /// Answer Range requests with 206 (else ignore Range and send 200).
    pub honour_range: bool,
    /// Force this status on /download.
    pub download_status: Option<u16>,
    /// Body of /ping.
    pub ping_body: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        let mut versions = BTreeMap::new();
        for slug in [
            "raspberrypi4-64",
            "raspberrypi3",
            "generic-amd64",
            "raspberrypi400-64",
        ] {
            versions.insert(
                slug.to_string(),
                [
                    "6.0.13",
                    "5.1.20+rev1",
                    "5.1.20+rev3",
                    "5.0.1",
                    "4.0.23",
                    "6.1.0-rc.1",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        Behaviour {
            key: "FIXTUREKEYdoNotUse0123456789".into(),
            versions,
            flasher: vec!["generic-amd64".into(), "intel-nuc".into()],
            image: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
            drop_after: None,
            honour_range: true,
            download_status: None,
            ping_body: "OK".into(),
        }
    }
}

#[derive(Default)]
struct State {
    log: Vec<Recorded>,
    downloads: u32,
}

/// A running emulator.
pub struct Emulator {
    pub url: String,
    pub vpn_port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    state: Arc<Mutex<State>>,
}

fn slug_in(query: &str) -> String {
    let q = percent_decode(query);
    ["iodt/slug eq '", "is_referenced_by__alias eq '"]
        .iter()
        .find_map(|k| {
            q.split_once(k)
                .and_then(|(_, rest)| rest.split('\'').next())
        })
        .unwrap_or("")
        .to_string()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(s: &mut TcpStream, code: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut h = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let _ = s.write_all(h.as_bytes());
    let _ = s.write_all(body);
}

impl Emulator {
    /// Start with a behaviour.
    pub fn start(b: Behaviour) -> Emulator {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let vpn = TcpListener::bind("127.0.0.1:0").unwrap();
        let vpn_port = vpn.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in vpn.incoming() {
                drop(c)
            }
        });
        let url = format!("http://{}", l.local_addr().unwrap());
        let behaviour = Arc::new(Mutex::new(b));
        let state = Arc::new(Mutex::new(State::default()));
        let (bb, ss) = (behaviour.clone(), state.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let (b, s) = (bb.clone(), ss.clone());
                std::thread::spawn(move || handle(c, &b, &s));
            }
        });
        Emulator {
            url,
            vpn_port,
            behaviour,
            state,
        }
    }

    /// Change behaviour while running.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    /// A config.json text pointing at this emulator.
    pub fn config_json(&self, device_type: &str, key: &str) -> String {
        format!(
            r#"{{"applicationId":"1234567","deviceType":"{device_type}","apiEndpoint":"{}","vpnEndpoint":"127.0.0.1","vpnPort":{},"apiKey":"{key}","registryEndpoint":"registry2.example","userId":1}}"#,
            self.url, self.vpn_port
        )
    }
}

fn handle(mut c: TcpStream, b: &Mutex<Behaviour>, s: &Mutex<State>) {
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) = target
        .split_once('?')
        .map_or((target.clone(), String::new()), |(p, q)| {
            (p.into(), q.into())
        });
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body);
    let rec = Recorded {
        method: method.clone(),
        path: percent_decode(&path),
        query: percent_decode(&query),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into(),
    };
    s.lock().unwrap().log.push(rec);
    let beh = b.lock().unwrap().clone();
    let authed = headers
        .get("authorization")
        .is_some_and(|a| *a == format!("Bearer {}", beh.key));
    if path != "/ping" && !authed {
        return respond(&mut c, 401, &[], b"Unauthorized");
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/ping") => respond(&mut c, 200, &[], beh.ping_body.as_bytes()),
        ("GET", "/v6/release") => {
            let slug = slug_in(&query);
            let d: Vec<String> = beh
                .versions
                .get(&slug)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|v| format!(r#"{{"raw_version":"{v}"}}"#))
                .collect();
            respond(
                &mut c,
                200,
                &[],
                format!(r#"{{"d":[{}]}}"#, d.join(",")).as_bytes(),
            )
        }
        ("GET", "/v6/device_type") => {
            let slug = slug_in(&query);
            if !beh.versions.contains_key(&slug) && !beh.flasher.contains(&slug) {
                return respond(&mut c, 200, &[], br#"{"d":[]}"#);
            }
            let contract = if beh.flasher.contains(&slug) {
                r#"{"slug":"S","data":{"media":{"defaultBoot":"internal","altBoot":["usb_mass_storage","network"]}}}"#
            } else {
                r#"{"slug":"S","data":{"media":{"defaultBoot":"sdcard"}}}"#
            };
            respond(
                &mut c,
                200,
                &[],
                format!(r#"{{"d":[{{"id":58,"contract":{contract}}}]}}"#)
                    .replace("\"S\"", &format!("\"{slug}\""))
                    .as_bytes(),
            )
        }
        ("POST", "/download") => {
            if let Some(code) = beh.download_status {
                return respond(&mut c, code, &[], b"image not available");
            }
            let total = beh.image.len();
            let n = {
                let mut st = s.lock().unwrap();
                st.downloads += 1;
                st.downloads
            };
            let start = headers
                .get("range")
                .filter(|_| beh.honour_range)
                .and_then(|r| {
                    r.strip_prefix("bytes=")?
                        .trim_end_matches('-')
                        .parse::<usize>()
                        .ok()
                })
                .filter(|s| *s < total);
            let (code, extra, slice) = match start {
                Some(st) => (
                    206,
                    vec![("Content-Range", format!("bytes {st}-{}/{total}", total - 1))],
                    &beh.image[st..],
                ),
                None => (200, vec![], &beh.image[..]),
            };
            match beh.drop_after {
                Some((cut, times)) if n <= times && cut < slice.len() => {
                    let mut h = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        slice.len()
                    );
                    for (k, v) in &extra {
                        h.push_str(&format!("{k}: {v}\r\n"));
                    }
                    h.push_str("\r\n");
                    let _ = c.write_all(h.as_bytes());
                    let _ = c.write_all(&slice[..cut]);
                    let _ = c.flush();
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }
                _ => respond(
                    &mut c,
                    code,
                    &extra
                        .iter()
                        .map(|(k, v)| (*k, v.clone()))
                        .collect::<Vec<_>>(),
                    slice,
                ),
            }
        }
        ("PATCH", p) if p.starts_with("/v6/device(uuid=") => respond(&mut c, 200, &[], b"OK"),
        _ => respond(&mut c, 404, &[], b"Not Found"),
    }
}
