"""How responsive `amc view` is on a 100k-row run: index build, overview, pages of the rows table, a row page.

Builds the quickstart (sim engine) once, then writes a run directory whose `critique` and `filter` stages hold
ROWS rows each (the quickstart's rows repeated under new ids, in shards of SHARD rows, kept and dropped in the
quickstart's proportion), opens it with the viewer and times HTTP requests against it (median of REPEATS).

    nice -n 10 python bench/view_100k.py            # results: bench/RESULTS_view.md
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amc.config import load_config
from amc.engine.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
SHARD = 2_000
REPEATS = 5


def _grow(src_files: list[Path], out: Path, rows: int, id_column: str) -> int:
    """Write `rows` rows copied from `src_files` under fresh ids into shards under `out`."""
    table = pa.concat_tables([pq.read_table(f) for f in src_files])
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    shard = 0
    while written < rows:
        n = min(SHARD, rows - written)
        idx = pa.array([(written + i) % table.num_rows for i in range(n)])
        part = table.take(idx)
        ids = pc.binary_join_element_wise(part.column(id_column), pa.array([f"x{written + i}" for i in range(n)]), "~")
        part = part.set_column(part.schema.get_field_index(id_column), id_column, ids)
        pq.write_table(part, out / f"shard-{shard:05d}.parquet", compression="zstd")
        written += n
        shard += 1
    return written


def build_big_run(tmp: Path) -> Path:
    cfg = load_config(ROOT / "pipelines" / "quickstart.yaml", [f"run_dir={tmp}/small"])
    Runner(cfg, show_progress=False).build("filter")
    small, big = cfg.run_path, tmp / "big"
    kept = sorted((small / "filter" / "data").glob("*.parquet"))
    dropped = sorted((small / "filter" / "dropped").glob("*.parquet"))
    n_kept = sum(pq.read_metadata(f).num_rows for f in kept)
    n_dropped = sum(pq.read_metadata(f).num_rows for f in dropped)
    rows_kept = ROWS * n_kept // (n_kept + n_dropped)
    _grow(kept, big / "filter" / "data", rows_kept, "id")
    _grow(dropped, big / "filter" / "dropped", ROWS - rows_kept, "id")
    _grow(sorted((small / "critique" / "data").glob("*.parquet")), big / "critique" / "data", ROWS, "id")
    for stage, rows, dropped_rows in (("critique", ROWS, 0), ("filter", rows_kept, ROWS - rows_kept)):
        manifest = json.loads((small / stage / "manifest.json").read_text())
        manifest.update(rows=rows, dropped=dropped_rows, shards={})
        (big / stage / "manifest.json").write_text(json.dumps(manifest))
    return big


def _time(url: str) -> float:
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as resp:
            resp.read()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    from amc.view import ViewSource, start

    with tempfile.TemporaryDirectory() as tmp:
        big = build_big_run(Path(tmp))
        t = time.perf_counter()
        src = ViewSource(big)
        index_s = time.perf_counter() - t
        server, _ = start(src)
        u = server.url
        t = time.perf_counter()
        urllib.request.urlopen(u, timeout=600).read()
        first_overview = time.perf_counter() - t
        some_id = src.entry(src.index.num_rows // 2)
        results = {
            "index build (open the run)": index_s,
            "first overview (draws the plots)": first_overview,
            "overview again": _time(u),
            "rows, first page (50)": _time(u + "rows"),
            "rows, last page": _time(u + f"rows?offset={src.index.num_rows - 10}"),
            "rows, filter stage=filter status=dropped": _time(u + "rows?stage=filter&status=dropped"),
            "rows, filter + text search (new query each time)": statistics.median(
                _time_once(u + "rows?" + urllib.parse.urlencode({"stage": "filter", "q": f"pencils{i}"}))
                for i in range(REPEATS)
            ),
            "one row page": _time(u + "row?" + urllib.parse.urlencode({"id": some_id["id"], "stage": "filter"})),
        }
        server.shutdown()
    print(f"# amc view on a {src.index.num_rows:,}-row index ({ROWS:,} critiques + {ROWS:,} filter decisions)")
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"index {src.index.nbytes / 2**20:.1f} MiB in memory"
    )
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1000:.0f} ms |")


def _time_once(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as resp:
        resp.read()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
