//! The report the synthetic balenaOS prints at boot (`balena-reporter`, its
//! PID 1): what a migration left on resin-boot and resin-data. Collected
//! here from mounted folders, so the logic is tested on the host; the
//! binary only mounts, calls [`collect`] and prints [`LINE_PREFIX`] + JSON.

use serde_json::{json, Map, Value};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The console line: this prefix, then the report as one line of JSON.
pub const LINE_PREFIX: &str = "BALENA-REPORT ";

/// config.json keys whose values never reach the console.
pub const SECRET_KEYS: &[&str] = &["apiKey", "deviceApiKey"];

/// The report from a serial log: the last `BALENA-REPORT {json}` line.
pub fn parse(serial: &str) -> Option<Value> {
    serial
        .lines()
        .rev()
        .filter_map(|l| l.find(LINE_PREFIX).map(|i| &l[i + LINE_PREFIX.len()..]))
        .find_map(|j| serde_json::from_str(j.trim_end_matches('\r')).ok())
}

/// Filesystem label from a partition's first 1,160+ bytes: ext2/3/4 (the
/// superblock at 1024, label at +0x78) or FAT (boot sector: FAT32 label at
/// 0x47, FAT12/16 at 0x2b). None for anything else or "NO NAME".
pub fn fs_label(head: &[u8]) -> Option<String> {
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b)
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .to_string();
        (!s.is_empty() && s != "NO NAME").then_some(s)
    };
    if head.len() >= 1024 + 0x88 && head[1024 + 0x38..1024 + 0x3a] == [0x53, 0xef] {
        return text(&head[1024 + 0x78..1024 + 0x88]);
    }
    if head.len() >= 512 && head[510..512] == [0x55, 0xaa] {
        if &head[0x52..0x57] == b"FAT32" {
            return text(&head[0x47..0x52]);
        }
        if &head[0x36..0x39] == b"FAT" {
            return text(&head[0x2b..0x36]);
        }
    }
    None
}

/// config.json with secret values replaced by `"<redacted>"`, and whether
/// an API key was there.
pub fn redact(mut cfg: Value) -> (Value, bool) {
    let mut has_key = false;
    if let Some(obj) = cfg.as_object_mut() {
        for k in SECRET_KEYS {
            if let Some(v) = obj.get_mut(*k) {
                has_key |= v.as_str().is_some_and(|s| !s.is_empty());
                *v = json!("<redacted>");
            }
        }
    }
    (cfg, has_key)
}

/// Build the report. `boot` and `data` are where resin-boot and resin-data
/// are mounted (None when not found or not mountable); `partitions` the
/// labels found on the disk; problems go to `errors` instead of failing.
pub fn collect(
    boot: Option<&Path>,
    data: Option<&Path>,
    partitions: &[String],
    errors: &mut Vec<String>,
) -> Value {
    let mut r = Map::new();
    r.insert("partitions".into(), json!(partitions));
    let (cfg, has_key) = match boot.map(|b| b.join("config.json")) {
        Some(p) if p.exists() => match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => redact(v),
            Err(e) => {
                errors.push(format!("config.json: {e}"));
                (Value::Null, false)
            }
        },
        _ => (Value::Null, false),
    };
    r.insert("hostname".into(), cfg["hostname"].clone());
    r.insert("has_api_key".into(), json!(has_key));
    r.insert("config_json".into(), cfg);
    r.insert(
        "system_connections".into(),
        boot.map(|b| connections(&b.join("system-connections"), errors))
            .unwrap_or(Value::Null),
    );
    r.insert(
        "backup".into(),
        data.map(|d| backup(&d.join("backup.tgz"), errors))
            .unwrap_or(Value::Null),
    );
    r.insert(
        "migration_log".into(),
        data.map(|d| migration_log(d, errors))
            .unwrap_or(Value::Null),
    );
    r.insert("errors".into(), json!(errors));
    Value::Object(r)
}

fn connections(dir: &Path, errors: &mut Vec<String>) -> Value {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return json!([]),
        Err(e) => {
            errors.push(format!("system-connections: {e}"));
            return Value::Null;
        }
    };
    let mut v: Vec<Value> = rd
        .flatten()
        .map(|e| {
            let mode = e
                .metadata()
                .map(|m| format!("{:04o}", m.permissions().mode() & 0o7777))
                .unwrap_or_default();
            json!({"name": e.file_name().to_string_lossy(), "mode": mode})
        })
        .collect();
    v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Array(v)
}

fn backup(path: &Path, errors: &mut Vec<String>) -> Value {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Value::Null,
        Err(e) => {
            errors.push(format!("backup.tgz: {e}"));
            return Value::Null;
        }
    };
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut names = Vec::new();
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("backup.tgz: {e}"));
            return Value::Null;
        }
    };
    for e in entries {
        match e.and_then(|e| e.path().map(|p| p.to_string_lossy().into_owned())) {
            Ok(p) => names.push(p),
            Err(e) => {
                errors.push(format!("backup.tgz: {e}"));
                break;
            }
        }
    }
    json!(names)
}

