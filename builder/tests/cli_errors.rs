#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
//! The `migrd` binary on bad input: a clear message naming the input and
//! what to do, a non-zero exit, nothing written.

use std::process::Command;

fn migrd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_migrd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn build_without_a_target_identity_says_how_to_give_one() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let (code, err) = migrd(&[
        "build",
        "-i",
        "/nonexistent.img.gz",
        "--kernel-config",
        "/nonexistent",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--target serial="), "{err}");
    assert!(!out.exists());
}

#[test]
fn build_refuses_a_dynamic_init_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let (code, err) = migrd(&[
        "build",
        "--arch",
        "x86_64",
        "--init",
        "/bin/sh",
        "-i",
        "/nonexistent.img.gz",
        "--kernel-config",
        "/nonexistent",
        "--target",
        "serial=X",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/bin/sh") && err.contains("x86_64-unknown-linux-musl"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn build_refuses_an_unknown_arch() {
    let (code, err) = migrd(&[
        "build", "--arch", "sparc", "-i", "x", "-o", "y", "--target", "serial=X",
    ]);
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("sparc") && err.contains("aarch64"), "{err}");
}

#[test]
fn inspect_names_a_file_that_is_not_an_initramfs() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    let (code, err) = migrd(&["inspect", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("notes.txt") && err.contains("offset 0"),
        "{err}"
    );
    let (code, err) = migrd(&["inspect", "/nonexistent/initrd"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/initrd"), "{err}");
}

/// `--target-wait` is capped at 600 s: 4294967295 (which once passed into
/// the plan) and 601 are refused naming the flag and the bound; 600 gets
/// past the flag to the next error.
#[test]
fn build_caps_target_wait_naming_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let run = |wait: &str| {
        migrd(&[
            "build",
            "-i",
            "/nonexistent.img.gz",
            "--target",
            "serial=X",
            "--target-wait",
            wait,
            "-o",
            out.to_str().unwrap(),
        ])
    };
    for wait in ["4294967295", "601", "0"] {
        let (code, err) = run(wait);
        assert_eq!(code, 2, "{wait}: {err}");
        assert!(
            err.contains("--target-wait") && err.contains("1..=600"),
            "{wait}: {err}"
        );
    }
    let (code, err) = run("soon");
    assert_eq!(code, 2);
    assert!(
        err.contains("--target-wait") && err.contains("whole number"),
        "{err}"
    );
    let (_, err) = run("600");
    assert!(!err.contains("--target-wait"), "{err}");
    assert!(!out.exists());
}
