//! Stage 2 as an explicit state machine:
//! `start → setup → plan → disarm → modules → find-target → load-payload →
//! verify → done`. Each step emits events; the first failure stops the run
//! and decides how to leave. Nothing here writes to any disk, so every
//! failure is before the point of no return and leaves by rebooting into the
//! old OS.

use crate::events::{EventLog, Status, Step};
use crate::payload;
use crate::plan::Plan;
use crate::system::{ModuleLoad, System};
use crate::target;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

/// How PID 1 leaves after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// All steps passed: power off (until flashing exists, this is the end).
    PowerOff,
    /// A step failed before the point of no return: reboot into the old OS.
    Fallback {
        /// The step that failed.
        step: Step,
        /// Why.
        reason: String,
    },
}

struct Failed(Step, String);

/// Run stage 2 against `sys`, logging to `log`.
pub fn run<S: System, W: Write>(sys: &mut S, log: &mut EventLog<W>) -> Exit {
    log.note(
        Step::Start,
        Status::Begin,
        concat!("migrd-init ", env!("CARGO_PKG_VERSION")),
    );
    match steps(sys, log) {
        Ok(()) => {
            log.note(
                Step::Done,
                Status::Ok,
                "all steps before the point of no return passed",
            );
            Exit::PowerOff
        }
        Err(Failed(step, reason)) => {
            log.note(step, Status::Fail, &reason);
            Exit::Fallback { step, reason }
        }
    }
}

fn steps<S: System, W: Write>(sys: &mut S, log: &mut EventLog<W>) -> Result<(), Failed> {
    sys.setup().map_err(|e| Failed(Step::Setup, e))?;
    log.note(Step::Setup, Status::Ok, "devtmpfs, proc, sysfs mounted");

    let text = sys.read_plan().map_err(|e| Failed(Step::Plan, e))?;
    let plan = Plan::from_json(&text).map_err(|e| Failed(Step::Plan, e.to_string()))?;
    log.emit(
        Step::Plan,
        Status::Ok,
        &plan.created_by,
        json!({"version": plan.version, "arch": plan.arch, "strategy": plan.boot.strategy,
               "payload_files": plan.payload.len(), "pretend": plan.pretend}),
    );

    if plan.boot.disarm.is_empty() {
        log.note(
            Step::Disarm,
            Status::Skip,
            "boot path clears itself; nothing to restore",
        );
    } else {
        return Err(Failed(
            Step::Disarm,
            "this migrd-init cannot run disarm actions yet; rebuild with a newer migrd".into(),
        ));
    }

    load_modules(sys, log, &plan.modules)?;
    find_target(sys, log, &plan)?;

    let root = sys.payload_root().to_path_buf();
    for f in &plan.payload {
        payload::check_present(&root, f).map_err(|e| Failed(Step::LoadPayload, e.to_string()))?;
    }
    log.emit(
        Step::LoadPayload,
        Status::Ok,
        "every payload file present with its planned size",
        json!({"files": plan.payload.iter().map(|f| json!({"path": f.path(), "size": f.size})).collect::<Vec<_>>()}),
    );
    for f in &plan.payload {
        let t = Instant::now();
        payload::verify(&root, f).map_err(|e| Failed(Step::Verify, e.to_string()))?;
        log.emit(
            Step::Verify,
            Status::Ok,
            "sha256 matches",
            json!({"path": f.path(), "size": f.size, "sha256": f.sha256, "ms": t.elapsed().as_millis()}),
        );
    }
    Ok(())
}

