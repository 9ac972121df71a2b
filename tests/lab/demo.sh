#!/usr/bin/env bash
# The README's demo: prepare the lab, build migrd, its static init and the
# lab's synthetic balenaOS, then migrate a virtual Debian device to it
# (lab scenario 1, with commentary).
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/lab/setup.sh
cargo build --locked -q -p migrd-init --profile init --target x86_64-unknown-linux-musl
cargo build --locked -q -p migrd-lab --bin balena-reporter --no-default-features --profile init --target x86_64-unknown-linux-musl
cargo build --locked -q --release -p migrd -p migrd-lab --bins
exec target/release/migrd-demo
