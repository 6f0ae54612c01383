"""Resume after SIGKILL: how much work a killed build repeats, and whether the resumed dataset is the same.

A quickstart build (sim engine) runs as a child process; once the manifest of ``--stage`` lists ``--after``
finished shards, the child gets SIGKILL (no clean-up of any kind). The same command then resumes it. Measured:

- the finished shards the killed build recorded: their files are untouched by the resume (sha256 and mtime);
- the shards the resume builds: exactly those the killed build had not recorded (of which only the one in flight
  at the kill had been started, one per worker), and the answers of that shard it finds in the cache (the cache
  commits every 256 requests, so a shard killed sooner is asked again);
- the resumed dataset against an uninterrupted build of the same config: every Parquet file byte for byte.

    nice -n 10 python bench/resume_after_kill.py --problems 320 --stage critique --after 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cmd(problems: int, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "amc.cli",
        "build",
        "--config",
        str(ROOT / "pipelines" / "quickstart.yaml"),
        "-q",
        "--set",
        f"source.count={problems}",
        "--set",
        f"run_dir={run_dir}",
    ]


def _files(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*.parquet"))
    }


def _listed(run_dir: Path, stage: str) -> dict[str, dict]:
    """The shards a stage has recorded: its manifest with its journal (finished shards are journal lines)."""
    from amc.engine.rundir import RunDir

    return (RunDir(run_dir).read_manifest(stage) or {}).get("shards", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=320)
    ap.add_argument("--stage", default="critique")
    ap.add_argument("--after", type=int, default=5, help="kill once the stage lists this many shards")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amc-resume-"))
    killed_dir, clean_dir = work / "killed", work / "clean"
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    proc = subprocess.Popen(_cmd(args.problems, killed_dir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    while proc.poll() is None and len(_listed(killed_dir, args.stage)) < args.after:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise SystemExit("the build finished before it could be killed: raise --problems or lower --after")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = _listed(killed_dir, args.stage)
    stage_dir = killed_dir / args.stage
    before = {
        rel: (hashlib.sha256((stage_dir / rel).read_bytes()).hexdigest(), (stage_dir / rel).stat().st_mtime_ns)
        for shard in listed.values()
        for rel in shard.get("files", {})
    }

    t0 = time.perf_counter()
    subprocess.run(_cmd(args.problems, killed_dir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
    resume_s = time.perf_counter() - t0
    after = {
        rel: (hashlib.sha256((stage_dir / rel).read_bytes()).hexdigest(), (stage_dir / rel).stat().st_mtime_ns)
        for rel in before
    }
    build = json.loads((killed_dir / "build.json").read_text())
    report = next(s for s in build["stages"] if s["name"] == args.stage)
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    subprocess.run(_cmd(args.problems, clean_dir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
    # the most requests one shard of the stage needs: from an uninterrupted build's per-shard counts
    per_shard = _per_shard_requests(clean_dir, args.stage)

    result = {
        "problems": args.problems,
        "stage": args.stage,
        "num_shards": manifest["num_shards"],
        "shards_listed_at_kill": len(listed),
        "listed_files_untouched": before == after,
        "resume_action": report["action"],
        "resume_made": report["made"],
        "resume_cached": report["cached"],
        # the resume builds exactly the shards the killed build had not recorded; of those, only the one in flight
        # at the kill (one per worker) had been started: that is the work repeated
        "shards_built_by_resume": manifest["num_shards"] - len(listed),
        "max_requests_per_shard": per_shard,
        "answers_reused_from_killed_build": report["cached"],
        "same_dataset_as_uninterrupted": _files(killed_dir) == _files(clean_dir),
        "resume_s": round(resume_s, 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def _per_shard_requests(run_dir: Path, stage: str) -> int:
    """Requests of the busiest shard of ``stage`` (an estimate: the manifest counts requests per stage, not per
    shard, so the stage's requests are shared out by each shard's rows, rejects and drops)."""
    manifest = json.loads((run_dir / stage / "manifest.json").read_text())
    total = manifest["requests"]["made"] + manifest["requests"]["cached"]
    rows = [s["rows"] + s["rejects"] + s["dropped"] for s in manifest["shards"].values()]
    return max(1, round(total * max(rows) / max(1, sum(rows))))


if __name__ == "__main__":
    main()
