#!/usr/bin/env bash
# The lab's legacy devices: Debian bookworm with a serial console and root
# autologin, hostname vmlab-legacy, a random canary in /root/canary, built
# without loop devices or mounts (debootstrap, mkfs.ext4 -d, mkfs.vfat +
# mtools, sfdisk, dd, grub-mkimage).
#   bios: MBR, one ext4 root partition at 1 MiB, GRUB for BIOS in the MBR gap.
#   uefi: GPT, a 256 MiB ESP at 1 MiB mounted on /boot/efi and an ext4 root,
#         booting like a Debian install does: Debian's signed shim and GRUB in
#         \EFI\debian, a "debian" Boot#### entry in the firmware (made by
#         shim's own fallback on a first boot under OVMF, once per vars
#         template: plain and Secure Boot with Microsoft keys enrolled).
#
# usage: debian.sh bios|uefi OUT_DIR
#   Writes OUT_DIR/debian-<fw>.img (a fresh writable copy, 2 GiB sparse),
#   OUT_DIR/canary.sha256 ("<hex>  /root/canary"), for uefi also
#   OUT_DIR/debian-uefi.vars.fd and debian-uefi.vars-sb.fd (OVMF variable
#   stores holding the debian entry), prints the image's path.
#
# Cached in $MIGRD_LAB_DIR/images/ (default <repo>/target/lab) by a hash of
# the recipe: this script, the package list and the kernel version
# debootstrap installs. The debootstrap tree is cached on its own
# (debootstrap-*.tar.zst), so editing this script rebuilds in seconds.
# Needs root, debootstrap, grub-common (grub-mkimage, grub-editenv), zstd,
# e2fsprogs, fdisk: tests/lab/setup.sh installs them.
set -euo pipefail
[ $# -eq 2 ] && { [ "$1" = bios ] || [ "$1" = uefi ]; } || { echo "usage: $0 bios|uefi OUT_DIR" >&2; exit 2; }
FW=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
LAB=${MIGRD_LAB_DIR:-$repo/target/lab}
OUT=$1
cache=$LAB/images
name=debian-$FW
log() { printf '[%s] %s\n' "$name" "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, device nodes in the root fs)"; exit 1; }

SUITE=bookworm
PACKAGES=linux-image-amd64,systemd-sysv,udev,kmod,e2fsprogs,grub2-common,grub-pc-bin,efibootmgr,dosfstools
HOSTNAME_=vmlab-legacy
ROOT_UUID=6a1e0c2b-4f5d-4c1e-9a55-0c0ffee00001
# UEFI layout identities (fixed, so the image is the same every build).
ESP_FSID=E5F1-0001
DISK_GUID=6a1e0c2b-4f5d-4c1e-9a55-0c0ffee000d0
ESP_PARTUUID=6a1e0c2b-4f5d-4c1e-9a55-0c0ffee000e1
ROOT_PARTUUID=6a1e0c2b-4f5d-4c1e-9a55-0c0ffee000e2
DISK_MIB=2048

mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { log "cannot find the Debian mirror in /etc/apt"; exit 1; }

# The kernel debootstrap will install: linux-image-amd64 from the suite's
# main component (not -security/-updates, which debootstrap does not use),
# read from the lab's apt lists (tests/lab/setup.sh) or the host's.
apt_opts=()
if [ -f "$LAB/apt-bpo/sources.list" ]; then
  apt_opts=(-o "Dir::Etc::sourcelist=$LAB/apt-bpo/sources.list" -o "Dir::Etc::sourceparts=-"
            -o "Dir::State::lists=$LAB/apt-bpo/lists")
fi
kmeta=$(apt-cache "${apt_opts[@]}" madison linux-image-amd64 2>/dev/null |
  awk -F'|' -v s=" $SUITE/main " 'index($3, s) { gsub(/ /, "", $2); print $2; exit }')
[ -n "$kmeta" ] || { log "linux-image-amd64 not in the apt lists: run tests/lab/setup.sh"; exit 1; }
kpkg=$(apt-cache "${apt_opts[@]}" show "linux-image-amd64=$kmeta" 2>/dev/null |
  sed -n 's/^Depends: \(linux-image-[0-9][^ ,]*\).*/\1/p' | head -n1)

hash() { sha256sum | cut -c1-16; }
boot_key=$(printf '%s\n' "$SUITE" "$PACKAGES" "$kmeta" "$kpkg" | hash)
key=$( { cat "$0"; printf '%s\n' "$FW" "$boot_key"; } | hash)
img_cache=$cache/$name-$key.img.zst
canary_cache=$cache/$name-$key.canary.sha256
vars_cache=$cache/$name-$key.vars.fd
vars_sb_cache=$cache/$name-$key.vars-sb.fd
tar_cache=$cache/debootstrap-$SUITE-$boot_key.tar.zst

mkdir -p "$cache" "$OUT"
# One lock for every Debian image, not one per image: the BIOS and UEFI
# images share the debootstrap tree ($tar_cache, written through one .part
# file), and tests/lab/test.sh runs the test binaries that need each at the
# same time. The second one waits and reuses the tree.
exec 9>"$cache/.debian.lock"
flock 9

build_image() {
  local w; w=$(mktemp -d "$cache/tmp.$name.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$w'" EXIT
  local R=$w/rootfs t0=$SECONDS
  if [ -f "$tar_cache" ]; then
    log "root fs from $tar_cache"
    mkdir "$R"
    zstd -dcq "$tar_cache" | tar -x --numeric-owner -C "$R"
  else
    log "debootstrap $SUITE ($PACKAGES) from $mirror"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$R" "$mirror" >"$w/debootstrap.log" 2>&1 ||
      { tail -n 30 "$w/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
    rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*_Packages
    log "debootstrap done in $((SECONDS - t0)) s; caching the tree"
    tar -C "$R" --numeric-owner -cf - . | zstd -q -T0 -3 -o "$tar_cache.part"
    mv "$tar_cache.part" "$tar_cache"
    find "$cache" -maxdepth 1 -name "debootstrap-$SUITE-*.tar.zst" ! -name "${tar_cache##*/}" -delete
  fi
  local kv
  kv=$(cd "$R/boot" && ls vmlinuz-* | sed 's/^vmlinuz-//' | sort -V | tail -n1)
  [ -n "$kv" ] && [ -f "$R/boot/initrd.img-$kv" ] || { log "no kernel/initrd in the root fs"; exit 1; }
  [ "linux-image-$kv" = "$kpkg" ] || log "warning: apt lists said $kpkg, debootstrap installed linux-image-$kv"

  # A lean initramfs: the root disk's driver and file system only, as an
  # installer's targeted MODULES=dep would make for this machine. Debian's
  # generic MODULES=most makes a 36 MB one, which GRUB reads and the kernel
  # unpacks at every cold boot, slowly under TCG. The old OS's modules on
  # the root fs, which migrd packs from, are untouched.
  printf 'MODULES=list\n' >"$R/etc/initramfs-tools/conf.d/lab-modules.conf"
  printf '%s\n' virtio_pci virtio_blk ext4 >>"$R/etc/initramfs-tools/modules"
  chroot "$R" update-initramfs -u -k "$kv" >"$w/initramfs.log" 2>&1 ||
    { tail -n 30 "$w/initramfs.log" >&2; log "update-initramfs failed"; exit 1; }
  log "initramfs: $(stat -c %s "$R/boot/initrd.img-$kv") bytes"

  # Identity, login, fstab.
  echo "$HOSTNAME_" >"$R/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$HOSTNAME_" >"$R/etc/hosts"
  sed -i 's/^root:[^:]*:/root::/' "$R/etc/shadow"
  printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$ROOT_UUID" >"$R/etc/fstab"
  local d=$R/etc/systemd/system/serial-getty@ttyS0.service.d
  mkdir -p "$d"
  printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %%I $TERM\n' >"$d/autologin.conf"
  # No pager or colour escapes in the lab's serial transcripts.
  printf 'export SYSTEMD_PAGER= SYSTEMD_COLORS=0 PAGER=cat\n' >>"$R/root/.profile"

  # The canary: 64 random bytes, hex.
  od -An -tx1 -v -N64 /dev/urandom | tr -d ' \n' >"$R/root/canary"
  echo >>"$R/root/canary"
  chmod 600 "$R/root/canary"
  printf '%s  /root/canary\n' "$(sha256sum <"$R/root/canary" | cut -d' ' -f1)" >"$w/canary.sha256"

  # GRUB: what grub-install and update-grub would leave in /boot/grub.
  local G=$R/boot/grub M=$R/usr/lib/grub/i386-pc
  mkdir -p "$G"
  if [ "$FW" = bios ]; then
    mkdir -p "$G/i386-pc"
    cp "$M"/*.mod "$M"/*.lst "$G/i386-pc/"
  else
    mkdir -p "$R/boot/efi"
    printf 'UUID=%s\t/boot/efi\tvfat\tumask=0077\t0\t1\n' "$ESP_FSID" >>"$R/etc/fstab"
  fi
  cat >"$R/etc/default/grub" <<EOF
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=\`lsb_release -i -s 2> /dev/null || echo Debian\`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1"
GRUB_DISABLE_OS_PROBER=true
EOF
  write_grub_cfg "$kv" >"$G/grub.cfg"
  grub-editenv "$G/grubenv" create

  if [ "$FW" = uefi ]; then
    make_uefi_disk "$w" "$R"
  else
    make_bios_disk "$w" "$R"
  fi

  zstd -q -T0 -3 -o "$img_cache.part" "$w/disk.img"
  mv "$w/canary.sha256" "$canary_cache"
  mv "$img_cache.part" "$img_cache"
  find "$cache" -maxdepth 1 -name "$name-*" ! -name "$name-$key.*" -delete
  log "built $img_cache in $((SECONDS - t0)) s (kernel $kv)"
  rm -rf "$w"
  trap - EXIT
}

# Root fs from the tree, MBR disk, GRUB boot code in the MBR and its gap.
make_bios_disk() {
  local w=$1 R=$2 M=$2/usr/lib/grub/i386-pc
  mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -d "$R" "$w/root.ext4" "$((DISK_MIB - 1))M"
  truncate -s "${DISK_MIB}M" "$w/disk.img"
  printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$w/disk.img"
  dd if="$w/root.ext4" of="$w/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
  grub-mkimage -d "$M" -O i386-pc -o "$w/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 search search_fs_uuid normal configfile serial terminal loadenv linux echo test
  [ "$(stat -c %s "$w/core.img")" -le $((2047 * 512)) ] || { log "core.img does not fit the MBR gap"; exit 1; }
  dd if="$M/boot.img" of="$w/disk.img" bs=440 count=1 conv=notrunc status=none
  dd if="$w/core.img" of="$w/disk.img" bs=512 seek=1 conv=notrunc status=none
}

# GPT disk: ESP (FAT32) at 1 MiB, ext4 root after it. The ESP holds what
# Debian's grub-install puts there with shim-signed: \EFI\debian\ with
# shim, the signed GRUB (which reads \EFI\debian\grub.cfg, pointing at
# /boot/grub on the root fs), MokManager, fallback and BOOTX64.CSV. The
# signed binaries come from Debian's packages, downloaded and unpacked.
make_uefi_disk() {
  local w=$1 R=$2 e=$2/../efi
  mkdir -p "$e/pkgs" "$e/EFI/debian"
  (cd "$e/pkgs" && apt-get "${apt_opts[@]}" download -qq shim-signed shim-helpers-amd64-signed shim-unsigned grub-efi-amd64-signed 2>/dev/null)
  for d in "$e"/pkgs/*.deb; do dpkg-deb -x "$d" "$e/x"; done
  cp "$e/x/usr/lib/shim/shimx64.efi.signed" "$e/EFI/debian/shimx64.efi"
  cp "$e/x/usr/lib/shim/mmx64.efi.signed" "$e/EFI/debian/mmx64.efi"
  cp "$e/x/usr/lib/shim/fbx64.efi.signed" "$e/EFI/debian/fbx64.efi"
  cp "$e/x/usr/lib/shim/BOOTX64.CSV" "$e/EFI/debian/BOOTX64.CSV"
  cp "$e/x/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" "$e/EFI/debian/grubx64.efi"
  printf "search.fs_uuid %s root\nset prefix=(\$root)'/boot/grub'\nconfigfile \$prefix/grub.cfg\n" "$ROOT_UUID" \
    >"$e/EFI/debian/grub.cfg"
  local esp_mib=256 mt=(env MTOOLS_SKIP_CHECK=1)
  mkfs.vfat -C -F 32 -i "${ESP_FSID/-/}" "$w/esp.fat" $((esp_mib * 1024)) >/dev/null
  "${mt[@]}" mcopy -s -i "$w/esp.fat" "$e/EFI" ::/
  mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -d "$R" "$w/root.ext4" "$((DISK_MIB - esp_mib - 2))M"
  truncate -s "${DISK_MIB}M" "$w/disk.img"
  printf 'label: gpt\nlabel-id: %s\nstart=2048, size=%s, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=%s, name="EFI System Partition"\nstart=%s, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=%s\n' \
    "$DISK_GUID" $((esp_mib * 2048)) "$ESP_PARTUUID" $(((esp_mib + 1) * 2048)) "$ROOT_PARTUUID" | sfdisk -q "$w/disk.img"
  dd if="$w/esp.fat" of="$w/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$w/root.ext4" of="$w/disk.img" bs=1M seek=$((esp_mib + 1)) conv=notrunc,sparse status=none

  # The firmware's "debian" entry, as grub-install would make it: shim
  # started from the removable-media path with fbx64.efi beside it runs
  # fallback, which creates the entry from \EFI\debian\BOOTX64.CSV and
  # boots it. Stopped once GRUB runs. Once per vars template.
  "${mt[@]}" mmd -i "$w/disk.img@@1M" ::/EFI/BOOT
  "${mt[@]}" mcopy -i "$w/disk.img@@1M" "$e/EFI/debian/shimx64.efi" ::/EFI/BOOT/BOOTX64.EFI
  "${mt[@]}" mcopy -i "$w/disk.img@@1M" "$e/EFI/debian/fbx64.efi" ::/EFI/BOOT/fbx64.efi
  "${mt[@]}" mcopy -i "$w/disk.img@@1M" "$e/EFI/debian/grubx64.efi" ::/EFI/BOOT/grubx64.efi
  first_boot "$w" /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd "$w/vars.fd"
  first_boot "$w" /usr/share/OVMF/OVMF_CODE_4M.secboot.fd /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$w/vars-sb.fd"
  "${mt[@]}" mdeltree -i "$w/disk.img@@1M" ::/EFI/BOOT
  mv "$w/vars.fd" "$vars_cache"
  mv "$w/vars-sb.fd" "$vars_sb_cache"
}

# Boot the disk under OVMF with a copy of a vars template until GRUB prints
# its banner; the vars file then holds the entries shim's fallback made.
first_boot() {
  local w=$1 code=$2 template=$3 vars=$4 log=$1/first-boot.log
  cp "$template" "$vars"
  local sb=()
  case $code in *secboot*) sb=(-global driver=cfi.pflash01,property=secure,value=on) ;; esac
  rm -f "$log"
  qemu-system-x86_64 -accel tcg -machine "q35,smm=on" -m 1024 -smp 2 "${sb[@]}" \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$code" \
    -drive if=pflash,format=raw,unit=1,file="$vars" \
    -drive file="$w/disk.img",format=raw,if=virtio \
    -display none -serial file:"$log" -monitor none -no-reboot -nic none &
  local pid=$! i
  for i in $(seq 1 300); do
    grep -q "Loading Linux" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q "Loading Linux" "$log" || { tail -c 3000 "$log" | tr -d '\033' >&2; log "first boot under $code did not reach GRUB"; exit 1; }
  log "first boot under ${code##*/}: the debian entry is in ${vars##*/} ($i s)"
}

# grub.cfg as Debian's update-grub writes it, for what matters to a one-shot
# boot: 00_header's next_entry logic, the Debian entry first and default,
# 41_custom's custom.cfg.
write_grub_cfg() {
  local kv=$1 part=msdos
  [ "$FW" = uefi ] && part=gpt
  cat <<EOF
#
# DO NOT EDIT THIS FILE
#
# It is automatically generated by grub-mkconfig using templates
# from /etc/grub.d and settings from /etc/default/grub
#

### BEGIN /etc/grub.d/00_header ###
if [ -s \$prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "\${next_entry}" ] ; then
   set default="\${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="0"
fi

if [ x"\${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi

export menuentry_id_option

if [ "\${prev_saved_entry}" ]; then
  set saved_entry="\${prev_saved_entry}"
  save_env saved_entry
  set prev_saved_entry=
  save_env prev_saved_entry
  set boot_once=true
fi

function savedefault {
  if [ -z "\${boot_once}" ]; then
    saved_entry="\${chosen}"
    save_env saved_entry
  fi
}
function load_video {
  true
}

serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
terminal_input serial
terminal_output serial
if [ x\$feature_timeout_style = xy ] ; then
  set timeout_style=menu
  set timeout=1
# Fallback normal timeout code in case the timeout_style feature is
# unavailable.
else
  set timeout=1
fi
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/05_debian_theme ###
set menu_color_normal=cyan/blue
set menu_color_highlight=white/blue
### END /etc/grub.d/05_debian_theme ###

### BEGIN /etc/grub.d/10_linux ###
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os \$menuentry_id_option 'debian' {
	load_video
	insmod gzio
	insmod part_$part
	insmod ext2
	search --no-floppy --fs-uuid --set=root $ROOT_UUID
	echo	'Loading Linux $kv ...'
	linux	/boot/vmlinuz-$kv root=UUID=$ROOT_UUID ro console=ttyS0,115200 quiet
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-$kv
}
### END /etc/grub.d/10_linux ###

### BEGIN /etc/grub.d/40_custom ###
# This file provides an easy way to add custom menu entries.  Simply type the
# menu entries you want to add after this comment.  Be careful not to change
# the 'exec tail' line above.
### END /etc/grub.d/40_custom ###

### BEGIN /etc/grub.d/41_custom ###
if [ -f  \${config_directory}/custom.cfg ]; then
  source \${config_directory}/custom.cfg
elif [ -z "\${config_directory}" -a -f  \$prefix/custom.cfg ]; then
  source \$prefix/custom.cfg
fi
### END /etc/grub.d/41_custom ###
EOF
}

if [ -f "$img_cache" ] && [ -f "$canary_cache" ] && { [ "$FW" = bios ] || [ -f "$vars_sb_cache" ]; }; then
  log "cached: $img_cache"
else
  build_image >&2
fi
rm -f "$OUT/$name.img"
zstd -dq --sparse -f "$img_cache" -o "$OUT/$name.img"
if [ "$FW" = uefi ]; then
  cp "$vars_cache" "$OUT/$name.vars.fd"
  cp "$vars_sb_cache" "$OUT/$name.vars-sb.fd"
fi
cp "$canary_cache" "$OUT/canary.sha256"
flock -u 9
echo "$OUT/$name.img"
