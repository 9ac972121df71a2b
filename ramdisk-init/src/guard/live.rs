//! The guard's actions on the real machine: on an overrun, say so on the
//! console and reboot or power off at once.

use super::thread::{Actions, Expiry};
use crate::events::Step;
use nix::sys::reboot::{reboot, RebootMode};
use std::time::Duration;

/// The guard's actions under PID 1.
#[derive(Default)]
pub struct LiveActions;

/// The console line for an overrun, in the events' format.
pub fn overrun_line(step: Step, for_: Duration, how: Expiry) -> String {
    let then = match how {
        Expiry::Reboot => "rebooting into the old OS, which is whole",
        Expiry::PowerOff => "powering off",
    };
    serde_json::json!({
        "migrd": 1,
        "step": step.name(),
        "status": "fail",
        "msg": format!("{} has run {} s, over its budget: a hang; {then}", step.name(), for_.as_secs()),
    })
    .to_string()
}

impl Actions for LiveActions {
    fn expire(&mut self, step: Step, for_: Duration, how: Expiry) {
        println!("\r\n{}\r", overrun_line(step, for_, how));
        // No sync: the hang may be the disk itself. Nothing before the
        // point of no return needs it (the status is written synced).
        let mode = match how {
            Expiry::Reboot => RebootMode::RB_AUTOBOOT,
            Expiry::PowerOff => RebootMode::RB_POWER_OFF,
        };
        let _ = reboot(mode);
        // Still here: the petting has stopped, the hardware watchdog acts.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overrun_line_is_an_event_that_names_the_step_and_the_way_out() {
        let l = overrun_line(Step::Verify, Duration::from_secs(125), Expiry::Reboot);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["step"], "verify");
        assert_eq!(v["status"], "fail");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains("125 s") && msg.contains("old OS"), "{msg}");
        assert!(l.starts_with("{\"migrd\""), "{l}");
    }
}
