#!/usr/bin/env bash
# Time migrd write-image against the usual tools and the limits, on the
# same targets, several times each; append one CSV line per run.
#
# usage: bench/run.sh IMAGEDIR RESULTS.csv [REPS] [TARGETS]
#   IMAGEDIR  holds bench.img{,.gz,.zst,.xz,.bmap} (bench/make-image.sh)
#   REPS      runs of each command (default 3)
#   TARGETS   "file loop" (default): a file on the same disk, and a loop
#             device (--direct-io=on) over a preallocated file, if losetup works
# env: MIGRD (default target/release/migrd), TARGET_DIR (default IMAGEDIR),
#      FORMATS (default "gz zst xz"), TOOLS (default all)
# needs: GNU time (/usr/bin/time), gzip, zstd, xz-utils, bmap-tools, util-linux
set -euo pipefail
dir=$(cd "${1:?usage: run.sh IMAGEDIR RESULTS.csv [REPS] [TARGETS]}" && pwd)
csv=${2:?results file}
reps=${3:-3}
targets=${4:-file loop}
here=$(cd "$(dirname "$0")" && pwd)
migrd=${MIGRD:-$here/../target/release/migrd}
tdir=${TARGET_DIR:-$dir}
formats=${FORMATS:-gz zst xz}
tools=${TOOLS:-migrd migrd-verify migrd-pure dd-pipe bmaptool bmaptool-noverify decompress-only raw-dd}
img=$dir/bench.img
size=$(stat -c %s "$img")
[ -s "$csv" ] || echo "target,format,tool,rep,seconds,max_rss_kb" >"$csv"

declare -A dec=([gz]="gzip -dc" [zst]="zstd -dc" [xz]="xz -dc")

loopfile=$tdir/loop-backing.img
loopdev=
cleanup() { [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null; rm -f "$loopfile" "$tdir/target.img"; }
trap cleanup EXIT

prepare_target() { # KIND -> prints the target path
    case $1 in
        file)
            rm -f "$tdir/target.img"
            sync
            echo "$tdir/target.img"
            ;;
        loop)
            echo "$loopdev"
            ;;
    esac
}

measure() { # TARGETKIND FORMAT TOOL REP COMMAND...
    local kind=$1 fmt=$2 tool=$3 rep=$4
    shift 4
    # Warm input (as after a download), cold target, quiet page cache.
    sync
    echo 3 >/proc/sys/vm/drop_caches
    cat "$dir"/bench.img* >/dev/null
    local tf=/tmp/bench-time.$$ ef=/tmp/bench-err.$$ secs rss
    if ! /usr/bin/time -o "$tf" -f "%e %M" "$@" >/dev/null 2>"$ef"; then
        echo "FAILED: $kind $fmt $tool: $(tail -3 "$ef")" >&2
        return 0
    fi
    read -r secs rss <"$tf"
    echo "$kind,$fmt,$tool,$rep,$secs,$rss" | tee -a "$csv"
}

for kind in $targets; do
    if [ "$kind" = loop ]; then
        fallocate -l "$size" "$loopfile"
        loopdev=$(losetup -f --show --direct-io=on "$loopfile" 2>/dev/null) || {
            echo "no loop device: skipping the loop target" >&2
            rm -f "$loopfile"
            continue
        }
    fi
    for rep in $(seq 1 "$reps"); do
        for fmt in $formats; do
            src=$img.$fmt
            for tool in $tools; do
                t=$(prepare_target "$kind")
                case $tool in
                    migrd) measure "$kind" "$fmt" "$tool" "$rep" "$migrd" write-image "$src" --to "$t" --no-verify --json ;;
                    migrd-pure) [ "$fmt" != gz ] && measure "$kind" "$fmt" "$tool" "$rep" "$migrd" write-image "$src" --to "$t" --no-verify --json --pure-rust-decoders ;;
                    migrd-verify) measure "$kind" "$fmt" "$tool" "$rep" "$migrd" write-image "$src" --to "$t" --json ;;
                    dd-pipe) measure "$kind" "$fmt" "$tool" "$rep" sh -c "${dec[$fmt]} '$src' | dd of='$t' bs=4M conv=fsync status=none" ;;
                    bmaptool) measure "$kind" "$fmt" "$tool" "$rep" bmaptool -q copy --bmap "$img.bmap" "$src" "$t" ;;
                    bmaptool-noverify) measure "$kind" "$fmt" "$tool" "$rep" bmaptool -q copy --no-verify --bmap "$img.bmap" "$src" "$t" ;;
                    decompress-only) measure "$kind" "$fmt" "$tool" "$rep" sh -c "${dec[$fmt]} '$src' >/dev/null" ;;
                    raw-dd) [ "$fmt" = "${formats%% *}" ] && measure "$kind" raw "$tool" "$rep" dd if="$img" of="$t" bs=4M conv=fsync status=none ;;
                esac
            done
        done
    done
    if [ -n "$loopdev" ]; then losetup -d "$loopdev"; loopdev=; rm -f "$loopfile"; fi
done
rm -f /tmp/bench-err.$$ /tmp/bench-time.$$
