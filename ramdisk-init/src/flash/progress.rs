//! What the engine tells its caller while it works: a progress bar, JSON
//! lines, or stage 2's event log are all built from [`Progress`].

use serde::Serialize;

/// The engine's phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Decoding and writing everything after the first MiB.
    Write,
    /// Reading back what was written and comparing.
    Verify,
    /// Writing (and checking) the first MiB, then re-reading partitions.
    Finish,
}

/// A snapshot of the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Decoded bytes handled in this phase.
    pub bytes: u64,
    /// Decoded bytes this phase will handle, when known.
    pub total: Option<u64>,
    /// Image file bytes read so far.
    pub input_bytes: u64,
    /// Image file size.
    pub input_total: u64,
}

impl Progress {
    /// Best estimate of this phase's total: known, or extrapolated from the
    /// compression ratio so far.
    pub fn estimated_total(&self) -> Option<u64> {
        if let Some(t) = self.total {
            return Some(t);
        }
        if self.input_bytes == 0 || self.bytes == 0 {
            return None;
        }
        let ratio = self.bytes as f64 / self.input_bytes as f64;
        Some(((self.input_total as f64 * ratio) as u64).max(self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_the_total_from_the_ratio_so_far() {
        let mut p = Progress {
            phase: Phase::Write,
            bytes: 300,
            total: None,
            input_bytes: 100,
            input_total: 1000,
        };
        assert_eq!(p.estimated_total(), Some(3000));
        p.total = Some(2500);
        assert_eq!(p.estimated_total(), Some(2500));
        p.total = None;
        p.input_bytes = 0;
        assert_eq!(p.estimated_total(), None);
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v["phase"], "write");
    }
}
