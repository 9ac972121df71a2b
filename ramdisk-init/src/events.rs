//! Step events: one JSON object per line on the console (and later the log
//! device), so a person can read the story and a test or `migrd status` can
//! parse it.
//!
//! Every event is a single line starting with `{"migrd":` so it can be picked
//! out of a serial log full of kernel messages.

use serde::Serialize;
use std::io::Write;
use std::time::Instant;

/// The steps of stage 2, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// migrd-init started.
    Start,
    /// Early mounts and console.
    Setup,
    /// Plan read and checked.
    Plan,
    /// Boot configuration restored.
    Disarm,
    /// Kernel modules loaded.
    Modules,
    /// The hardware watchdog opened and handed to the deadline guard.
    Watchdog,
    /// Target disk found.
    FindTarget,
    /// Payload files present and of the right size.
    LoadPayload,
    /// Payload hashes verified.
    Verify,
    /// Writing starts: the old OS is gone after this.
    PointOfNoReturn,
    /// The image is written.
    Flash,
    /// The kernel re-read the new partition table.
    RereadPartitions,
    /// Config, networks, backup and log written into the new OS.
    Inject,
    /// The firmware boot entry for the new OS (UEFI).
    EfiSetup,
    /// The result was recorded for the old OS.
    Status,
    /// The run is over (successfully or not; see the status).
    Done,
    /// Leaving: power off or reboot.
    Exit,
}

impl Step {
    /// The step's name in events and test hooks (`find-target`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Outcome of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The step began.
    Begin,
    /// The step succeeded.
    Ok,
    /// The step did not apply.
    Skip,
    /// The step failed.
    Fail,
    /// The step is under way (progress data).
    Progress,
}

#[derive(Serialize)]
struct Line<'a> {
    migrd: u32,
    step: Step,
    status: Status,
    t_ms: u128,
    #[serde(skip_serializing_if = "str::is_empty")]
    msg: &'a str,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    data: serde_json::Value,
}

/// Writes step events to a sink, stamping each with the time since start.
pub struct EventLog<W: Write> {
    out: W,
    started: Instant,
    /// Console verbosity: below `Info` only failures reach the console
    /// (the history, copied to the new OS and the log device, keeps all).
    pub console_level: crate::plan::LogLevel,
    /// Every line emitted, kept so it can be copied to the new OS later.
    pub history: Vec<String>,
}

impl<W: Write> EventLog<W> {
    /// A log writing to `out`.
    pub fn new(out: W) -> Self {
        EventLog {
            out,
            started: Instant::now(),
            console_level: crate::plan::LogLevel::Info,
            history: Vec::new(),
        }
    }

    /// Emit one event. Writing to the console must never stop PID 1, so
    /// errors here are swallowed after the line is kept in `history`.
    pub fn emit(&mut self, step: Step, status: Status, msg: &str, data: serde_json::Value) {
        let line = Line {
            migrd: 1,
            step,
            status,
            t_ms: self.started.elapsed().as_millis(),
            msg,
            data,
        };
        let text = serde_json::to_string(&line).unwrap_or_else(|_| {
            format!("{{\"migrd\":1,\"step\":\"{step:?}\",\"status\":\"{status:?}\"}}")
        });
        use crate::plan::LogLevel;
        let show = status == Status::Fail || self.console_level >= LogLevel::Info;
        if show {
            // Kernel messages may have left the cursor mid-line.
            let _ = writeln!(self.out, "\r\n{text}\r");
            let _ = self.out.flush();
        }
        self.history.push(text);
    }

    /// Shorthand for an event without data.
    pub fn note(&mut self, step: Step, status: Status, msg: &str) {
        self.emit(step, status, msg, serde_json::Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_one_parseable_json_line() {
        let mut buf = Vec::new();
        {
            let mut log = EventLog::new(&mut buf);
            log.note(Step::Start, Status::Begin, "hello \"quoted\"\nnewline");
            log.emit(
                Step::Verify,
                Status::Fail,
                "mismatch",
                serde_json::json!({"path": "/payload/x"}),
            );
            assert_eq!(log.history.len(), 2);
        }
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_matches('\r'))
            .filter(|l| l.starts_with("{\"migrd\":"))
            .collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["step"], "verify");
        assert_eq!(v["status"], "fail");
        assert_eq!(v["data"]["path"], "/payload/x");
        let v0: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v0["msg"], "hello \"quoted\"\nnewline");
        assert!(v0.get("data").is_none());
    }

    #[test]
    fn quiet_consoles_show_failures_only_but_history_keeps_all() {
        let mut buf = Vec::new();
        let mut log = EventLog::new(&mut buf);
        log.console_level = crate::plan::LogLevel::Error;
        log.note(Step::Start, Status::Begin, "a");
        log.note(Step::Verify, Status::Fail, "b");
        assert_eq!(log.history.len(), 2);
        let text = String::from_utf8(buf).unwrap();
        assert!(
            !text.contains("\"start\"") && text.contains("\"verify\""),
            "{text}"
        );
    }
}
