"""What a stage's bookkeeping costs as its shard count grows.

A manifest with ``n`` shard entries shaped like the inject stage's (two files each, with sha256) is written
through :meth:`amc.engine.rundir.RunDir.write_manifest` (indented JSON, temp file, fsync, rename) a few times.
Before the journal the runner rewrote it after every shard: a stage of ``n`` shards wrote it ``n`` times at sizes
1..n, about ``n`` writes of half the final size (the third column). Now (``--journal``, the fourth and fifth
columns) a stage writes it at its start and end and appends one fsync'd journal line per shard
(:meth:`~amc.engine.rundir.RunDir.record_shard`); the last column is reading the manifest back with ``n`` journal
lines (``amc status`` or a resume after a kill).

    nice -n 10 python bench/manifest_cost.py --shards 100 1000 4000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from amc.engine.rundir import RunDir

ENTRY = {
    "rows": 70,
    "rejects": 30,
    "dropped": 0,
    "counts": {"paths": 70, "correct": 50, "paths:sample": 60, "paths:inject": 10, "tried:inject": 16},
    "reject_reasons": {"duplicate": 20, "not_flawed": 10},
    "files": {
        "data/00001-of-01563.parquet": {"rows": 70, "bytes": 40000, "sha256": "a" * 64},
        "rejects/00001-of-01563.parquet": {"rows": 30, "bytes": 9000, "sha256": "b" * 64},
    },
    "sha256": "a" * 64,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[100, 1000, 4000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(
        "| shards | one manifest write (ms) | a stage's writes, rewrite per shard (s) | a stage's bookkeeping, "
        "journal (s) | read back with n journal lines (ms) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        rundir = RunDir(Path(tmp))
        for n in args.shards:
            manifest = {
                "stage": "inject",
                "fingerprint": "x",
                "status": "partial",
                "num_shards": n,
                "shards": {str(i): ENTRY for i in range(n)},
            }
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                rundir.write_manifest("inject", manifest)
            one = (time.perf_counter() - t0) / args.repeats
            # the runner now: the manifest at the start, a journal line per shard, the manifest at the end
            t0 = time.perf_counter()
            started = {**manifest, "shards": {}}
            rundir.write_manifest("inject", started)
            for i in range(n):
                rundir.record_shard("inject", started, i, ENTRY)
            t1 = time.perf_counter()
            assert len(rundir.read_manifest("inject")["shards"]) == n
            read = time.perf_counter() - t1
            rundir.write_manifest("inject", started)
            journal = time.perf_counter() - t0 - read
            print(f"| {n} | {one * 1000:.1f} | {one * n / 2:.1f} | {journal:.2f} | {read * 1000:.0f} |")


if __name__ == "__main__":
    main()
