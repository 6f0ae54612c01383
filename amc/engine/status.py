"""What ``amc status`` shows: each stage done, partial, stale or missing, with its counts and funnel."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

from amc.config import PipelineConfig
from amc.engine.runner import expected_fingerprints, read_manifest


def run_status(cfg: PipelineConfig) -> dict[str, Any]:
    """A JSON-ready summary of a run directory, e.g. ``run_status(cfg)["stages"]["filter"]["state"]``."""
    run_dir = cfg.run_path
    expected = expected_fingerprints(cfg)
    stages: dict[str, Any] = {}
    for name, fp in expected.items():
        m = read_manifest(run_dir / name)
        if m is None:
            stages[name] = {"state": "missing"}
            continue
        if m["fingerprint"] != fp:
            state = "stale"
        elif m["status"] != "done":
            state = "partial"
        else:
            state = "done"
        shards_done = len(m.get("shards", {}))
        stages[name] = {
            "state": state,
            "shards": f"{shards_done}/{m.get('num_shards', 0)}",
            "rows": m.get("rows", sum(s["rows"] for s in m.get("shards", {}).values())),
            "rejects": m.get("rejects", 0),
            "dropped": m.get("dropped", 0),
            "funnel": m.get("funnel", {}),
            "rejects_by_reason": m.get("rejects_by_reason", {}),
            "requests": m.get("requests", {}),
        }
    build_file = run_dir / "build.json"
    last_build = json.loads(build_file.read_text()) if build_file.is_file() else None
    return {
        "name": cfg.name,
        "run_dir": str(run_dir),
        "building": build_running(run_dir),
        "stages": stages,
        "last_build": last_build,
    }


def build_running(run_dir: Path) -> bool:
    """True while a build holds the run directory's lock (see :func:`amc.engine.runner.Runner.build`)."""
    lock = run_dir / ".lock"
    if not lock.is_file():
        return False
    with open(lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
