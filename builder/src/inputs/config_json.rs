//! balena `config.json`: the fields migrd needs, every other key preserved,
//! secrets never printed.

use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// Errors reading config.json. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read config.json {path}: {source}; pass the file downloaded from the balena dashboard with -c")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not JSON, or not an object.
    #[error("config.json {path} is not a JSON object: {reason}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A required field is missing or has the wrong type.
    #[error("config.json {path}: {field} {problem}; download a fresh config.json for the fleet from the dashboard")]
    Field {
        /// The path.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A secret string; `Debug`/`Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that must send it (HTTP auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A parsed config.json. `Debug` shows the summary only (the raw map holds keys).
#[derive(Clone)]
pub struct ConfigJson {
    /// Where it was read from.
    pub path: PathBuf,
    /// Fleet id (`applicationId`, a number or a numeric string).
    pub application_id: u64,
    /// `deviceType` slug.
    pub device_type: String,
    /// `apiEndpoint`, without a trailing slash.
    pub api_endpoint: String,
    /// `vpnEndpoint`.
    pub vpn_endpoint: Option<String>,
    /// `vpnPort` (number or numeric string), default 443.
    pub vpn_port: u16,
    /// `apiKey`, else `deviceApiKey`.
    pub api_key: Option<Secret>,
    /// `uuid` (provisioned devices only).
    pub uuid: Option<String>,
    /// Every key, as read, for writing back.
    raw: Map<String, Value>,
}

/// What `--json` shows of config.json: no keys.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigSummary {
    /// Fleet id.
    pub application_id: u64,
    /// Device type slug.
    pub device_type: String,
    /// API endpoint.
    pub api_endpoint: String,
    /// VPN endpoint and port.
    pub vpn: Option<String>,
    /// Whether an API key is present (never the key).
    pub has_api_key: bool,
    /// Device uuid, if provisioned.
    pub uuid: Option<String>,
}

