//! Checks that talk to balena: API reachability, VPN reachability, and
//! that the requested version exists (when the image is to be downloaded).

use super::{CheckResult, Options, Status};
use crate::balena_api::{versions, Client};
use crate::inputs::config_json::ConfigJson;
use crate::inputs::gather::{Gathered, ImageInput};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn config(g: &Gathered) -> Option<&ConfigJson> {
    g.config.as_ref().and_then(|c| c.as_ref().ok())
}

fn client(c: &ConfigJson, timeout: Duration) -> Result<Client, String> {
    Client::new(&c.api_endpoint, c.api_key.clone(), timeout).map_err(|e| e.to_string())
}

/// `GET {apiEndpoint}/ping` answers `OK` within the check timeout.
pub fn api(g: &Gathered, o: &Options) -> CheckResult {
    let n = "api";
    if o.no_api_check {
        return CheckResult::new(n, Status::Skip, "--no-api-check");
    }
    let Some(c) = config(g) else {
        return CheckResult::new(n, Status::Skip, "no usable config.json");
    };
    match client(c, o.timeout).and_then(|cl| cl.ping().map_err(|e| e.to_string())) {
        Ok(()) => CheckResult::new(
            n,
            Status::Pass,
            format!("{}/ping answered OK", c.api_endpoint),
        ),
        Err(e) => CheckResult::new(n, Status::Fail, e),
    }
}

/// A TCP connection to `vpnEndpoint:vpnPort` opens within the timeout
/// (any resolved address; takeover tried only the first).
pub fn vpn(g: &Gathered, o: &Options) -> CheckResult {
    let n = "vpn";
    if o.no_vpn_check {
        return CheckResult::new(n, Status::Skip, "--no-vpn-check");
    }
    let Some(c) = config(g) else {
        return CheckResult::new(n, Status::Skip, "no usable config.json");
    };
    let Some(host) = &c.vpn_endpoint else {
        return CheckResult::new(n, Status::Warn, "config.json has no vpnEndpoint");
    };
    let target = format!("{host}:{}", c.vpn_port);
    let addrs = match target.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => {
            return CheckResult::new(
                n,
                Status::Fail,
                format!("cannot resolve {target}: {e}; check DNS, or --no-vpn-check"),
            )
        }
    };
    let mut last = String::from("no addresses");
    for a in &addrs {
        match TcpStream::connect_timeout(a, o.timeout) {
            Ok(_) => {
                return CheckResult::new(n, Status::Pass, format!("connected to {target} ({a})"))
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    CheckResult::new(
        n,
        Status::Fail,
        format!("cannot connect to {target} within {:?} ({last}); the device would not reach balenaCloud's VPN; check firewalls, or --no-vpn-check", o.timeout),
    )
}

/// When downloading: the requested version exists for the device type.
pub fn version(g: &Gathered, o: &Options) -> CheckResult {
    let n = "version";
    let ImageInput::Download(wanted) = &g.image else {
        return CheckResult::new(n, Status::Skip, "using a local image (-i)");
    };
    if o.no_api_check {
        return CheckResult::new(n, Status::Skip, "--no-api-check: versions not listed");
    }
    let (Some(c), Some(slug)) = (config(g), g.target_slug.as_deref()) else {
        return CheckResult::new(n, Status::Skip, "no usable config.json");
    };
    let res = client(c, o.timeout).and_then(|cl| {
        let list = cl.versions(slug).map_err(|e| e.to_string())?;
        versions::select(&list, wanted, slug).map_err(|e| e.to_string())
    });
    match res {
        Ok(v) => CheckResult::new(
            n,
            Status::Pass,
            format!("will download balenaOS {v} for {slug}"),
        ),
        Err(e) => CheckResult::new(n, Status::Fail, e),
    }
}
