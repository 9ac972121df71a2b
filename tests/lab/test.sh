#!/usr/bin/env bash
# The whole test suite: prepares the lab (packages, Rust targets, Debian
# kernel), builds the binaries the lab boots, checks formatting and lints,
# then runs every test including the QEMU lab scenarios.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/lab/setup.sh
step() { printf '\n==> %s\n' "$*"; }
step "static migrd-init (x86_64, aarch64) and the lab's balena-reporter"
cargo build --locked -p migrd-init --profile init --target x86_64-unknown-linux-musl
cargo build --locked -p migrd-init --profile init --target aarch64-unknown-linux-musl
cargo build --locked -p migrd-lab --bin balena-reporter --no-default-features --profile init --target x86_64-unknown-linux-musl
step "release binaries"
cargo build --locked --release --workspace --bins
step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --release --workspace --all-targets -- -D warnings
step "tests (unit, integration, lab)"
cargo test --locked --release --workspace -- --include-ignored "$@"
