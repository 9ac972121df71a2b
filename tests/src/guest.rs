//! Driving a booted guest over its serial console: wait for patterns, type
//! commands at a root shell and read their output and exit code, power off.
//!
//! The serial port is a unix-socket chardev; QEMU also writes everything
//! the guest prints to `<log_dir>/<name>.serial.log` (its `logfile=`
//! option), so the transcript is on disk even when a test fails midway. A
//! reader thread collects the same bytes in memory for matching.
//!
//! A guest reboot ends QEMU (`-no-reboot`); a scenario that reboots starts
//! a new [`Guest`] on the same disk for the next boot.

use crate::qemu::Qemu;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest command [`Guest::run`] types at once: the kernel's line
/// discipline holds 4 KiB and drops what does not fit.
pub const MAX_COMMAND: usize = 3000;

/// What a command printed and how it exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Exit status (`$?`).
    pub code: i32,
    /// Standard output and error, `\r\n` turned into `\n`, trailing
    /// newlines removed (like the shell's `$(...)`).
    pub text: String,
}

/// What an ARM kernel prints when its restart did not reset the machine
/// (`machine_restart` fell through: no PSCI reset, no watchdog): the CPUs
/// are halted and nothing will happen any more.
pub const RESTART_FAILED: &str = "Reboot failed -- System halted";

/// A running QEMU whose serial console this process drives.
pub struct Guest {
    child: Child,
    sock: UnixStream,
    buf: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    cursor: usize,
    seq: u32,
    log: PathBuf,
    started: Instant,
    exit: Option<Option<i32>>,
}

static SOCKETS: AtomicU32 = AtomicU32::new(0);

