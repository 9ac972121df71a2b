//! HTTP client for the balena API (reqwest, rustls).

use crate::inputs::config_json::Secret;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// API failures, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The key in config.json was refused.
    #[error("the balena API at {endpoint} rejected the key from config.json (HTTP {status}) on {what}: the apiKey/deviceApiKey may be revoked or belong to another balena environment; download a fresh config.json")]
    Auth {
        /// API endpoint.
        endpoint: String,
        /// 401 or 403.
        status: u16,
        /// Which call.
        what: String,
    },
    /// Any other non-success status.
    #[error("the balena API at {endpoint} answered HTTP {status} to {what}{detail}")]
    Status {
        /// API endpoint.
        endpoint: String,
        /// The status.
        status: u16,
        /// Which call.
        what: String,
        /// A hint or the start of the body.
        detail: String,
    },
    /// Could not connect, TLS failure, timeout, dropped connection.
    #[error("cannot reach the balena API at {endpoint} ({what}): {reason}; check the network, DNS and proxy, or use --no-api-check / -i IMAGE")]
    Network {
        /// API endpoint.
        endpoint: String,
        /// Which call.
        what: String,
        /// The cause.
        reason: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the balena API at {endpoint} to {what}: {reason}")]
    Body {
        /// API endpoint.
        endpoint: String,
        /// Which call.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the downloaded image failed.
    #[error("writing the image to {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        reason: String,
    },
}

/// A client bound to one API endpoint and key.
pub struct Client {
    pub(crate) endpoint: String,
    key: Option<Secret>,
    pub(crate) http: reqwest::blocking::Client,
}

/// Filter for host-OS releases of a device type: final, passing tests, not
/// invalidated, successful, default release policy (takeover's query).
fn release_filter(slug: &str) -> String {
    format!(
        "(is_final eq true) and (is_passing_tests eq true) and (is_invalidated eq false) and (status eq 'success') and (belongs_to__application/any(bta:((bta/is_host eq true) and (bta/is_for__device_type/any(iodt:iodt/slug eq '{slug}')) and (not(bta/application_tag/any(at:at/tag_key eq 'release-policy')) or (bta/application_tag/any(at:(at/tag_key eq 'release-policy') and (at/value eq 'default')))))))"
    )
}

fn alias_filter(slug: &str) -> String {
    format!("device_type_alias/any(dta:dta/is_referenced_by__alias eq '{slug}')")
}

impl Client {
    /// A client for `endpoint` (`https://api.balena-cloud.com`), with
    /// `timeout` for connecting and for each read.
    pub fn new(endpoint: &str, key: Option<Secret>, timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("migrd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Network {
                endpoint: endpoint.into(),
                what: "setting up HTTPS".into(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            key,
            http,
        })
    }

    pub(crate) fn auth(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.key {
            Some(k) => rb.bearer_auth(k.expose()),
            None => rb,
        }
    }

