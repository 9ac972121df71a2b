//! `migrd-init`: PID 1 of the migration ramdisk.
//!
//! Runs the plan's steps (see `migrd_init::stage`) and leaves: power off when
//! every step passed, reboot into the old OS when one failed. It never
//! panics on input and never returns.

use migrd_init::events::{EventLog, Status, Step};
use migrd_init::guard::live::LiveActions;
use migrd_init::guard::thread::Watcher;
use migrd_init::live::{leave, LiveSystem};
use migrd_init::stage::{run, Exit};

fn main() {
    refuse_unless_pid1();
    let mut sys = LiveSystem::default();
    let mut log = EventLog::new(std::io::stdout());
    let guard = Watcher::start(LiveActions, std::time::Duration::from_secs(1));
    let exit = run(&mut sys, &mut log, &guard);
    match exit {
        Exit::Migrated => {
            log.note(Step::Exit, Status::Ok, "rebooting into balenaOS");
            leave(false)
        }
        Exit::PretendDone | Exit::Fallback { .. } => {
            log.note(Step::Exit, Status::Ok, "rebooting into the old OS");
            leave(false)
        }
        Exit::FlashFailed { .. } => {
            log.note(
                Step::Exit,
                Status::Fail,
                "powering off: the disk holds no whole OS",
            );
            leave(true)
        }
        Exit::Stranded { .. } => {
            log.note(
                Step::Exit,
                Status::Fail,
                "powering off: the old OS's boot configuration could not be restored, so a reboot would start this ramdisk again",
            );
            leave(true)
        }
        // Returning from PID 1 panics the kernel; `panic=` reboots it.
        Exit::TestExit => {}
    }
}

/// Outside PID 1 (someone ran the binary on a running system) the stage
/// would mount, look for disks and finally call reboot(2): print the version
/// or why it refuses, and exit without touching anything.
fn refuse_unless_pid1() {
    let pid = std::process::id();
    if pid == 1 {
        return;
    }
    let version = concat!("migrd-init ", env!("CARGO_PKG_VERSION"));
    if std::env::args()
        .skip(1)
        .any(|a| a == "--version" || a == "-V")
    {
        println!("{version}");
        std::process::exit(0);
    }
    eprintln!(
        "{version}: refusing to run as process {pid}: this is PID 1 of the migration ramdisk \
         (it mounts filesystems, flashes disks and reboots the machine) and starts only as the \
         ramdisk's init; use `migrd migrate` on the running system instead"
    );
    std::process::exit(2);
}
