//! Host facts: hostname, running kernel, who runs us, and the default route
//! (used to tell whether a device with no network profile is on DHCP
//! Ethernet).

use super::rootfs;
use serde::Serialize;
use std::path::Path;

/// Host facts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Hostname (`/proc/sys/kernel/hostname`, else `/etc/hostname`).
    pub hostname: Option<String>,
    /// Running kernel release.
    pub kernel_release: Option<String>,
    /// Effective uid, when probing the live root (`None` on fixture trees).
    pub euid: Option<u32>,
    /// Interface of the IPv4 default route.
    pub default_route_iface: Option<String>,
    /// That interface is wireless (has `wireless/` or `phy80211` in sysfs).
    pub default_route_wireless: bool,
    /// Static address configuration found in dhcpcd.conf,
    /// /etc/network/interfaces or netplan (not migrated by those files).
    pub static_ip_hints: Vec<String>,
}

/// The interface carrying the default route in `/proc/net/route`.
pub fn default_route(text: &str) -> Option<String> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000")).then(|| f[0].to_string())
    })
}

fn static_hints(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(t) = rootfs::read_trimmed(root, "etc/dhcpcd.conf") {
        if t.lines()
            .any(|l| l.trim_start().starts_with("static ip_address"))
        {
            v.push("/etc/dhcpcd.conf has 'static ip_address'".into());
        }
    }
    if let Some(t) = rootfs::read_trimmed(root, "etc/network/interfaces") {
        if t.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"iface") && w.get(3) == Some(&"static") && w.get(1) != Some(&"lo")
        }) {
            v.push("/etc/network/interfaces has an 'inet static' interface".into());
        }
    }
    if let Ok(rd) = std::fs::read_dir(rootfs::join(root, Path::new("etc/netplan"))) {
        for e in rd.flatten() {
            if std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("addresses:")) {
                v.push(format!(
                    "/etc/netplan/{} sets static addresses",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    v
}

fn euid(root: &Path) -> Option<u32> {
    (root == Path::new("/")).then(|| nix::unistd::geteuid().as_raw())
}

/// Probe host facts.
pub fn probe(root: &Path) -> Host {
    let iface =
        rootfs::read_trimmed(root, "proc/net/route").and_then(|t| default_route(&format!("{t}\n")));
    let wireless = iface.as_deref().is_some_and(|i| {
        rootfs::exists(root, &format!("sys/class/net/{i}/wireless"))
            || rootfs::exists(root, &format!("sys/class/net/{i}/phy80211"))
            || i.starts_with("wl")
    });
    Host {
        hostname: rootfs::read_trimmed(root, "proc/sys/kernel/hostname")
            .or_else(|| rootfs::read_trimmed(root, "etc/hostname")),
        kernel_release: rootfs::read_trimmed(root, "proc/sys/kernel/osrelease"),
        euid: euid(root),
        default_route_iface: iface,
        default_route_wireless: wireless,
        static_ip_hints: static_hints(root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_is_the_zero_destination_zero_mask_line() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t0002A8C0\t00000000\t0001\t0\t0\t202\t00FFFFFF\t0\t0\t0\n\
                 eth0\t00000000\t0102A8C0\t0003\t0\t0\t202\t00000000\t0\t0\t0\n";
        assert_eq!(default_route(t).as_deref(), Some("eth0"));
        assert_eq!(default_route("Iface\n"), None);
    }
}
