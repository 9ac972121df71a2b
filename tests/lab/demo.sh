#!/usr/bin/env bash
# The README's demo: prepare the lab, build migrd and its static init, and
# boot a virtual x86_64 device into a migrd-built ramdisk.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/lab/setup.sh
cargo build --locked -q -p migrd-init --profile init --target x86_64-unknown-linux-musl
cargo build --locked -q --release -p migrd -p migrd-lab --bins
exec target/release/migrd-demo
