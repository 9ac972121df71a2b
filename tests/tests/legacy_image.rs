//! The lab's legacy device image (Debian bookworm on BIOS + GRUB, built by
//! tests/lab/images/debian.sh): it boots under SeaBIOS and GRUB to a
//! root shell on the serial console, and GRUB's one-shot `next_entry`
//! (grub-reboot) boots a custom.cfg entry exactly once.
//!
//! `#[ignore]`d for a plain `cargo test`: they need root, QEMU and the
//! image recipe's packages (tests/lab/setup.sh); tests/lab/test.sh runs them.

use anyhow::{ensure, Result};
use migrd_lab::guest::Guest;
use migrd_lab::images::legacy::{self, HOSTNAME};
use migrd_lab::paths;
use std::time::{Duration, Instant};

const CMD: Duration = Duration::from_secs(60);
const POWER_OFF: Duration = Duration::from_secs(180);

#[test]
#[ignore = "lab: needs root, QEMU and debootstrap (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn boots_to_a_root_shell_with_canary_and_grubenv() -> Result<()> {
    let logs = paths::log_dir("legacy-image-boot")?;
    let t0 = Instant::now();
    let img = legacy::image(&logs)?;
    eprintln!("image ready in {:.1}s", t0.elapsed().as_secs_f64());
    let q = legacy::qemu(&img.disk, &logs);
    let mut g = legacy::boot(&q, "boot1")?;
    eprintln!("root shell after {:.1}s", g.elapsed().as_secs_f64());

    let release = g.run_ok("uname -r", CMD)?;
    ensure!(release.ends_with("-amd64"), "uname -r: {release:?}");
    ensure!(g.run_ok("hostname", CMD)? == HOSTNAME);
    let sum = g.run_ok(&format!("sha256sum {}", legacy::CANARY), CMD)?;
    ensure!(
        sum.split_whitespace().next() == Some(img.canary_sha256.as_str()),
        "canary: {sum:?} vs {}",
        img.canary_sha256
    );
    let env = g.run_ok("grub-editenv /boot/grub/grubenv list", CMD)?;
    ensure!(!env.contains("next_entry=debian"), "grubenv: {env:?}");
    ensure!(g.run_ok("stat -c %s /boot/grub/grubenv", CMD)? == "1024");
    // The runner reports exit codes and multi-line output faithfully.
    let out = g.run("printf 'a\\nb\\n'; false", CMD)?;
    ensure!(out.code == 1 && out.text == "a\nb", "{out:?}");
    g.put_file("/tmp/put", b"line 1\n'quoted' $HOME\n", 0o600)?;
    ensure!(g.run_ok("cat /tmp/put; stat -c %a /tmp/put", CMD)? == "line 1\n'quoted' $HOME\n600");

    let code = g.shutdown(POWER_OFF)?;
    eprintln!("powered off after {:.1}s", g.elapsed().as_secs_f64());
    ensure!(code == Some(0), "QEMU exit {code:?}");
    Ok(())
}

/// The custom.cfg entry migrd uses is one-shot: `grub-reboot` sets
/// next_entry, GRUB runs that entry once and clears it; the boot after is
/// Debian again.
#[test]
#[ignore = "lab: needs root, QEMU and debootstrap (tests/lab/setup.sh); run by tests/lab/test.sh"]
fn grub_reboot_runs_a_custom_entry_once_then_debian_again() -> Result<()> {
    let logs = paths::log_dir("legacy-image-oneshot")?;
    let img = legacy::image(&logs)?;
    let q = legacy::qemu(&img.disk, &logs);

    let mut g = legacy::boot(&q, "boot1-debian")?;
    let env = g.run_ok(
        "cat > /boot/grub/custom.cfg <<'EOF'\n\
         menuentry 'lab one-shot' --id lab-oneshot {\n\
         \tset m=ONESHOT\n\
         \techo \"LAB-$m-RAN\"\n\
         \thalt\n\
         }\n\
         EOF\n\
         grub-reboot lab-oneshot && grub-editenv /boot/grub/grubenv list",
        CMD,
    )?;
    ensure!(env.contains("next_entry=lab-oneshot"), "grubenv: {env:?}");
    g.send_line("systemctl reboot")?;
    g.wait_exit(POWER_OFF)?;
    eprintln!(
        "boot 1 (Debian, armed) ended after {:.1}s",
        g.elapsed().as_secs_f64()
    );

    let mut g = Guest::start(&q, "boot2-oneshot")?;
    g.wait_for("LAB-ONESHOT-RAN", legacy::BOOT_TIMEOUT)?;
    g.wait_exit(Duration::from_secs(60))?;
    ensure!(
        !g.serial().contains(legacy::PROMPT),
        "Debian booted instead"
    );
    eprintln!(
        "boot 2 (one-shot entry) ended after {:.1}s",
        g.elapsed().as_secs_f64()
    );

    let mut g = legacy::boot(&q, "boot3-debian")?;
    let env = g.run_ok("grub-editenv /boot/grub/grubenv list", CMD)?;
    ensure!(
        env.lines().any(|l| l == "next_entry="),
        "next_entry not cleared: {env:?}"
    );
    let sum = g.run_ok(&format!("sha256sum {}", legacy::CANARY), CMD)?;
    ensure!(sum.starts_with(&img.canary_sha256), "canary changed: {sum}");
    g.shutdown(POWER_OFF)?;
    eprintln!(
        "boot 3 (Debian again) ended after {:.1}s",
        g.elapsed().as_secs_f64()
    );
    Ok(())
}
