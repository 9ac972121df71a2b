#!/usr/bin/env bash
# Prepare this machine for the migrd lab: Debian packages (QEMU from
# bookworm-backports through a private apt configuration, so /etc/apt stays
# untouched), Rust musl targets, and Debian kernels extracted (never installed)
# into the lab cache. Idempotent: a second run only checks.
#
# Environment:
#   MIGRD_LAB_DIR   cache folder (default: <repo>/target/lab)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
LAB=${MIGRD_LAB_DIR:-$repo/target/lab}
mkdir -p "$LAB"
log() { printf '[lab-setup] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# The mirror the machine's own apt sources use.
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { log "cannot find the Debian mirror in /etc/apt; set up apt first"; exit 1; }

apt_dir=$LAB/apt-bpo
mkdir -p "$apt_dir/lists/partial"
{
  for s in bookworm bookworm-updates bookworm-backports; do echo "deb $mirror $s main"; done
  echo "deb ${mirror%/debian}/debian-security bookworm-security main"
} > "$apt_dir/sources.list"
A=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::lists=$apt_dir/lists")

need_update=1
apt_update() { if [ $need_update = 1 ]; then log "apt-get update"; $SUDO apt-get "${A[@]}" update -qq; need_update=0; fi; }

# QEMU comes from bookworm-backports: bookworm's own qemu-system conflicts with
# the preinstalled backports qemu-utils.
if ! command -v qemu-system-x86_64 >/dev/null; then
  apt_update
  log "installing qemu-system-x86 from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends \
    -t bookworm-backports qemu-system-x86 >/dev/null
fi
tools=(cpio zstd xz-utils dosfstools mtools fdisk e2fsprogs debootstrap grub-pc-bin grub-common ovmf grub-efi-amd64-bin)
missing=()
for p in "${tools[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v depmod >/dev/null || { apt_update; DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends kmod >/dev/null; }

# ARM: cross C compilers for the static aarch64/armv7 builds (migrd links C
# libzstd and liblzma; armv7 links glibc statically), U-Boot's tools
# (mkimage, mkenvimage, fw_printenv) and its QEMU build for the arm64 lab.
arm_tools=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  u-boot-tools u-boot-qemu libubootenv-tool device-tree-compiler)
missing=()
for p in "${arm_tools[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# qemu-user (smoke runs of the ARM binaries) and qemu-system-arm: from
# bookworm-backports, like qemu-system-x86 above.
if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-system-aarch64 >/dev/null; then
  apt_update
  log "installing qemu-user-static and qemu-system-arm from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends \
    -t bookworm-backports qemu-user-static qemu-system-arm >/dev/null
fi

# Rust targets for the static binaries.
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf; do
  rustup target list --installed | grep -qx "$t" || { log "rustup target add $t"; rustup target add "$t" >/dev/null; }
done

# arm64 and armhf packages (kernels, busybox for the ARM labs' old OSes)
# come through one private apt state per architecture, with that
# architecture as its only one, so the host's dpkg never learns a foreign
# architecture; nothing foreign is installed.
declare -A foreign_updated=()
foreign_opts() { # $1 = debian arch: apt options for its private state
  local st=$LAB/apt-$1
  mkdir -p "$st/lists/partial"
  F=("${A[@]}" -o "Dir::State::lists=$st/lists" -o "APT::Architecture=$1"
    -o "APT::Architectures::=$1" -o "Dir::State::status=/dev/null")
  if [ -z "${foreign_updated[$1]:-}" ]; then
    log "apt-get update ($1 state)"; apt-get "${F[@]}" update -qq; foreign_updated[$1]=1
  fi
}
apt_for() { # $1 = debian arch: sets F to the apt options for it
  if [ "$1" = amd64 ]; then apt_update; F=("${A[@]}"); else foreign_opts "$1"; fi
}