    pub(crate) fn net_err(&self, what: &str, e: &reqwest::Error) -> ApiError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason.push_str(&format!(": {s}"));
            src = s.source();
        }
        ApiError::Network {
            endpoint: self.endpoint.clone(),
            what: what.into(),
            reason,
        }
    }

    /// Turn a non-success status into an error.
    pub(crate) fn check_status(&self, what: &str, r: Response) -> Result<Response, ApiError> {
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ApiError::Auth {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                what: what.into(),
            });
        }
        let body: String = r.text().unwrap_or_default().chars().take(200).collect();
        let detail = match status.as_u16() {
            404 => ": not found (is the device type slug or version right?)".to_string(),
            _ if body.trim().is_empty() => String::new(),
            _ => format!(": {}", body.trim()),
        };
        Err(ApiError::Status {
            endpoint: self.endpoint.clone(),
            status: status.as_u16(),
            what: what.into(),
            detail,
        })
    }

    fn get_json(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        let r = self
            .auth(
                self.http
                    .get(format!("{}{path}", self.endpoint))
                    .query(query),
            )
            .send()
            .map_err(|e| self.net_err(what, &e))?;
        let r = self.check_status(what, r)?;
        r.json().map_err(|e| ApiError::Body {
            endpoint: self.endpoint.clone(),
            what: what.into(),
            reason: e.to_string(),
        })
    }

    /// `GET /ping` must answer 200 with body `OK`.
    pub fn ping(&self) -> Result<(), ApiError> {
        let what = "GET /ping";
        let r = self
            .auth(self.http.get(format!("{}/ping", self.endpoint)))
            .send()
            .map_err(|e| self.net_err(what, &e))?;
        let r = self.check_status(what, r)?;
        let body = r.text().map_err(|e| self.net_err(what, &e))?;
        if body.trim() == "OK" {
            Ok(())
        } else {
            Err(ApiError::Body {
                endpoint: self.endpoint.clone(),
                what: what.into(),
                reason: format!(
                    "body is {:?}, not \"OK\"",
                    body.chars().take(60).collect::<String>()
                ),
            })
        }
    }

    /// Host-OS versions (`raw_version`) published for a device type, newest first.
    pub fn versions(&self, slug: &str) -> Result<Vec<String>, ApiError> {
        let what = format!("listing balenaOS versions for {slug}");
        let v = self.get_json(
            &what,
            "/v6/release",
            &[
                ("$select", "raw_version".into()),
                ("$filter", release_filter(slug)),
                ("$orderby", "created_at desc".into()),
            ],
        )?;
        let list = v["d"].as_array().ok_or_else(|| ApiError::Body {
            endpoint: self.endpoint.clone(),
            what: what.clone(),
            reason: "no 'd' array".into(),
        })?;
        Ok(list
            .iter()
            .filter_map(|r| r["raw_version"].as_str().map(str::to_string))
            .collect())
    }

    /// The device type's contract, `None` when the slug is unknown.
    pub fn device_type_contract(&self, slug: &str) -> Result<Option<Value>, ApiError> {
        let v = self.get_json(
            &format!("reading the {slug} device type"),
            "/v6/device_type",
            &[
                ("$orderby", "name asc".into()),
                ("$top", "1".into()),
                ("$select", "contract".into()),
                ("$filter", alias_filter(slug)),
            ],
        )?;
        Ok(v["d"]
            .as_array()
            .and_then(|a| a.first())
            .map(|d| d["contract"].clone()))
    }

    /// Whether the API serves a flasher image for this type by default (so
    /// migrd must ask for the raw image): the contract boots from internal
    /// media with an alternative boot medium and no flash protocol.
    pub fn is_flasher(&self, slug: &str) -> Result<bool, ApiError> {
        Ok(self
            .device_type_contract(slug)?
            .is_some_and(|c| contract_is_flasher(&c)))
    }

    /// Numeric id of a device type.
    pub fn device_type_id(&self, slug: &str) -> Result<u64, ApiError> {
        let what = format!("looking up device type {slug}");
        let v = self.get_json(
            &what,
            "/v6/device_type",
            &[
                ("$orderby", "name asc".into()),
                ("$top", "1".into()),
                ("$select", "id".into()),
                ("$filter", alias_filter(slug)),
            ],
        )?;
        v["d"][0]["id"].as_u64().ok_or_else(|| ApiError::Body {
            endpoint: self.endpoint.clone(),
            what,
            reason: format!("no device type '{slug}'"),
        })
    }

    /// `--change-dt-to`: set the device's type in the API.
    pub fn change_device_type(&self, uuid: &str, slug: &str) -> Result<(), ApiError> {
        let id = self.device_type_id(slug)?;
        let what = format!("changing device {uuid} to {slug}");
        let r = self
            .auth(
                self.http
                    .patch(format!("{}/v6/device(uuid='{uuid}')", self.endpoint))
                    .json(&serde_json::json!({ "is_of__device_type": id })),
            )
            .send()
            .map_err(|e| self.net_err(&what, &e))?;
        self.check_status(&what, r).map(|_| ())
    }
}

/// The flasher rule on a device-type contract.
pub fn contract_is_flasher(c: &Value) -> bool {
    let media = &c["data"]["media"];
    media["defaultBoot"] == "internal"
        && media["altBoot"].as_array().is_some_and(|a| !a.is_empty())
        && c["data"]["flashProtocol"].is_null()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flasher_rule() {
        let nuc =
            json!({"data":{"media":{"defaultBoot":"internal","altBoot":["usb_mass_storage"]}}});
        assert!(contract_is_flasher(&nuc));
        let pi = json!({"data":{"media":{"defaultBoot":"sdcard"}}});
        assert!(!contract_is_flasher(&pi));
        let jetson = json!({"data":{"media":{"defaultBoot":"internal","altBoot":["usb"]},"flashProtocol":"jetsonFlash"}});
        assert!(!contract_is_flasher(&jetson));
    }
}
