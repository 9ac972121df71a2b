#!/usr/bin/env bash
# The whole test suite: prepares the lab (packages, Rust targets, Debian
# kernel), builds the binaries the lab boots, checks formatting and lints,
# then runs every test including the QEMU lab scenarios.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/lab/setup.sh
step() { printf '\n==> %s\n' "$*"; }
# The lab's Debian images (debootstrap, then the BIOS and the UEFI disk) are
# built while cargo compiles: debootstrap waits mostly on the mirror and
# the disk, and in the lab phase it held a scenario slot for ~8 minutes
# while the x86 scenarios queued behind it. The scenarios then find them
# cached (tests/lab/images/debian.sh keys the cache by its recipe).
images_log=${MIGRD_LAB_DIR:-target/lab}/logs/debian-images.log
mkdir -p "$(dirname "$images_log")"
(
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  for fw in bios uefi; do
    tests/lab/images/debian.sh "$fw" "$scratch" >/dev/null
    rm -f "$scratch"/*
  done
) >"$images_log" 2>&1 &
images_pid=$!
# One cargo command per package builds all of its targets at once: the
# `init` profile's single-unit LTO links on one core, and with the targets
# side by side the two cores link two of them at a time.
step "static migrd-init (x86_64, aarch64, armv7) and the lab's balena-reporter for the same targets"
arm_targets=(--target aarch64-unknown-linux-musl --target armv7-unknown-linux-gnueabihf)
cargo build --locked -p migrd-init --profile init --target x86_64-unknown-linux-musl "${arm_targets[@]}"
cargo build --locked -p migrd-lab --bin balena-reporter --no-default-features --profile init \
  --target x86_64-unknown-linux-musl "${arm_targets[@]}"
step "migrd for aarch64 (musl) and armv7 (glibc + crt-static)"
# migrd links C libzstd and liblzma. No aarch64 musl C toolchain is packaged
# in Debian, so Debian's aarch64 cross gcc compiles them (they call only
# memory, string and pthread functions, which musl provides with the same
# ABI); outline atomics off because musl has no __aarch64_* helpers. The
# qemu-user smoke test decodes zstd and xz with the result. The variables
# name the aarch64 target only; armv7 uses Debian's armhf cross gcc.
CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
  CFLAGS_aarch64_unknown_linux_musl=-mno-outline-atomics \
  cargo build --locked -p migrd --bin migrd --profile ci "${arm_targets[@]}"
# No separate build of the host binaries: `cargo test --workspace` below
# builds them (the lab boots those), with the dev-dependencies' features
# unified in, so an earlier `cargo build --bins` was compiled a second
# time (measured: migrd, its two workspace crates and lzma-rust2, 2.5 min).
step "format"
cargo fmt --all -- --check
step "the lab's Debian images (built in the background since the start)"
wait "$images_pid" || { cat "$images_log" >&2; echo "building the lab's Debian images failed (log above)" >&2; exit 1; }
cat "$images_log"
step "tests (unit, integration, lab)"
# cargo test would run its ~30 test binaries one after another, each with its
# tests two at a time (the harness's default), so at the end of every lab
# binary a core sat idle while its last scenario ran. Here cargo only builds
# them (the same --workspace selection as a plain cargo test, so features
# and artifacts are the same) and they all start at once; the lab's slot
# pool (tests/src/slots.rs: one slot per core, MIGRD_LAB_JOBS to override)
# keeps the number of scenarios (QEMU guests) running at once to the number
# of cores.
# Each binary's output goes to target/lab/logs/cargo-test/<binary>.log and
# is printed whole when the binary ends; the script fails if any failed.
runs=${MIGRD_LAB_DIR:-target/lab}/logs/cargo-test
rm -rf "$runs"; mkdir -p "$runs"
cargo test --locked --profile ci --workspace --no-run --message-format=json >"$runs/build.json"
cargo test --locked --profile ci --workspace --doc -- --include-ignored "$@"
# Cargo's JSON messages, one line per artifact: test binaries have
# "test":true in their "profile" and an "executable". Each runs in its
# package's folder with the harness arguments cargo test would pass.
grep -E '"profile":\{[^}]*"test":true' "$runs/build.json" |
  sed -n 's|.*"manifest_path":"\([^"]*\)/Cargo.toml".*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*|\1\t\2\t\3|p' \
  >"$runs/binaries.tsv"
declare -A name_of=() log_of=() started_at=()
failed=()
while IFS=$'\t' read -r dir name exe; do
  log=$runs/$(basename "$exe").log
  (cd "$dir" && exec "$exe" --include-ignored "$@") >"$log" 2>&1 &
  name_of[$!]="$name ($(basename "$exe"))"; log_of[$!]=$log; started_at[$!]=$SECONDS
done <"$runs/binaries.tsv"
[ ${#name_of[@]} -gt 0 ] || { echo "no test binaries in $runs/build.json" >&2; exit 1; }
printf '[tests] %s test binaries started\n' "${#name_of[@]}"
# Lints and stage 2's unit tests on the ARM targets run beside the lab, at
# the lowest priority: nothing in the lab needs them, and the lab leaves
# cores idle (watchdog and guard timeouts, a last scenario running alone),
# which they fill; before, they held up the first scenario by ~6 minutes.
# The numbers in ioctls and syscalls differ between 32- and 64-bit kernels
# (BLKGETSIZE64 once failed every armv7 flash): migrd-init's own tests run
# as armv7 and aarch64 binaries under qemu-user; the ioctl tests use a real
# loop device. No other cargo command runs from here on, so they do not
# wait on cargo's lock.
checks_log=$runs/lints-and-arm-unit-tests.log
(
  set -e
  renice -n 19 -p "$BASHPID" >/dev/null
  cargo clippy --locked --profile ci --workspace --all-targets -- -D warnings
  CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=qemu-arm-static \
    cargo test --locked --profile ci -p migrd-init --target armv7-unknown-linux-gnueabihf --lib
  CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
    CFLAGS_aarch64_unknown_linux_musl=-mno-outline-atomics \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
    cargo test --locked --profile ci -p migrd-init --target aarch64-unknown-linux-musl --lib
) >"$checks_log" 2>&1 &
checks_pid=$!
checks_rc=
while [ ${#name_of[@]} -gt 0 ]; do
  rc=0; wait -n -p pid || rc=$?
  if [ "$pid" = "$checks_pid" ]; then checks_rc=$rc; continue; fi
  [ -n "${name_of[$pid]+set}" ] || continue
  name=${name_of[$pid]}; unset "name_of[$pid]"
  printf '\n==> [tests] %s: exit %s after %s s\n' "$name" "$rc" "$((SECONDS - ${started_at[$pid]}))"
  cat "${log_of[$pid]}"
  [ "$rc" = 0 ] || failed+=("$name")
done
if [ -z "$checks_rc" ]; then checks_rc=0; wait "$checks_pid" || checks_rc=$?; fi
printf '\n==> lints (clippy) and stage 2 unit tests on armv7 and aarch64: exit %s\n' "$checks_rc"
cat "$checks_log"
[ "$checks_rc" = 0 ] || failed+=("clippy or the ARM unit tests")
if [ ${#failed[@]} -gt 0 ]; then
  printf '\n[tests] FAILED: %s (logs in %s)\n' "${failed[*]}" "$runs" >&2
  exit 1
fi
printf '\n[tests] all test binaries passed\n'
