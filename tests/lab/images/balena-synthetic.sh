#!/usr/bin/env bash
# The lab's synthetic balenaOS image (stands in for the real one, which
# cannot be downloaded here): balenaOS's MBR layout and labels, BIOS GRUB,
# Debian's kernel and an initramfs whose /init is balena-reporter.
#
# usage: balena-synthetic.sh OUT_DIR
#   Writes OUT_DIR/balena.img (raw) and OUT_DIR/balena.img.gz, prints the
#   path of the .img.gz. Builds balena-reporter (static, musl) and the
#   builder first; needs the lab kernel (tests/lab/setup.sh). Takes seconds,
#   so it is not cached.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
cd "$(dirname "$0")/../../.."
cargo build -q --locked -p migrd-lab --bin balena-reporter --no-default-features \
  --profile init --target x86_64-unknown-linux-musl
cargo build -q --locked --release -p migrd-lab --bin balena-synthetic
exec "${CARGO_TARGET_DIR:-target}/release/balena-synthetic" "$1"
