//! Reading migrd-init's step events out of a serial log.

use serde_json::Value;

/// Every `{"migrd":...}` line of a serial log, parsed. Lines cut by kernel
/// messages are skipped.
pub fn parse(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| l.find("{\"migrd\":").map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str(l.trim_end_matches('\r')).ok())
        .collect()
}

/// The first event of `step` with `status`.
pub fn find<'a>(ev: &'a [Value], step: &str, status: &str) -> Option<&'a Value> {
    ev.iter()
        .find(|e| e["step"] == step && e["status"] == status)
}

/// Whether the first event of `step` with `status` has `needle` in its
/// message (a lab hook's own line, say).
pub fn said(ev: &[Value], step: &str, status: &str, needle: &str) -> bool {
    find(ev, step, status).is_some_and(|e| e["msg"].as_str().unwrap_or("").contains(needle))
}

/// `step/status` of every event, for assertion messages.
pub fn summary(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["step"].as_str().unwrap_or("?"),
                e["status"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_events_out_of_kernel_noise() {
        let log = "[    1.0] virtio_blk virtio1: [vda] 131072 512-byte logical blocks\r\n\
                   {\"migrd\":1,\"step\":\"start\",\"status\":\"begin\"}\r\n\
                   garbage {\"migrd\":1,\"step\":\"verify\",\"status\":\"fail\",\"msg\":\"x\"}\n\
                   {\"migrd\":1,\"step\":\"cut\n";
        let ev = parse(log);
        assert_eq!(summary(&ev), ["start/begin", "verify/fail"]);
        assert_eq!(find(&ev, "verify", "fail").unwrap()["msg"], "x");
        assert!(find(&ev, "done", "ok").is_none());
    }
}
