//! Making the kernel see the new partition table (BLKRRPART), retried while
//! the device is busy, with a clear error when it keeps the old one.

use super::error::FlashError;
use nix::errno::Errno;
use std::time::Duration;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reread {
    /// The kernel re-read the table.
    Done {
        /// Attempts it took.
        attempts: u32,
    },
    /// Not a partitionable device (a regular file, or a loop device without
    /// partition scanning): nothing to do.
    NotApplicable,
}

/// Call `ioctl` until it succeeds, retrying `EBUSY` (udev or a reader still
/// has the disk open) `attempts` times, `pause` apart.
pub fn with_retries(
    target: &str,
    attempts: u32,
    pause: Duration,
    mut ioctl: impl FnMut() -> nix::Result<()>,
) -> Result<Reread, FlashError> {
    let mut last = Errno::UnknownErrno;
    for n in 1..=attempts.max(1) {
        match ioctl() {
            Ok(()) => return Ok(Reread::Done { attempts: n }),
            Err(Errno::ENOTTY) | Err(Errno::EINVAL) => return Ok(Reread::NotApplicable),
            Err(e @ (Errno::EBUSY | Errno::EAGAIN | Errno::EINTR)) => {
                last = e;
                if n < attempts {
                    std::thread::sleep(pause);
                }
            }
            Err(e) => {
                last = e;
                break;
            }
        }
    }
    Err(FlashError::Reread {
        target: target.to_string(),
        attempts,
        detail: last.desc().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_while_busy_then_succeeds() {
        let mut n = 0;
        let r = with_retries("/dev/sdz", 5, Duration::ZERO, || {
            n += 1;
            if n < 3 {
                Err(Errno::EBUSY)
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap(), Reread::Done { attempts: 3 });
    }

    #[test]
    fn gives_up_with_a_clear_error_when_the_kernel_keeps_the_old_table() {
        let e = with_retries("/dev/sdz", 4, Duration::ZERO, || Err(Errno::EBUSY)).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("/dev/sdz") && m.contains("4 attempts") && m.contains("unmount"),
            "{m}"
        );
    }

    #[test]
    fn other_errors_are_not_retried_and_files_are_skipped() {
        let mut n = 0;
        let e = with_retries("/dev/sdz", 4, Duration::ZERO, || {
            n += 1;
            Err(Errno::EIO)
        });
        assert!(e.is_err());
        assert_eq!(n, 1);
        let r = with_retries("disk.img", 4, Duration::ZERO, || Err(Errno::ENOTTY));
        assert_eq!(r.unwrap(), Reread::NotApplicable);
    }
}