/// Load modules in plan order. A module that needs a not-yet-loaded
/// dependency is retried after the others, so a wrong order costs time, not
/// the boot; a pass that loads nothing more ends it.
fn load_modules<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    modules: &[String],
) -> Result<(), Failed> {
    let mut pending: Vec<&String> = modules.iter().collect();
    let mut loaded = Vec::new();
    let mut already = Vec::new();
    let mut no_device = Vec::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for m in pending {
            match sys.load_module(m) {
                Ok(ModuleLoad::Loaded) => loaded.push(short(m)),
                Ok(ModuleLoad::AlreadyLoaded) => already.push(short(m)),
                Ok(ModuleLoad::NoDevice) => no_device.push(short(m)),
                Ok(ModuleLoad::NeedsDependency) => waiting.push(m),
                Err(e) => return Err(Failed(Step::Modules, format!("loading {m}: {e}"))),
            }
        }
        if waiting.len() == before {
            return Err(Failed(
                Step::Modules,
                format!(
                    "modules with unresolved symbols: {} (a dependency is missing from the ramdisk)",
                    waiting.iter().map(|m| short(m)).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        pending = waiting;
    }
    log.emit(
        Step::Modules,
        if modules.is_empty() {
            Status::Skip
        } else {
            Status::Ok
        },
        "",
        json!({"loaded": loaded, "already": already, "no_device": no_device}),
    );
    Ok(())
}

fn short(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).to_string()
}

fn find_target<S: System, W: Write>(
    sys: &mut S,
    log: &mut EventLog<W>,
    plan: &Plan,
) -> Result<(), Failed> {
    // Poll every 250 ms; counted in polls, not wall time, so the wait is
    // the plan's even when the clock is not trustworthy this early in boot.
    let polls = plan.target.wait_secs.saturating_mul(4);
    let started = Instant::now();
    let mut poll = 0u32;
    loop {
        poll += 1;
        let disks = sys.disks().map_err(|e| Failed(Step::FindTarget, e))?;
        match target::select(&plan.target, &disks) {
            Ok(d) => {
                log.emit(
                    Step::FindTarget,
                    Status::Ok,
                    &format!("target is /dev/{}", d.name),
                    json!({"disk": d, "waited_ms": started.elapsed().as_millis()}),
                );
                return Ok(());
            }
            Err(target::FindError::NotFound { .. }) if poll < polls => {
                sys.sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(Failed(Step::FindTarget, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{tests_support::sample_plan, PLAN_VERSION};
    use crate::target::Disk;
    use std::cell::Cell;
    use std::path::{Path, PathBuf};

    struct Fake {
        plan: String,
        root: PathBuf,
        disks: Vec<Disk>,
        appear_after: Cell<u32>,
        needs: Vec<(&'static str, &'static str)>, // (module, dependency)
        loaded: Vec<String>,
    }

    impl System for Fake {
        fn setup(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn read_plan(&self) -> Result<String, String> {
            Ok(self.plan.clone())
        }
        fn load_module(&mut self, path: &str) -> Result<ModuleLoad, String> {
            let m = short(path);
            if self.loaded.contains(&m) {
                return Ok(ModuleLoad::AlreadyLoaded);
            }
            if m == "crct10dif_pclmul" {
                return Ok(ModuleLoad::NoDevice);
            }
            for (mod_, dep) in &self.needs {
                if *mod_ == m && !self.loaded.iter().any(|l| l == dep) {
                    return Ok(ModuleLoad::NeedsDependency);
                }
            }
            self.loaded.push(m);
            Ok(ModuleLoad::Loaded)
        }
        fn disks(&self) -> Result<Vec<Disk>, String> {
            let n = self.appear_after.get();
            if n > 0 {
                self.appear_after.set(n - 1);
                return Ok(vec![]);
            }
            Ok(self.disks.clone())
        }
        fn payload_root(&self) -> &Path {
            &self.root
        }
        fn sleep(&self, _d: Duration) {}
    }

    fn setup(content: &[u8]) -> (tempfile::TempDir, Fake) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("payload")).unwrap();
        std::fs::write(d.path().join("payload/balena.img.gz"), content).unwrap();
        let mut plan = sample_plan();
        plan.modules = vec![
            "/lib/modules/virtio_blk.ko".into(),
            "/lib/modules/virtio.ko".into(),
        ];
        let fake = Fake {
            plan: plan.to_json().unwrap(),
            root: d.path().to_path_buf(),
            disks: vec![Disk {
                name: "vda".into(),
                serial: Some("DISK1".into()),
                ..Default::default()
            }],
            appear_after: Cell::new(3),
            needs: vec![("virtio_blk", "virtio")],
            loaded: vec![],
        };
        (d, fake)
    }

    fn events(buf: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(buf)
            .lines()
            .map(|l| l.trim_matches('\r'))
            .filter(|l| l.starts_with("{\"migrd\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn good_payload_runs_every_step_and_powers_off() {
        let (_d, mut sys) = setup(b"abc");
        let mut buf = Vec::new();
        let exit = run(&mut sys, &mut EventLog::new(&mut buf));
        assert_eq!(exit, Exit::PowerOff);
        // The dependency was retried after the module that needed it.
        assert_eq!(sys.loaded, ["virtio", "virtio_blk"]);
        let ev = events(&buf);
        let steps: Vec<&str> = ev.iter().map(|e| e["step"].as_str().unwrap()).collect();
        assert_eq!(
            steps,
            [
                "start",
                "setup",
                "plan",
                "disarm",
                "modules",
                "find-target",
                "load-payload",
                "verify",
                "done"
            ]
        );
        assert_eq!(ev[5]["data"]["disk"]["name"], "vda");
        // A module for absent hardware is noted, not fatal.
        assert_eq!(ev[4]["data"]["no_device"], json!(["crct10dif_pclmul"]));
    }

    #[test]
    fn flipped_byte_falls_back_at_verify() {
        let (_d, mut sys) = setup(b"abd");
        let mut buf = Vec::new();
        match run(&mut sys, &mut EventLog::new(&mut buf)) {
            Exit::Fallback {
                step: Step::Verify,
                reason,
            } => assert!(reason.contains("sha256"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let ev = events(&buf);
        let last = ev.last().unwrap();
        assert_eq!(
            (last["step"].as_str(), last["status"].as_str()),
            (Some("verify"), Some("fail"))
        );
    }

    #[test]
    fn short_payload_is_caught_before_hashing() {
        let (_d, mut sys) = setup(b"ab");
        let mut buf = Vec::new();
        assert!(matches!(
            run(&mut sys, &mut EventLog::new(&mut buf)),
            Exit::Fallback {
                step: Step::LoadPayload,
                ..
            }
        ));
    }

    #[test]
    fn missing_disk_and_bad_plans_fall_back() {
        let (_d, mut sys) = setup(b"abc");
        sys.disks[0].serial = Some("SOMETHING-ELSE".into());
        let mut buf = Vec::new();
        assert!(matches!(
            run(&mut sys, &mut EventLog::new(&mut buf)),
            Exit::Fallback {
                step: Step::FindTarget,
                ..
            }
        ));
        sys.plan = sys
            .plan
            .replace(&format!("\"version\": {PLAN_VERSION}"), "\"version\": 77");
        match run(&mut sys, &mut EventLog::new(&mut Vec::new())) {
            Exit::Fallback {
                step: Step::Plan,
                reason,
            } => assert!(reason.contains("77"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unloadable_module_set_is_reported_by_name() {
        let (_d, mut sys) = setup(b"abc");
        sys.needs = vec![("virtio_blk", "virtio_ring")];
        match run(&mut sys, &mut EventLog::new(&mut Vec::new())) {
            Exit::Fallback {
                step: Step::Modules,
                reason,
            } => assert!(reason.contains("virtio_blk"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
