//! A limit on how many scenarios run at once on this machine, across
//! processes: `tests/lab/test.sh` starts the lab's test binaries together,
//! each running its tests on several threads, and without a shared limit
//! they would start far more QEMU guests than there are cores (TCG guests
//! then run slower than real time; their kernels report soft lockups and
//! timeouts get close).
//!
//! The pool is a set of lock files, `<lab dir>/slots/<n>.lock`; a slot is
//! held by an exclusive `flock` on one of them, which the kernel releases
//! when the holder ends however it ends (a crashed or killed test binary
//! never leaks its slot). The size is `MIGRD_LAB_JOBS`, else the number of
//! cores available to this process.
//!
//! A scenario takes its slot when it opens its log folder
//! ([`crate::paths::log_dir`] calls [`hold`]), before it builds its disks,
//! and keeps it until the folder ([`crate::paths::LogDir`]) is dropped,
//! which calls [`release`] after the bulky files are pruned: the slot also
//! bounds how many scenario folders full of disk images exist at once (a
//! small CI disk holds only a few). The slot belongs to the test's thread:
//! the harness runs each test on a thread of its own, a second log folder
//! opened on the same thread shares the slot, and a thread that ends frees
//! its slot too.

use crate::paths;
use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::cell::RefCell;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

thread_local! {
    /// The slot this thread holds, if any.
    static HELD: RefCell<Option<Flock<File>>> = const { RefCell::new(None) };
}

/// How many scenarios may run at once: `MIGRD_LAB_JOBS` (a positive
/// number), else the cores available to this process.
pub fn pool_size() -> usize {
    if let Some(n) = std::env::var("MIGRD_LAB_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Make sure this thread holds a slot: returns at once if it does, else
/// waits for a free one (polling every half second; waiters sleep).
pub fn hold() -> Result<()> {
    if HELD.with(|h| h.borrow().is_some()) {
        return Ok(());
    }
    let dir = paths::lab_dir().join("slots");
    let n = pool_size();
    let lock = wait_for(|| try_lock_in(&dir, n))?;
    HELD.with(|h| *h.borrow_mut() = Some(lock));
    Ok(())
}

/// Poll `try_lock` every half second until it returns a lock (waiters
/// sleep).
fn wait_for(mut try_lock: impl FnMut() -> Result<Option<Flock<File>>>) -> Result<Flock<File>> {
    loop {
        if let Some(lock) = try_lock()? {
            return Ok(lock);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Free this thread's slot, if it holds one.
pub fn release() {
    // Dropping the Flock unlocks the file.
    let _ = HELD.try_with(|h| h.borrow_mut().take());
}

/// A lock of its own for a kind of scenario that must not run twice at
/// once (held until the returned guard is dropped), taken before the
/// scenario's slot so that a waiter holds no slot: the lab's Pi 2
/// (`raspi2b`, one host thread per vCPU: two of them are eight busy
/// threads on a 2-core host). In a CI run where both Pi 2 scenarios ran
/// together beside other load, the second one's old OS saw its SD
/// controller time out ("sdhost-bcm2835 3f202000.mmc: timeout waiting for
/// hardware interrupt") and could not mount its root file system (its
/// group descriptors read as garbage).
pub fn exclusive(name: &str) -> Result<Flock<File>> {
    let p = paths::lab_dir()
        .join("slots")
        .join(format!("{name}.exclusive"));
    wait_for(|| try_lock_file(&p))
}

/// Lock the file at `p` (created if missing) unless another holds it.
fn try_lock_file(p: &Path) -> Result<Option<Flock<File>>> {
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        // Any other error would recur on every try: report it rather than
        // wait forever.
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", p.display())),
    }
}

/// Lock a free slot file of the pool of `n` in `dir`, if there is one.
fn try_lock_in(dir: &Path, n: usize) -> Result<Option<Flock<File>>> {
    for i in 0..n {
        // Held by another scenario: try the next one.
        if let Some(lock) = try_lock_file(&dir.join(format!("{i}.lock")))? {
            return Ok(Some(lock));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other_thread_gets_one(dir: &Path) -> Result<bool> {
        let d = dir.to_path_buf();
        std::thread::spawn(move || try_lock_in(&d, 1).map(|l| l.is_some()))
            .join()
            .map_err(|_| anyhow::anyhow!("the other thread panicked"))?
    }

    #[test]
    fn a_held_slot_excludes_others_until_dropped() -> Result<()> {
        let d = tempfile::tempdir()?;
        let held = try_lock_in(d.path(), 1)?.context("the pool of one is busy")?;
        assert!(
            !other_thread_gets_one(d.path())?,
            "another thread took the only slot while it was held"
        );
        drop(held);
        assert!(
            other_thread_gets_one(d.path())?,
            "the freed slot could not be taken"
        );
        let two = try_lock_in(d.path(), 2)?.context("a pool of two is busy")?;
        assert!(
            try_lock_in(d.path(), 2)?.is_some(),
            "the second slot of two was not free"
        );
        drop(two);
        Ok(())
    }

    #[test]
    fn an_exclusive_lock_is_one_at_a_time_and_apart_from_the_slots() -> Result<()> {
        let d = tempfile::tempdir()?;
        let p = d.path().join("raspi2b.exclusive");
        let held = try_lock_file(&p)?.context("a fresh exclusive lock is busy")?;
        let q = p.clone();
        let other = std::thread::spawn(move || try_lock_file(&q).map(|l| l.is_some()))
            .join()
            .map_err(|_| anyhow::anyhow!("the other thread panicked"))??;
        assert!(!other, "a second holder got the exclusive lock");
        assert!(
            try_lock_in(d.path(), 1)?.is_some(),
            "the exclusive lock took the slot"
        );
        drop(held);
        assert!(
            try_lock_file(&p)?.is_some(),
            "the freed lock could not be taken"
        );
        Ok(())
    }
}
