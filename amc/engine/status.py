"""What ``amc status`` shows: each stage done, partial, stale, damaged, incomplete or missing, with its counts.

Every manifest is read through :class:`amc.engine.rundir.RunDir`, the one owner of the run directory's layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amc.config import PipelineConfig
from amc.engine.rundir import RunDir, data_hash, retryable_rejects, stage_totals
from amc.engine.runner import expected_fingerprints


def run_status(cfg: PipelineConfig, verify: bool = False) -> dict[str, Any]:
    """A JSON-ready summary of a run directory, e.g. ``run_status(cfg)["stages"]["filter"]["state"]``.

    Shard files are checked against their manifest entries: sizes always, sha256 with ``verify``. A stage is
    ``stale`` when its config changed or its input stage's data changed since it was built (content chaining).
    """
    rundir = RunDir(cfg.run_path)
    expected = expected_fingerprints(cfg)
    stages: dict[str, Any] = {}
    input_data: str | None = None
    for name, fp in expected.items():
        state, m, damaged = rundir.stage_state(name, fp, input_data, full=verify)
        # a damaged stage is rebuilt from the cache to the content its manifest records
        input_data = data_hash(m) if m is not None and state in ("done", "damaged") else "unknown"
        if m is None:
            stages[name] = {"state": "missing"}
            continue
        shards = m.get("shards", {})
        # a stage's totals are written when it ends; until then they are the sums of its finished shards
        totals = m if m.get("status") == "done" else stage_totals(m)
        stages[name] = {
            "state": state,
            "shards": f"{len(shards)}/{m.get('num_shards', 0)}",
            "rows": m.get("rows", totals.get("rows", 0)),
            "rejects": totals.get("rejects", 0),
            "dropped": totals.get("dropped", 0),
            "funnel": m.get("funnel", {}),
            "rejects_by_reason": totals.get("rejects_by_reason", {}),
            "requests": m.get("requests", {}),
        }
        if damaged:
            stages[name]["damaged"] = {str(k): v for k, v in sorted(damaged.items())}
        if state == "incomplete":
            stages[name]["retryable"] = retryable_rejects(m)
    return {
        "name": cfg.name,
        "run_dir": str(rundir.path),
        "building": rundir.building(),
        "stages": stages,
        "last_build": rundir.read_build(),
    }


def build_running(run_dir: Path) -> bool:
    """True while a build holds the run directory's lock (see :meth:`amc.engine.rundir.RunDir.lock`)."""
    return RunDir(run_dir).building()
