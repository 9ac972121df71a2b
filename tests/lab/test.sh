#!/usr/bin/env bash
# The whole test suite: prepares the lab (packages, Rust targets, Debian
# kernel), builds the binaries the lab boots, checks formatting and lints,
# then runs every test including the QEMU lab scenarios.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/lab/setup.sh
step() { printf '\n==> %s\n' "$*"; }
step "static migrd-init (x86_64, aarch64) and the lab's balena-reporter (x86_64, aarch64, armv7)"
cargo build --locked -p migrd-init --profile init --target x86_64-unknown-linux-musl
cargo build --locked -p migrd-init --profile init --target aarch64-unknown-linux-musl
cargo build --locked -p migrd-lab --bin balena-reporter --no-default-features --profile init --target x86_64-unknown-linux-musl
cargo build --locked -p migrd-lab --bin balena-reporter --no-default-features --profile init --target aarch64-unknown-linux-musl
cargo build --locked -p migrd-lab --bin balena-reporter --no-default-features --profile init --target armv7-unknown-linux-gnueabihf
step "static ARM builds: migrd-init and migrd for aarch64 (musl) and armv7 (glibc + crt-static)"
cargo build --locked -p migrd-init --profile init --target armv7-unknown-linux-gnueabihf
# migrd links C libzstd and liblzma. No aarch64 musl C toolchain is packaged
# in Debian, so Debian's aarch64 cross gcc compiles them (they call only
# memory, string and pthread functions, which musl provides with the same
# ABI); outline atomics off because musl has no __aarch64_* helpers. The
# qemu-user smoke test decodes zstd and xz with the result.
CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
  CFLAGS_aarch64_unknown_linux_musl=-mno-outline-atomics \
  cargo build --locked -p migrd --bin migrd --profile ci --target aarch64-unknown-linux-musl
cargo build --locked -p migrd --bin migrd --profile ci --target armv7-unknown-linux-gnueabihf
step "stage 2's unit tests on the ARM targets, under qemu-user"
# The numbers in ioctls and syscalls differ between 32- and 64-bit kernels
# (BLKGETSIZE64 once failed every armv7 flash): run migrd-init's own tests
# as armv7 and aarch64 binaries; the ioctl tests use a real loop device.
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=qemu-arm-static \
  cargo test --locked --profile ci -p migrd-init --target armv7-unknown-linux-gnueabihf --lib
CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
  CFLAGS_aarch64_unknown_linux_musl=-mno-outline-atomics \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
  cargo test --locked --profile ci -p migrd-init --target aarch64-unknown-linux-musl --lib
step "host binaries"
cargo build --locked --profile ci --workspace --bins
step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --profile ci --workspace --all-targets -- -D warnings
step "tests (unit, integration, lab)"
cargo test --locked --profile ci --workspace -- --include-ignored "$@"
