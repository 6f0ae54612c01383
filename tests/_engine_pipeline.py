"""A small pipeline with every strategy for real engines on a tiny random model (shared by the engine tests).

A random tiny model writes noise, so what these builds prove is the plumbing: every stage runs on the engine and
ends `done`, every path, critique and decision is a row or a reject with its reason, and rows have the same kinds
as the sim quickstart's. Reference solutions are passed on as correct paths (the model never solves anything),
so resampling, typed and symbolic injection have something to start from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amc.config import PipelineConfig, config_from_dict
from amc.engine.runner import Runner
from amc.engine.store import read_records
from amc.records import Critique, FilterDecision, ReasoningPath


def engine_pipeline(model: dict[str, Any], run_dir: Path, critique_format: str = "json") -> PipelineConfig:
    return config_from_dict({
        "name": "engine-check",
        "run_dir": str(run_dir),
        "shard_size": 4,
        "source": {"kind": "synthetic", "count": 4, "min_steps": 2, "max_steps": 3},
        "models": {"actor": model, "annotator": model},
        "stages": {
            "sample": {"n": 2, "reference": True, "sampling": {"temperature": 1.0, "max_tokens": 48}},
            "inject": {"per_problem": 1, "sampling": {"max_tokens": 48},
                       "resample": {"enabled": True, "per_problem": 1, "sampling": {"max_tokens": 48}},
                       "symbolic": {"enabled": True, "per_problem": 1}},
            "critique": {"n": 2, "format": critique_format, "max_parse_retries": 1,
                         "sampling": {"temperature": 1.0, "max_tokens": 400}},
            "filter": {"n": 2, "k": 1, "sampling": {"temperature": 1.0, "max_tokens": 48},
                       "rules": {"verdict_matches": False}},
        },
    })


def rows(run_dir: Path, stage: str, sub: str, model: Any) -> list[Any]:
    return [r for f in sorted((run_dir / stage / sub).glob("*.parquet")) for r in read_records(f, model)]


def build_and_check(cfg: PipelineConfig) -> dict[str, Any]:
    """Build to the filter and check the plumbing; returns what was built, for engine-specific checks."""
    Runner(cfg, show_progress=False).build("filter")
    run = cfg.run_path
    manifests = {s: json.loads((run / s / "manifest.json").read_text())
                 for s in ("problems", "sample", "inject", "critique", "filter")}
    assert all(m["status"] == "done" for m in manifests.values())
    paths = rows(run, "inject", "data", ReasoningPath)
    strategies = {p.strategy for p in paths}
    assert {"reference", "symbolic"} <= strategies, strategies
    assert manifests["sample"]["requests"]["made"] > 0  # the engine really answered
    critiques = rows(run, "critique", "data", Critique)
    # every critiqued path is a critique or a reject, never lost
    flawed = [p for p in paths if not p.correct or (p.error_step is not None and p.error_step >= 0)]
    critique_rejects = manifests["critique"]["rejects"]
    assert len(critiques) + critique_rejects == 2 * len(flawed)
    decisions = rows(run, "filter", "data", FilterDecision) + rows(run, "filter", "dropped", FilterDecision)
    assert len(decisions) + manifests["filter"]["rejects"] == len(critiques)
    return {"paths": paths, "critiques": critiques, "decisions": decisions, "manifests": manifests}