/// Files named `migrd*` at the root of resin-data and every file under
/// `resin-data/migrd/`, with sizes.
fn migration_log(data: &Path, errors: &mut Vec<String>) -> Value {
    let mut files = Vec::new();
    let mut walk = vec![(data.to_path_buf(), String::new(), false)];
    while let Some((dir, rel, inside)) = walk.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                errors.push(format!("resin-data/{rel}: {e}"));
                continue;
            }
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let hit = inside || name.starts_with("migrd");
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() && hit {
                walk.push((e.path(), path, true));
            } else if md.is_file() && hit {
                files.push((path, md.len()));
            }
        }
    }
    files.sort();
    let total: u64 = files.iter().map(|f| f.1).sum();
    json!({
        "present": !files.is_empty(),
        "size": total,
        "files": files.iter().map(|(p, s)| json!({"path": p, "size": s})).collect::<Vec<_>>(),
    })
}

/// Read up to `n` bytes from the start of a device or file.
pub fn read_head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    std::fs::File::open(path)?
        .take(n as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn labels_of_ext4_and_both_fat_layouts() {
        let mut ext = vec![0u8; 2048];
        ext[1024 + 0x38] = 0x53;
        ext[1024 + 0x39] = 0xef;
        ext[1024 + 0x78..1024 + 0x78 + 10].copy_from_slice(b"resin-data");
        assert_eq!(fs_label(&ext).as_deref(), Some("resin-data"));
        let mut fat16 = vec![0u8; 512];
        fat16[510] = 0x55;
        fat16[511] = 0xaa;
        fat16[0x36..0x3e].copy_from_slice(b"FAT16   ");
        fat16[0x2b..0x36].copy_from_slice(b"resin-boot ");
        assert_eq!(fs_label(&fat16).as_deref(), Some("resin-boot"));
        let mut fat32 = vec![0u8; 512];
        fat32[510] = 0x55;
        fat32[511] = 0xaa;
        fat32[0x52..0x5a].copy_from_slice(b"FAT32   ");
        fat32[0x47..0x52].copy_from_slice(b"NO NAME    ");
        assert_eq!(fs_label(&fat32), None);
        assert_eq!(fs_label(&[0u8; 100]), None);
    }

    #[test]
    fn secrets_are_redacted_and_flagged() {
        let (v, has) = redact(json!({"apiKey": "s3cret", "deviceApiKey": "", "hostname": "h"}));
        assert!(has);
        assert_eq!(v["apiKey"], "<redacted>");
        assert_eq!(v["deviceApiKey"], "<redacted>");
        assert_eq!(v["hostname"], "h");
        assert!(!v.to_string().contains("s3cret"));
        assert!(!redact(json!({"deviceApiKey": ""})).1);
    }

    #[test]
    fn collects_everything_a_migration_leaves() -> anyhow::Result<()> {
        let t = tempfile::tempdir()?;
        let (boot, data) = (t.path().join("boot"), t.path().join("data"));
        std::fs::create_dir_all(boot.join("system-connections"))?;
        std::fs::create_dir_all(data.join("migrd"))?;
        std::fs::write(
            boot.join("config.json"),
            r#"{"hostname":"vmlab-legacy","apiKey":"k","uuid":"u"}"#,
        )?;
        let wifi = boot.join("system-connections/wifi-home");
        std::fs::write(&wifi, "[connection]\n")?;
        std::fs::set_permissions(&wifi, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(data.join("migrd/migration.log"), "0123456789")?;
        std::fs::write(data.join("migrd-status.json"), "{}")?;
        let mut tb = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(data.join("backup.tgz"))?,
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        tb.append_data(&mut h, "volume1/file.txt", &b"abc"[..])?;
        tb.into_inner()?.finish()?.flush()?;

        let mut errors = Vec::new();
        let r = collect(
            Some(&boot),
            Some(&data),
            &["resin-boot".into(), "resin-data".into()],
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(r["hostname"], "vmlab-legacy");
        assert_eq!(r["has_api_key"], true);
        assert_eq!(r["config_json"]["apiKey"], "<redacted>");
        assert_eq!(
            r["system_connections"],
            json!([{"name": "wifi-home", "mode": "0600"}])
        );
        assert_eq!(r["backup"], json!(["volume1/file.txt"]));
        assert_eq!(r["migration_log"]["present"], true);
        assert_eq!(r["migration_log"]["size"], 12);
        assert_eq!(r["migration_log"]["files"][0]["path"], "migrd-status.json");
        let line = format!("[  1.0] noise\r\n{LINE_PREFIX}{r}\r\n");
        assert_eq!(parse(&line), Some(r));
        Ok(())
    }

    #[test]
    fn fresh_image_reports_nothing_and_bad_files_become_errors() -> anyhow::Result<()> {
        let t = tempfile::tempdir()?;
        let mut errors = Vec::new();
        let r = collect(Some(t.path()), Some(t.path()), &[], &mut errors);
        assert_eq!(r["config_json"], Value::Null);
        assert_eq!(r["hostname"], Value::Null);
        assert_eq!(r["system_connections"], json!([]));
        assert_eq!(r["backup"], Value::Null);
        assert_eq!(r["migration_log"]["present"], false);
        std::fs::write(t.path().join("config.json"), "{not json")?;
        std::fs::write(t.path().join("backup.tgz"), "not gzip")?;
        let mut errors = Vec::new();
        let r = collect(Some(t.path()), Some(t.path()), &[], &mut errors);
        assert_eq!(r["config_json"], Value::Null);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(r["errors"].as_array().map(Vec::len), Some(2));
        Ok(())
    }
}