impl fmt::Debug for ConfigJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigJson")
            .field("path", &self.path)
            .field("summary", &self.summary())
            .finish_non_exhaustive()
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn string(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl ConfigJson {
    /// Parse config.json text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let v: Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let Value::Object(raw) = v else {
            return Err(ConfigError::Parse {
                path: path.into(),
                reason: "top level is not an object".into(),
            });
        };
        let field = |field: &'static str, problem: &str| ConfigError::Field {
            path: path.into(),
            field,
            problem: problem.into(),
        };
        let application_id = raw
            .get("applicationId")
            .ok_or_else(|| field("applicationId", "is missing"))
            .and_then(|v| number(v).ok_or_else(|| field("applicationId", "is not a number")))?;
        let device_type =
            string(&raw, "deviceType").ok_or_else(|| field("deviceType", "is missing"))?;
        let api_endpoint = string(&raw, "apiEndpoint")
            .ok_or_else(|| field("apiEndpoint", "is missing"))?
            .trim_end_matches('/')
            .to_string();
        if !(api_endpoint.starts_with("https://") || api_endpoint.starts_with("http://")) {
            return Err(field("apiEndpoint", "is not an http(s) URL"));
        }
        let vpn_port = match raw.get("vpnPort") {
            None => 443,
            Some(v) => number(v)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| field("vpnPort", "is not a port number"))?,
        };
        let api_key = string(&raw, "apiKey")
            .or_else(|| string(&raw, "deviceApiKey"))
            .map(Secret);
        Ok(ConfigJson {
            path: path.into(),
            application_id,
            device_type,
            api_endpoint,
            vpn_endpoint: string(&raw, "vpnEndpoint"),
            vpn_port,
            api_key,
            uuid: string(&raw, "uuid"),
            raw,
        })
    }

    /// Read and parse a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Set the hostname the new OS will use.
    pub fn set_hostname(&mut self, hostname: &str) {
        self.raw
            .insert("hostname".into(), Value::String(hostname.into()));
    }

    /// Change the device type (`--change-dt-to`).
    pub fn set_device_type(&mut self, slug: &str) {
        self.device_type = slug.into();
        self.raw
            .insert("deviceType".into(), Value::String(slug.into()));
    }

    /// A raw key, for tests and callers that need one more field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }

    /// The file to write into resin-boot: every key read, plus changes.
    /// Holds secrets: write it 0600 (see [`crate::inputs::write_secret_file`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Value::Object(self.raw.clone())).unwrap_or_default()
    }

    /// The printable summary.
    pub fn summary(&self) -> ConfigSummary {
        ConfigSummary {
            application_id: self.application_id,
            device_type: self.device_type.clone(),
            api_endpoint: self.api_endpoint.clone(),
            vpn: self
                .vpn_endpoint
                .as_ref()
                .map(|e| format!("{e}:{}", self.vpn_port)),
            has_api_key: self.api_key.is_some(),
            uuid: self.uuid.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DASHBOARD: &str = r#"{"applicationId":"1234567","deviceType":"raspberrypi4-64","userId":42,"appUpdatePollInterval":900000,"listenPort":48484,"vpnPort":"443","apiEndpoint":"https://api.balena-cloud.com/","vpnEndpoint":"vpn.balena-cloud.com","registryEndpoint":"registry2.balena-cloud.com","deltaEndpoint":"https://delta.balena-cloud.com","mixpanelToken":"abc","apiKey":"SECRETKEY123","version":"15.0.0","installer":{"secureboot":false}}"#;

    #[test]
    fn reads_dashboard_config_with_string_numbers() {
        let c = ConfigJson::parse(DASHBOARD, Path::new("c.json")).unwrap();
        assert_eq!(c.application_id, 1234567);
        assert_eq!(c.device_type, "raspberrypi4-64");
        assert_eq!(c.api_endpoint, "https://api.balena-cloud.com");
        assert_eq!(c.vpn_port, 443);
        assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("SECRETKEY123"));
        assert!(c.uuid.is_none());
    }

    #[test]
    fn unknown_keys_survive_and_hostname_is_added() {
        let mut c = ConfigJson::parse(DASHBOARD, Path::new("c.json")).unwrap();
        c.set_hostname("kiosk-7");
        c.set_device_type("raspberrypi400-64");
        let v: Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["hostname"], "kiosk-7");
        assert_eq!(v["deviceType"], "raspberrypi400-64");
        assert_eq!(v["installer"]["secureboot"], false);
        assert_eq!(v["mixpanelToken"], "abc");
        assert_eq!(
            v["applicationId"], "1234567",
            "values are written back as read"
        );
    }

    #[test]
    fn secrets_never_in_debug_or_summary() {
        let c = ConfigJson::parse(DASHBOARD, Path::new("c.json")).unwrap();
        assert!(!format!("{c:?}").contains("SECRETKEY123"));
        let s = serde_json::to_string(&c.summary()).unwrap();
        assert!(!s.contains("SECRETKEY123") && s.contains("\"has_api_key\":true"));
    }

    #[test]
    fn device_api_key_fallback_and_numeric_ids() {
        let c = ConfigJson::parse(
            r#"{"applicationId":7,"deviceType":"generic-amd64","apiEndpoint":"https://api.example","deviceApiKey":"dk","uuid":"abcd","vpnPort":1723}"#,
            Path::new("c.json"),
        )
        .unwrap();
        assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("dk"));
        assert_eq!(c.vpn_port, 1723);
        assert_eq!(c.uuid.as_deref(), Some("abcd"));
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = |t: &str| {
            ConfigJson::parse(t, Path::new("/x/config.json"))
                .unwrap_err()
                .to_string()
        };
        assert!(e("not json").contains("/x/config.json"));
        assert!(e("[]").contains("not an object"));
        assert!(e(r#"{"deviceType":"x","apiEndpoint":"https://a"}"#)
            .contains("applicationId is missing"));
        assert!(
            e(r#"{"applicationId":"abc","deviceType":"x","apiEndpoint":"https://a"}"#)
                .contains("not a number")
        );
        assert!(e(r#"{"applicationId":1,"apiEndpoint":"https://a"}"#).contains("deviceType"));
        assert!(
            e(r#"{"applicationId":1,"deviceType":"x","apiEndpoint":"ftp://a"}"#)
                .contains("apiEndpoint")
        );
        assert!(e(
            r#"{"applicationId":1,"deviceType":"x","apiEndpoint":"https://a","vpnPort":99999}"#
        )
        .contains("vpnPort"));
    }
}