# Download one package's .deb and unpack it into $2 (never installed).
# $1 = debian arch, $2 = destination, $3 = package.
fetch_deb() {
  local darch=$1 dest=$2 pkg=$3 tmp
  tmp=$(mktemp -d "$LAB/dl.XXXXXX")
  apt_for "$darch"
  (cd "$tmp" && apt-get "${F[@]}" download -qq "$pkg" 2>/dev/null)
  mkdir -p "$dest"
  dpkg-deb -x "$tmp"/*.deb "$dest"
  rm -rf "$tmp"
}

# Debian's kernels, extracted into $LAB/kernel/<arch> (boot/vmlinuz-*,
# boot/config-*, lib/modules/<release>/ with modules.dep made by depmod;
# arm64 and armhf also usr/lib/linux-image-*/ with the device trees).
fetch_kernel() { # $1 = debian arch, $2 = flavour package (linux-image-amd64)
  local darch=$1 meta=$2 dest=$LAB/kernel/$1
  if compgen -G "$dest/boot/vmlinuz-*" >/dev/null && compgen -G "$dest/lib/modules/*/modules.dep" >/dev/null; then
    return 0
  fi
  local pkg
  apt_for "$darch"
  pkg=$(apt-cache "${F[@]}" depends "$meta" | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  [ -n "$pkg" ] || { log "cannot resolve $meta to a versioned kernel package"; exit 1; }
  log "downloading $pkg ($darch)"
  rm -rf "$dest.part"
  fetch_deb "$darch" "$dest.part" "$pkg"
  local rel; rel=$(ls "$dest.part/lib/modules")
  depmod -b "$dest.part" "$rel"
  rm -rf "$dest"; mv "$dest.part" "$dest"
  log "kernel $rel ready in $dest"
}
fetch_kernel amd64 linux-image-amd64
fetch_kernel arm64 linux-image-arm64
fetch_kernel armhf linux-image-armmp
for darch in arm64 armhf; do
  if [ ! -x "$LAB/$darch/busybox/bin/busybox" ]; then
    log "downloading busybox-static ($darch)"
    rm -rf "$LAB/$darch/busybox"
    fetch_deb "$darch" "$LAB/$darch/busybox" busybox-static
  fi
done

# U-Boot for QEMU's arm64 virt machine with boot counting, built from
# Debian's own u-boot source package (bookworm): Debian's u-boot-qemu keeps
# its environment in flash and does not count boots. This build keeps the
# environment in uboot.env on the first partition of virtio disk 0
# (CONFIG_ENV_IS_IN_FAT, which Linux reads and writes through
# /etc/fw_env.config) and counts boots there (CONFIG_BOOTCOUNT_LIMIT with
# CONFIG_BOOTCOUNT_ENV): the board the lab's restore-first scenarios need.
# U-Boot's FAT environment loader initialises MMC and SCSI itself but not
# virtio, which qemu_arm64 enumerates only later (board_late_init): the
# build adds the same for virtio (pci_init + virtio_init before the device
# lookup, a few lines in env/fat.c), so the environment is loaded at start
# as on a board with an SD card. Nothing else is changed.
# About a minute of building on two cores; cached in $LAB/arm64/u-boot-bootcount.
ub=$LAB/arm64/u-boot-bootcount
ub_recipe=2 # bump when the build below changes
if [ ! -f "$ub/u-boot.bin" ] || [ ! -f "$ub/u-boot-initial-env" ] ||
  [ "$(cat "$ub/recipe" 2>/dev/null)" != "$ub_recipe" ]; then
  missing=()
  for p in bison flex bc libssl-dev make; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    log "installing ${missing[*]} (U-Boot build)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  src_apt=$LAB/apt-src
  mkdir -p "$src_apt/lists/partial"
  echo "deb-src $mirror bookworm main" > "$src_apt/sources.list"
  S=(-o "Dir::Etc::sourcelist=$src_apt/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::lists=$src_apt/lists")
  tmp=$(mktemp -d "$LAB/ub.XXXXXX")
  log "downloading Debian's u-boot source package"
  apt-get "${S[@]}" update -qq
  (cd "$tmp" && apt-get "${S[@]}" source --download-only -qq u-boot 2>/dev/null)
  tar -xf "$tmp"/u-boot_*.orig.tar.* -C "$tmp"
  srcdir=$(find "$tmp" -maxdepth 1 -type d -name 'u-boot-*' | head -n1)
  log "building U-Boot qemu_arm64 with boot counting ($(basename "$srcdir"))"
  (
    cd "$srcdir"
    export CROSS_COMPILE=aarch64-linux-gnu-
    sed -i 's|^\tpart = blk_get_device_part_str(ifname, dev_and_part,|#if defined(CONFIG_VIRTIO_BLK) \&\& !defined(CONFIG_SPL_BUILD)\n\tif (!strcmp(ifname, "virtio"))\n\t\tpci_init(), virtio_init();\n#endif\n&|' env/fat.c
    sed -i 's|^#include <fat.h>|&\n#include <init.h>\n#include <dm/device.h>\n#include <virtio.h>|' env/fat.c
    [ "$(grep -c 'virtio_init();' env/fat.c)" = 2 ] || { echo "env/fat.c: the virtio patch did not apply" >&2; exit 1; }
    make -s qemu_arm64_defconfig
    scripts/config --enable BOOTCOUNT_LIMIT --enable BOOTCOUNT_ENV \
      --disable ENV_IS_IN_FLASH --enable ENV_IS_IN_FAT --enable FAT_WRITE \
      --set-str ENV_FAT_INTERFACE virtio --set-str ENV_FAT_DEVICE_AND_PART 0:1 \
      --set-str ENV_FAT_FILE uboot.env
    make -s olddefconfig
    make -s -j"$(nproc)" u-boot.bin u-boot-initial-env >"$tmp/build.log" 2>&1 ||
      { tail -n 30 "$tmp/build.log" >&2; exit 1; }
    grep -q '^CONFIG_BOOTCOUNT_ENV=y' .config && grep -q '^CONFIG_ENV_IS_IN_FAT=y' .config
  ) || { log "U-Boot build failed"; exit 1; }
  mkdir -p "$ub"
  cp "$srcdir/u-boot.bin" "$srcdir/u-boot-initial-env" "$ub/"
  cp "$srcdir/.config" "$ub/config"
  echo "$ub_recipe" > "$ub/recipe"
  rm -rf "$tmp"
fi

# virt-firmware (virt-fw-vars) in a venv: reads and writes OVMF vars files
# from the host, for the EFI codec tests and the UEFI scenarios.
venv=$LAB/venv
if ! "$venv/bin/virt-fw-vars" --help >/dev/null 2>&1; then
  python3 -m venv "$venv" 2>/dev/null || {
    apt_update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${A[@]}" install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf "$venv"; python3 -m venv "$venv"
  }
  log "installing virt-firmware into $venv"
  "$venv/bin/pip" install -q virt-firmware
fi
# Installed packages' .deb files are not needed again: free the space
# (CI disks are small).
[ $need_update = 1 ] || $SUDO apt-get "${A[@]}" clean
log "lab ready in $LAB"
