#!/usr/bin/env python3
"""Summarise bench/run.sh results as the Markdown tables of docs/benchmarks.md.

usage: bench/report.py RESULTS.csv

Per target and format: median wall time and spread (min-max) of every tool,
peak RSS, and the ratios the issue sets targets for:
  migrd (verify off) / fastest peer      target <= 1.0
  migrd (verify on)  / fastest peer      target <= 1.3
  migrd (verify off) / limit             target <= 1.15, where the limit is
      the slower of decompress-only and a raw dd of the uncompressed image
  peak RSS of migrd                      target <= 32 MiB
Peers: the dd pipe and bmaptool copy (with and without its checksum check).
"""
import csv
import statistics
import sys
from collections import defaultdict

PEERS = ("dd-pipe", "bmaptool", "bmaptool-noverify")
ORDER = ("migrd", "migrd-verify", "migrd-pure", "dd-pipe", "bmaptool", "bmaptool-noverify", "decompress-only")


def main(path):
    runs = defaultdict(list)
    rss = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            key = (r["target"], r["format"], r["tool"])
            runs[key].append(float(r["seconds"]))
            rss[key].append(int(r["max_rss_kb"]))
    med = {k: statistics.median(v) for k, v in runs.items()}
    targets = sorted({k[0] for k in runs}, key=lambda t: (t != "file", t))
    for t in targets:
        raw = med.get((t, "raw", "raw-dd"))
        print(f"\n### Target: {t}\n")
        if raw is not None:
            v = runs[(t, "raw", "raw-dd")]
            print(f"Raw `dd` of the uncompressed image: median {raw:.2f} s "
                  f"(spread {min(v):.2f}–{max(v):.2f}, n={len(v)}).\n")
        print("| format | tool | median s | spread s | n | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|")
        for fmt in ("gz", "zst", "xz"):
            for tool in ORDER:
                k = (t, fmt, tool)
                if k not in runs:
                    continue
                v = runs[k]
                print(f"| {fmt} | {tool} | {med[k]:.2f} | {min(v):.2f}–{max(v):.2f} | {len(v)} "
                      f"| {max(rss[k]) / 1024:.1f} |")
        print("\n| format | fastest peer | migrd / peer | migrd-verify / peer | limit | migrd / limit | migrd peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for fmt in ("gz", "zst", "xz"):
            peers = [(med[(t, fmt, p)], p) for p in PEERS if (t, fmt, p) in med]
            m = med.get((t, fmt, "migrd"))
            mv = med.get((t, fmt, "migrd-verify"))
            if not peers or m is None:
                continue
            best, name = min(peers)
            dec = med.get((t, fmt, "decompress-only"))
            limit = max(x for x in (dec, raw) if x is not None) if (dec or raw) else None
            peak = max(rss[(t, fmt, "migrd")] + rss.get((t, fmt, "migrd-verify"), [])) / 1024
            print(f"| {fmt} | {name} {best:.2f} s | {m / best:.2f} | "
                  f"{(mv / best) if mv else float('nan'):.2f} | {limit:.2f} s | "
                  f"{(m / limit) if limit else float('nan'):.2f} | {peak:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