impl Guest {
    /// Start `qemu` (disks etc. configured, no `-serial`) with the serial
    /// console on a socket. Files: `<log_dir>/<name>.serial.log`,
    /// `<name>.cmd`, `<name>.out`.
    pub fn start(qemu: &Qemu, name: &str) -> Result<Guest> {
        let log = qemu.log_dir().join(format!("{name}.serial.log"));
        // Unix socket paths are limited to 108 bytes: keep it short.
        let sock_path = std::env::temp_dir().join(format!(
            "migrd-lab-{}-{}.sock",
            std::process::id(),
            SOCKETS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&sock_path);
        let chardev = format!(
            "socket,id=con0,path={},server=on,wait=on,logfile={},logappend=off",
            sock_path.display(),
            log.display()
        );
        let extra = ["-chardev", &chardev, "-serial", "chardev:con0"].map(String::from);
        let mut child = qemu.spawn_with(&extra, name)?;
        let started = Instant::now();
        let sock = loop {
            if let Ok(s) = UnixStream::connect(&sock_path) {
                break s;
            }
            if let Some(st) = child.try_wait()? {
                bail!(
                    "QEMU exited ({st}) before the serial socket was up; see {}",
                    qemu.log_dir().join(format!("{name}.out")).display()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "QEMU's serial socket {} never appeared",
                    sock_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_file(&sock_path);
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut rd = sock.try_clone().context("cloning the serial socket")?;
        let sink = Arc::clone(&buf);
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = rd.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = sink.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
        Ok(Guest {
            child,
            sock,
            buf,
            reader: Some(reader),
            cursor: 0,
            seq: 0,
            log,
            started,
            exit: None,
        })
    }

    /// The serial log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the guest printed so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&self.snapshot()).into_owned()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.buf.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// QEMU's exit code once it has exited (`Some(code)`; `code` is `None`
    /// when it was killed by a signal).
    pub fn exited(&mut self) -> Result<Option<Option<i32>>> {
        if self.exit.is_none() {
            if let Some(st) = self.child.try_wait()? {
                self.exit = Some(st.code());
            }
        }
        Ok(self.exit)
    }

    fn tail(&self) -> String {
        let s = self.serial();
        let start = s.len().saturating_sub(1500);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        format!(
            "last console output:\n{}\n(full log: {})",
            &s[start..],
            self.log.display()
        )
    }

    /// Wait until `pattern` appears after the previous match; return the
    /// text from there through the match. Fails on timeout or when QEMU
    /// exits first.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let t0 = Instant::now();
        let pat = pattern.as_bytes();
        if pat.is_empty() {
            bail!("wait_for needs a non-empty pattern");
        }
        loop {
            let b = self.snapshot();
            let hay = b.get(self.cursor..).unwrap_or_default();
            if let Some(i) = hay.windows(pat.len()).position(|w| w == pat) {
                let end = self.cursor + i + pat.len();
                let text = String::from_utf8_lossy(&b[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok(text);
            }
            if let Some(code) = self.exited()? {
                // Let the reader catch the last bytes before giving up.
                std::thread::sleep(Duration::from_millis(200));
                if self.snapshot().len() > b.len() {
                    continue;
                }
                bail!(
                    "QEMU exited ({code:?}) before {pattern:?} appeared; {}",
                    self.tail()
                );
            }
            if t0.elapsed() > timeout {
                bail!(
                    "{pattern:?} did not appear within {timeout:?}; {}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Type `text` as it is. Use `\n` for Enter: readline turns ICRNL
    /// off while it reads, so a typed-ahead `\r` would stay a `\r`.
    pub fn send(&mut self, text: &str) -> Result<()> {
        self.sock
            .write_all(text.as_bytes())
            .context("typing on the guest's serial console")
    }

    /// Type one line and press Enter, without waiting for anything (for
    /// commands that end the boot: `systemctl reboot`).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        self.send(&format!("{line}\n"))
    }

    /// Wait for a shell `prompt` (e.g. `root@vmlab-legacy:~# ` after the
    /// serial autologin), then make the shell scriptable: no line editing
    /// (plain tty echo), no continuation prompt, kernel messages off the
    /// console.
    pub fn login(&mut self, prompt: &str, timeout: Duration) -> Result<()> {
        self.wait_for(prompt, timeout)?;
        self.send_line("set +o emacs +o vi; PS2=''; export TERM=dumb; dmesg -n 1")?;
        // Type nothing more until readline is off, so what follows is
        // echoed by the tty.
        self.wait_for(prompt, Duration::from_secs(30))?;
        let out = self.run("echo ready", Duration::from_secs(30))?;
        if out.code != 0 || out.text != "ready" {
            bail!("the guest shell does not answer as expected: {out:?}");
        }
        Ok(())
    }

    /// Run `cmd` (one or more lines of shell, stdin `/dev/null`) at the
    /// logged-in shell and return its output and exit status. Output is
    /// framed by markers the typed text cannot contain, so the echo of the
    /// command never counts as output.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<Output> {
        if cmd.len() > MAX_COMMAND {
            bail!(
                "command of {} bytes is too long to type (max {MAX_COMMAND}); put files on a disk",
                cmd.len()
            );
        }
        self.seq += 1;
        let n = self.seq;
        // One compound command: the shell reads all of it (so the tty has
        // echoed all of it) before the begin marker is printed.
        let line = format!(
            "{{ printf '@@MIGRDLAB-B:%s@@\\n' {n}; {{\n{cmd}\n}} </dev/null; \
             printf '\\n@@MIGRDLAB-E:%s:%s@@\\n' {n} \"$?\"; }}\n"
        );
        self.send(&line)?;
        self.wait_for(&format!("@@MIGRDLAB-B:{n}@@"), timeout)
            .with_context(|| format!("running {cmd:?}"))?;
        let body = self
            .wait_for(&format!("@@MIGRDLAB-E:{n}:"), timeout)
            .with_context(|| format!("running {cmd:?}"))?;
        let rest = self.wait_for("@@", Duration::from_secs(10))?;
        let code: i32 = rest
            .trim_end_matches("@@")
            .trim()
            .parse()
            .with_context(|| format!("exit status of {cmd:?}: {rest:?}"))?;
        let body = body.trim_end_matches(&format!("@@MIGRDLAB-E:{n}:"));
        let text = body.replace("\r\n", "\n").replace('\r', "");
        let text = text.strip_prefix('\n').unwrap_or(&text);
        Ok(Output {
            code,
            text: text.trim_end_matches('\n').to_string(),
        })
    }

    /// [`Guest::run`] that fails unless the status is 0; returns the text.
    pub fn run_ok(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        let out = self.run(cmd, timeout)?;
        if out.code != 0 {
            bail!(
                "{cmd:?} exited with {} in the guest:\n{}",
                out.code,
                out.text
            );
        }
        Ok(out.text)
    }

    /// Write `bytes` to `path` in the guest (base64 in chunks that fit a
    /// typed line; for small files such as config.json), with `mode`.
    pub fn put_file(&mut self, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let q = shell_quote(path);
        self.run_ok(
            &format!(": > {q} && chmod {mode:o} {q}"),
            Duration::from_secs(30),
        )?;
        for chunk in bytes.chunks(1800) {
            let b64 = base64(chunk);
            self.run_ok(
                &format!("printf '%s' '{b64}' | base64 -d >> {q}"),
                Duration::from_secs(30),
            )?;
        }
        Ok(())
    }

    /// Wait for QEMU to exit by itself (guest power-off, or reboot with
    /// `-no-reboot`); kill it after `timeout` and fail. A kernel that says
    /// its restart failed ([`RESTART_FAILED`]) fails at once: it has
    /// stopped the CPUs and the machine will never reset.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let t0 = Instant::now();
        loop {
            if let Some(code) = self.exited()? {
                self.join_reader();
                return Ok(code);
            }
            if self.serial().contains(RESTART_FAILED) {
                self.kill();
                bail!(
                    "the guest's restart failed (no reset; QEMU killed); {}",
                    self.tail()
                );
            }
            if t0.elapsed() > timeout {
                self.kill();
                bail!(
                    "QEMU did not exit within {timeout:?}; killed; {}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Power the guest off from its shell (`systemctl poweroff`) and wait
    /// for QEMU to exit; returns QEMU's exit code.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.send_line("systemctl poweroff")?;
        self.wait_exit(timeout)
    }

    /// Kill QEMU now (a test's last resort; the guest's filesystems are
    /// left dirty).
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.exit = Some(st.code());
            }
        }
        self.join_reader();
    }

    fn join_reader(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Quote `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(T[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let v = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (i, o) in v {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b c"), r"'a'\''b c'");
    }
}
