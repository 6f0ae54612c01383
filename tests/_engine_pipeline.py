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

ALL_HINTS = {
    "reference_answer": True,
    "reference_solution": True,
    "error_location": True,
    "verifier_feedback": True,
    "stop_at_first_error": True,
}
ALL_RULES = {"verdict_matches": True, "error_step_matches": True, "shortcut_guard": True, "deduplicate": True}


def engine_pipeline(
    model: dict[str, Any], run_dir: Path, critique_format: str = "json", all_on: bool = False
) -> PipelineConfig:
    """The pipeline for one engine; ``all_on`` switches on every hint, every filter rule and step labels."""
    cfg = config_from_dict(
        {
            "name": "engine-check",
            "run_dir": str(run_dir),
            "shard_size": 4,
            "source": {"kind": "synthetic", "count": 4, "min_steps": 2, "max_steps": 3},
            "models": {"actor": model, "annotator": model},
            "stages": {
                "sample": {"n": 2, "reference": True, "sampling": {"temperature": 1.0, "max_tokens": 48}},
                "inject": {
                    "per_problem": 1,
                    "sampling": {"max_tokens": 48},
                    "resample": {"enabled": True, "per_problem": 1, "sampling": {"max_tokens": 48}},
                    "symbolic": {"enabled": True, "per_problem": 1},
                },
                "critique": {
                    "n": 2,
                    "format": critique_format,
                    "max_parse_retries": 1,
                    "sampling": {"temperature": 1.0, "max_tokens": 400},
                },
                "filter": {
                    "n": 2,
                    "k": 1,
                    "sampling": {"temperature": 1.0, "max_tokens": 48},
                    "rules": {"verdict_matches": False},
                },
            },
        }
    )
    if all_on:
        cfg = config_from_dict(
            {
                **cfg.model_dump(),
                "stages": {
                    **cfg.stages.model_dump(),
                    "critique": {**cfg.stages.critique.model_dump(), "hints": ALL_HINTS, "include_correct_paths": 0.5},
                    "filter": {
                        **cfg.stages.filter.model_dump(),
                        "rules": ALL_RULES,
                        "step_labels": {"enabled": True, "rollouts": 2, "sampling": {"max_tokens": 32}},
                    },
                },
            }
        )
    return cfg


def rows(run_dir: Path, stage: str, sub: str, model: Any) -> list[Any]:
    return [r for f in sorted((run_dir / stage / sub).glob("*.parquet")) for r in read_records(f, model)]


def build_and_check(cfg: PipelineConfig) -> dict[str, Any]:
    """Build to the filter and check the plumbing; returns what was built, for engine-specific checks."""
    Runner(cfg, show_progress=False).build("filter")
    run = cfg.run_path
    manifests = {
        s: json.loads((run / s / "manifest.json").read_text())
        for s in ("problems", "sample", "inject", "critique", "filter")
    }
    assert all(m["status"] == "done" for m in manifests.values())
    paths = rows(run, "inject", "data", ReasoningPath)
    strategies = {p.strategy for p in paths}
    assert {"reference", "symbolic"} <= strategies, strategies
    assert manifests["sample"]["requests"]["made"] > 0  # the engine really answered
    critiques = rows(run, "critique", "data", Critique)
    # every flawed path is critiqued (and a share of the correct ones); each critique is a row or a reject
    flawed = [p for p in paths if not p.correct or (p.error_step is not None and p.error_step >= 0)]
    critiqued = manifests["critique"]["funnel"]["paths"]
    share = cfg.stages.critique.include_correct_paths
    assert critiqued == len(flawed) if share == 0 else len(flawed) <= critiqued <= len(paths)
    assert len(critiques) + manifests["critique"]["rejects"] == cfg.stages.critique.n * critiqued
    decisions = rows(run, "filter", "data", FilterDecision) + rows(run, "filter", "dropped", FilterDecision)
    assert len(decisions) + manifests["filter"]["rejects"] == len(critiques)
    return {"paths": paths, "critiques": critiques, "decisions": decisions, "manifests": manifests}
