"""Scaling of one large sim build: CPU time per stage as it goes, peak RSS, and a rerun of the finished build.

Runs one `amc build` of the quickstart (``--problems`` problems, 4 sampled paths each) as a child process under
``/usr/bin/time -v`` and samples it every ``--every`` seconds: the CPU seconds of the build and its children
(from ``/proc``), its peak RSS so far (``VmHWM``) and the shards each stage has recorded (its manifest with its
journal). Each sample is a JSON line in ``--log``, so a run cut short still says how far it got and at what cost
per shard; a finished run prints per-stage CPU seconds per 1,000 rows (the linearity check: the same figure at
every size) and, with ``--rerun``, the cost and engine calls of building the finished run directory again.

    nice -n 19 python bench/build_scale.py --problems 25000 --rerun --log /tmp/scale-100k.jsonl

"paths" are inject-stage rows, as in ``bench/build_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # read manifests with this tree's amc

STAGES = ("problems", "sample", "inject", "critique", "filter")
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its waited-for children, and its live children (the grading pool)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        me, parent = int(stat.parent.name), int(fields[1])
        if me == pid:
            total += sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
        elif parent == pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _hwm_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def _progress(run_dir: Path) -> dict[str, list[int]]:
    """Per stage: [shards recorded, of shards, rows recorded]."""
    from amc.engine.rundir import ManifestError, RunDir

    rd, out = RunDir(run_dir), {}
    for stage in STAGES:
        try:
            m = rd.read_manifest(stage)
        except ManifestError:
            continue
        if m is not None:
            out[stage] = [len(m["shards"]), m["num_shards"], sum(s.get("rows", 0) for s in m["shards"].values())]
    return out


def build(problems: int, run_dir: Path, every: float, log: Path | None, label: str) -> dict:
    root = Path(__file__).resolve().parents[1]
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "amc.cli",
        "build",
        "--config",
        str(root / "pipelines" / "quickstart.yaml"),
        "-q",
        "--set",
        f"source.count={problems}",
        "--set",
        f"run_dir={run_dir}",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    build_pid = None
    samples = []
    while proc.poll() is None:
        time.sleep(every)
        if build_pid is None:  # the python under /usr/bin/time
            kids = [p for p in Path("/proc").glob("[0-9]*/stat") if _ppid(p) == proc.pid]
            build_pid = int(kids[0].parent.name) if kids else None
        if build_pid is None:
            continue
        sample = {
            "label": label,
            "t": round(time.perf_counter() - t0, 1),
            "cpu_s": round(_cpu(build_pid), 1),
            "hwm_mb": _hwm_mb(build_pid),
            "stages": _progress(run_dir),
        }
        samples.append(sample)
        if log:
            with open(log, "a") as fh:
                fh.write(json.dumps(sample) + "\n")
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{err[-3000:]}")
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", err).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", err).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) / 1024
    return {"wall_s": wall, "cpu_s": user + system, "peak_rss_mb": rss, "samples": samples}


def _ppid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def per_stage(samples: list[dict]) -> dict[str, float]:
    """CPU seconds per stage, from the samples: each interval's CPU goes to the last stage with a manifest at its
    end (the one being built; start-up goes to the first)."""
    out: dict[str, float] = {}
    prev = 0.0
    for s in samples:
        stage = next((st for st in reversed(STAGES) if st in s["stages"]), STAGES[0])
        cpu = max(prev, s["cpu_s"])  # a pool worker counted live, then gone before it was reaped: never negative
        out[stage] = out.get(stage, 0.0) + cpu - prev
        prev = cpu
    return {k: round(v, 1) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, required=True)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--log", type=Path, help="append every sample here (JSON lines)")
    ap.add_argument("--rerun", action="store_true", help="build the finished run directory again")
    ap.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder, removed)")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amc-build-scale-"))
    run_dir = args.keep or work / "run"
    try:
        first = build(args.problems, run_dir, args.every, args.log, f"build-{args.problems}")
        build_json = json.loads((run_dir / "build.json").read_text())
        rows = {s["name"]: s["rows"] for s in build_json["stages"]}
        result = {
            "problems": args.problems,
            "sampled_paths": rows.get("sample"),
            "inject_rows": rows.get("inject"),
            "wall_s": round(first["wall_s"], 1),
            "cpu_s": round(first["cpu_s"], 1),
            "paths_per_cpu_s": round(rows.get("inject", 0) / first["cpu_s"], 1),
            "peak_rss_mb": round(first["peak_rss_mb"]),
            "stage_cpu_s": per_stage(first["samples"]),
            "stage_wall_s": {s["name"]: s["seconds"] for s in build_json["stages"]},
            "rows": rows,
        }
        if args.rerun:
            again = build(args.problems, run_dir, 1.0, None, f"rerun-{args.problems}")
            made = json.loads((run_dir / "build.json").read_text())["requests"]
            result["rerun"] = {
                "wall_s": round(again["wall_s"], 2),
                "cpu_s": round(again["cpu_s"], 2),
                "wall_share": round(again["wall_s"] / first["wall_s"], 5),
                "cpu_share": round(again["cpu_s"] / first["cpu_s"], 5),
                "requests": made,
                "actions": [s["action"] for s in json.loads((run_dir / "build.json").read_text())["stages"]],
            }
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
