"""A small build of pipelines/smollm2_cpu*.yaml on the real SmolLM2-135M-Instruct, and the checks every engine's
real-model build must pass (shared by tests/test_smollm2_vllm.py and tests/test_smollm2_transformers.py).

What a real model proves that a random one cannot: the critique format survives a real model's habits (at least
90% of its JSON critiques parse completely), and every stage turns real output into rows or reject rows with a
reason, with the funnel recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from amc.engine.store import read_records
from amc.records import Critique, FilterDecision, ReasoningPath, Reject

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("problems", "sample", "inject", "critique", "filter")


def build(pipeline: str, run_dir: Path, *overrides: str, timeout: float = 1500) -> dict[str, Any]:
    """Run ``amc build`` on a pipeline file from the repository root (its GSM8K path is relative to it), as a user
    would; return build.json. The build's log is printed when it fails."""
    cmd = [sys.executable, "-m", "amc.cli", "build", "--config", pipeline, "--set", f"run_dir={run_dir}"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"amc build failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads((run_dir / "build.json").read_text())


def manifest(run_dir: Path, stage: str) -> dict[str, Any]:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def rows(run_dir: Path, stage: str, part: str, kind: type) -> list[Any]:
    files = sorted((run_dir / stage / part).glob("*.parquet")) if (run_dir / stage / part).is_dir() else []
    return [r for f in files for r in read_records(f, kind)]


# The filter refines every critique in these builds (the verdict rule would drop most of a weak model's critiques
# before any refinement is asked for), so that the filter stage's requests run on real output too.
REFINE_EVERY_CRITIQUE = ("stages.filter.rules.verdict_matches=false",)


def check_every_stage(run_dir: Path) -> None:
    """Every stage is done and produced rows or rejects; every reject carries a reason; the funnel is recorded;
    every stage after ``problems`` asked the engine (a fresh build: nothing came from a cache) and wrote rows."""
    for stage in STAGES:
        m = manifest(run_dir, stage)
        assert m["status"] == "done", (stage, m["status"])
        assert m["rows"] + m["rejects"] + m.get("dropped", 0) > 0, f"{stage} produced nothing"
        if stage != "problems":
            assert m["requests"]["made"] > 0, f"{stage} made no engine request: {m['requests']}"
        if stage != "filter":
            assert m["rows"] > 0, f"{stage} wrote no row"
        rejects = rows(run_dir, stage, "rejects", Reject)
        assert len(rejects) == m["rejects"]
        assert all(r.reason for r in rejects), stage
        assert sum(m["rejects_by_reason"].values()) == m["rejects"]
    assert manifest(run_dir, "sample")["funnel"]["paths"] > 0
    assert rows(run_dir, "sample", "data", ReasoningPath)
    critique_funnel = manifest(run_dir, "critique")["funnel"]
    assert critique_funnel["outputs"] >= critique_funnel["paths"] > 0
    decisions = rows(run_dir, "filter", "data", FilterDecision) + rows(run_dir, "filter", "dropped", FilterDecision)
    critiques = rows(run_dir, "critique", "data", Critique)
    assert len(decisions) == len(critiques)
    assert all(d.kept or d.reason for d in decisions)  # every dropped critique says which rule dropped it


def parse_rate(run_dir: Path) -> tuple[float, dict[str, int]]:
    """Share of the annotator's outputs that parsed completely ("ok"), over every attempt, with the counts."""
    funnel = manifest(run_dir, "critique")["funnel"]
    counts = {k: int(funnel.get(k, 0)) for k in ("outputs", "parse_ok", "parse_partial", "parse_failed",
                                                  "parse_truncated")}  # fmt: skip
    return counts["parse_ok"] / max(1, counts["outputs"]), counts
