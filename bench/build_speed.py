"""Build speed on the sim engine: whole `amc build` runs of the quickstart at several sizes, trees side by side.

Each repeat runs every tree (a checkout of amc: this one, or an older commit unpacked with `git archive`) once per
size, in alternating order, each build in a fresh run directory, as its own process. Per build it records wall
seconds, CPU seconds (user + sys of the build and the worker processes it waited for, from ``wait4``), peak RSS,
the rows of each stage, and a digest of every Parquet file the build wrote (so trees that should agree are checked
to agree). ``--rerun`` times a second build of the finished run directory too (it should skip every stage and make
no engine call).

"Paths per second per core" is inject-stage rows (sampled plus flawed paths) over CPU seconds: on a shared
machine the wall clock measures the neighbours as much as amc, CPU time does not. Wall figures are printed too.

    nice -n 10 python bench/build_speed.py --problems 320 3200 --repeats 3 \\
        --tree before=/tmp/amc-before --tree after=. --json bench/build_speed.json

Unpack an older tree with ``mkdir /tmp/amc-before && git archive <commit> | tar -x -C /tmp/amc-before``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _digest(run_dir: Path) -> str:
    """One hash over every Parquet file of the run directory, by relative path (manifests hold timings)."""
    h = hashlib.sha256()
    for path in sorted(run_dir.rglob("*.parquet")):
        h.update(str(path.relative_to(run_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _rows(run_dir: Path) -> dict[str, int]:
    rows = {}
    for stage in ("problems", "sample", "inject", "critique", "filter"):
        manifest = run_dir / stage / "manifest.json"
        if manifest.is_file():
            rows[stage] = json.loads(manifest.read_text()).get("rows", 0)
    return rows


def _requests(run_dir: Path) -> dict[str, int]:
    build = run_dir / "build.json"
    return json.loads(build.read_text()).get("requests", {}) if build.is_file() else {}


def run_build(tree: Path, problems: int, run_dir: Path, extra: list[str], args: list[str] = ()) -> dict:
    """One `amc build` of the quickstart from ``tree`` as a child process; its wall, CPU, peak RSS and outputs."""
    cmd = [
        sys.executable,
        "-m",
        "amc.cli",
        "build",
        "--config",
        str(tree / "pipelines" / "quickstart.yaml"),
        "-q",
        "--set",
        f"source.count={problems}",
        "--set",
        f"run_dir={run_dir}",
    ]
    for item in extra:
        cmd += ["--set", item]
    cmd += list(args)
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    # cwd: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}) in {tree}:\n{err[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "rows": _rows(run_dir),
        "requests": _requests(run_dir),
        "digest": _digest(run_dir),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, nargs="+", default=[320, 3200])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tree", action="append", default=[], help="label=path of an amc checkout (repeatable)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for every build")
    ap.add_argument(
        "--arg",
        dest="args",
        action="append",
        default=[],
        help="extra `amc build` argument, e.g. --arg=--workers --arg=2",
    )
    ap.add_argument("--rerun", action="store_true", help="also time a second build of the finished run directory")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    args = ap.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree] or [("here", Path("."))]
    work = Path(tempfile.mkdtemp(prefix="amc-build-speed-"))
    results: list[dict] = []
    try:
        for rep in range(args.repeats):
            for n in args.problems:
                order = trees if rep % 2 == 0 else trees[::-1]
                for label, tree in order:
                    run_dir = work / f"{label}-{n}-{rep}"
                    res = run_build(tree, n, run_dir, args.sets, args.args)
                    res.update(tree=label, problems=n, repeat=rep)
                    if args.rerun:
                        again = run_build(tree, n, run_dir, args.sets, args.args)
                        res["rerun"] = {k: again[k] for k in ("wall_s", "cpu_s", "requests", "digest")}
                    results.append(res)
                    print(json.dumps({k: v for k, v in res.items() if k != "rows"}), flush=True)
                    if args.json:  # after every build: a long benchmark cut short keeps what it measured
                        args.json.write_text(json.dumps(results, indent=1))
                    shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(summary(results))


def summary(results: list[dict]) -> str:
    """A Markdown table of medians per (tree, problems)."""
    lines = [
        "| tree | problems | inject rows | builds | wall s | CPU s | paths/CPU-s | peak RSS MB | same data |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["tree"], r["problems"]), []).append(r)
    digests = {n: {r["digest"] for r in results if r["problems"] == n} for _, n in groups}
    for (label, n), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        inject = rs[0]["rows"].get("inject", 0)
        wall = statistics.median(r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        rss = statistics.median(r["peak_rss_mb"] for r in rs)
        same = "yes" if len(digests[n]) == 1 else f"no ({len(digests[n])} digests)"
        lines.append(
            f"| {label} | {n} | {inject} | {len(rs)} | {wall:.1f} | {cpu:.1f} | {inject / cpu:.0f} | "
            f"{rss:.0f} | {same} |"
        )
        if "rerun" in rs[0]:
            rw = statistics.median(r["rerun"]["wall_s"] for r in rs)
            made = max(r["rerun"]["requests"].get("made", 0) for r in rs)
            lines.append(
                f"| {label} rerun | {n} | | {len(rs)} | {rw:.2f} ({rw / wall:.1%}) | | | | engine calls: {made} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
