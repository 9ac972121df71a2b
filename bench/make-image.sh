#!/usr/bin/env bash
# Build the benchmark image: a 2 GiB disk with balenaOS's partition layout
# (MBR: boot vfat, rootA, rootB, extended, state, data), filesystems holding
# a mix of compressible files (programs, libraries, text), incompressible
# data (seeded pseudo-random, like compressed container layers) and empty
# space; then compress it as gz, zst and xz and make a bmap of it.
# No loop mounts: mkfs.ext4 -d and mkfs.vfat + mcopy fill file systems built
# in files, dd puts them in place.
#
# usage: bench/make-image.sh OUTDIR [SIZE_MIB]   (default 2048)
# needs: sfdisk (fdisk), mkfs.ext4 (e2fsprogs), mkfs.vfat (dosfstools),
#        mcopy (mtools), openssl, gzip, zstd, xz-utils, bmaptool (bmap-tools)
set -euo pipefail
out=${1:?usage: make-image.sh OUTDIR [SIZE_MIB]}
size=${2:-2048}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/build.XXXX")
trap 'rm -rf "$work"' EXIT

# Seeded pseudo-random bytes: incompressible, and the same on every run.
random_bytes() { # SEED BYTES
    { openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 </dev/zero 2>/dev/null || true; } | head -c "$2"
}

# Sizes in MiB, scaled from a 2 GiB image.
boot=64; state=32
root=$(( (size - boot - state - 8) * 3 / 10 ))
data=$(( size - boot - state - 2 * root - 8 ))

# Partition table (1 MiB aligned, logical partitions leave 1 MiB gaps).
img="$work/disk.img"
truncate -s "${size}M" "$img"
sfdisk -q "$img" <<SF
label: dos
label-id: 0x6d696772
start=1MiB, size=${boot}MiB, type=c, bootable
size=${root}MiB, type=83
size=${root}MiB, type=83
type=5
size=${state}MiB, type=83
type=83
SF

# Offsets from the table itself.
part_start() { sfdisk -d "$img" | awk -v n="$img$1 " 'index($0, n) == 1 { sub(/,/, "", $4); print $4 }'; }
part_size() { sfdisk -d "$img" | awk -v n="$img$1 " 'index($0, n) == 1 { sub(/,/, "", $6); print $6 }'; }
place() { # PARTNUM FSIMAGE
    dd if="$2" of="$img" bs=1M seek=$(( $(part_start "$1") * 512 )) oflag=seek_bytes conv=notrunc,sparse status=none
}

# resin-boot: kernels/firmware-like binaries and config text.
truncate -s "$(( $(part_size 1) * 512 ))" "$work/boot.vfat"
mkfs.vfat -n resin-boot "$work/boot.vfat" >/dev/null 2>&1
mkdir -p "$work/boot/overlays"
for f in /usr/bin/{bash,perl,python3,gdb,cmake} /usr/lib/x86_64-linux-gnu/libLLVM*.so.*; do
    [ -f "$f" ] && head -c 6000000 "$f" >"$work/boot/$(basename "$f").bin" || true
done
random_bytes boot 8000000 >"$work/boot/firmware.bin"
cp /usr/share/common-licenses/* "$work/boot/overlays/" 2>/dev/null || true
echo '{"deviceType":"genericx86-64","hostname":"bench"}' >"$work/boot/config.json"
mcopy -s -i "$work/boot.vfat" "$work/boot/"* ::/
place 1 "$work/boot.vfat"

# resin-rootA: an OS tree (programs, libraries, documentation).
mkdir -p "$work/rootA/usr/lib" "$work/rootA/usr/share"
cp -a /usr/bin "$work/rootA/usr/"
cp -a /usr/lib/x86_64-linux-gnu "$work/rootA/usr/lib/" 2>/dev/null || true
cp -a /usr/share/doc "$work/rootA/usr/share/" 2>/dev/null || true
# Keep it within 60% of the partition: drop the largest files first.
limit=$(( root * 6 / 10 * 1024 * 1024 ))
find "$work/rootA" -type f -printf '%s %p\n' | sort -rn | awk -v limit="$limit" '
    { total += $1; files[NR] = $0 }
    END { for (i = 1; i <= NR && total > limit; i++) { split(files[i], f, " "); total -= f[1]; print substr(files[i], length(f[1]) + 2) } }' \
    | while IFS= read -r victim; do rm -f "$victim"; done
mkfs.ext4 -q -F -L resin-rootA -d "$work/rootA" "$work/rootA.ext4" "${root}M"
place 2 "$work/rootA.ext4"
rm -rf "$work/rootA" "$work/rootA.ext4"

# resin-rootB: empty.
mkfs.ext4 -q -F -L resin-rootB "$work/rootB.ext4" "${root}M"
place 3 "$work/rootB.ext4"
rm -f "$work/rootB.ext4"

# resin-state: a few small files.
mkdir -p "$work/state/root-overlay/etc"
cp -a /etc/ssl "$work/state/root-overlay/etc/" 2>/dev/null || true
mkfs.ext4 -q -F -L resin-state -d "$work/state" "$work/state.ext4" "$(( $(part_size 5) / 2048 ))M"
place 5 "$work/state.ext4"
rm -rf "$work/state" "$work/state.ext4"

# resin-data: container layers (incompressible), logs (text), free space.
mkdir -p "$work/data/docker/overlay2" "$work/data/log"
for i in 1 2 3 4; do
    random_bytes "layer$i" $(( data * 1024 * 1024 / 10 )) >"$work/data/docker/overlay2/layer$i.tar.zst"
done
for i in 1 2 3; do
    find /usr/share/doc -name '*.gz' -print0 | sort -z | head -z -n 400 | xargs -0 zcat -f 2>/dev/null \
        | head -c $(( data * 1024 * 1024 / 20 )) >"$work/data/log/journal$i.log" || true
done
mkfs.ext4 -q -F -L resin-data -d "$work/data" "$work/data.ext4" "$(( $(part_size 6) / 2048 ))M"
place 6 "$work/data.ext4"
rm -rf "$work/data" "$work/data.ext4"

mv "$img" "$out/bench.img"
img="$out/bench.img"
echo "image: $(du -h --apparent-size "$img" | cut -f1) ($(du -h "$img" | cut -f1) allocated)"

gzip -6 -c "$img" >"$out/bench.img.gz"
zstd -q -3 -T0 -f "$img" -o "$out/bench.img.zst"
xz -6 -T0 -c "$img" >"$out/bench.img.xz"
bmaptool -q create -o "$out/bench.img.bmap" "$img"
ls -l "$out"
