"""The build plan: which stages, in what order, with what fingerprints. Pure functions of the config.

Nothing here reads or writes a run directory or starts an engine: ``amc build``, ``amc status`` and the exporter
all ask the plan what a stage's output should be (its fingerprint) and :mod:`amc.engine.rundir` what is on disk.
A stage's fingerprint hashes its config slice, its input stage's fingerprint, its templates (label and text),
its version, the code version and whatever else the stage declares (:meth:`Stage.fingerprint_extra`), so a
change anywhere upstream makes every later stage stale, like make.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from amc import __version__
from amc.config import PipelineConfig
from amc.prompts import load_template
from amc.stages import STAGE_NAMES, STAGE_ORDER, Stage, get_stage


def stages_until(until: str) -> list[Stage]:
    """The stages to build for ``amc build --stage UNTIL``: every stage up to and including it.

    >>> [s.name for s in stages_until("inject")]
    ['problems', 'sample', 'inject']
    """
    get_stage(until)  # a clear error for an unknown name
    return list(STAGE_ORDER[: STAGE_NAMES.index(until) + 1])


def source_stage() -> Stage:
    """The stage that reads no other stage: it loads (and validates) the problems before any engine starts."""
    return next(s for s in STAGE_ORDER if s.input_stage is None)


def output_model(stage_name: str) -> Any:
    """The record class a stage writes to its ``data`` folder."""
    return get_stage(stage_name).output


def template_refs(stage: Stage, cfg: PipelineConfig) -> list[str]:
    """``name@version#digest`` of each template a stage renders: its version label and its actual text."""
    refs = []
    for name in stage.templates(cfg):
        t = load_template(name, cfg.prompts_dir)
        refs.append(f"{t.ref}#{t.digest}")
    return refs


def stage_fingerprint(stage: Stage, cfg: PipelineConfig, input_fp: str | None) -> str:
    """Hash of what a stage's output depends on: its config slice, its input, its templates and code version."""
    payload: dict[str, Any] = {
        "stage": stage.name,
        "stage_version": stage.version,
        "code_version": __version__,
        "config": stage.config_slice(cfg),
        "input": input_fp,
        "templates": template_refs(stage, cfg),
        **stage.fingerprint_extra(cfg),
    }
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expected_fingerprints(cfg: PipelineConfig) -> dict[str, str]:
    """Every stage's fingerprint under ``cfg``, in stage order."""
    fps: dict[str, str] = {}
    prev = None
    for stage in STAGE_ORDER:
        prev = fps[stage.name] = stage_fingerprint(stage, cfg, prev)
    return fps


@dataclass(frozen=True)
class PlannedStage:
    """One step of a build: the stage and the fingerprint its output must carry."""

    stage: Stage
    fingerprint: str


def plan(cfg: PipelineConfig, until: str = "filter") -> list[PlannedStage]:
    """The stages ``amc build --stage UNTIL`` visits, each with its expected fingerprint."""
    fps = expected_fingerprints(cfg)
    return [PlannedStage(s, fps[s.name]) for s in stages_until(until)]


def is_stale(manifest: dict[str, Any] | None, fingerprint: str, input_data: str | None) -> bool:
    """Whether a stage's manifest was written under another config or from other input data (then the stage is
    rebuilt from scratch). A missing manifest is not stale: there is nothing to throw away."""
    if manifest is None:
        return False
    return manifest.get("fingerprint") != fingerprint or manifest.get("input_data") != input_data


def shards_to_run(manifest: dict[str, Any], redo: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Shard indices a (partial) stage still has to build: those its manifest does not list, plus ``redo``.

    >>> shards_to_run({"num_shards": 4, "shards": {"0": {}, "2": {}}}, {2})
    [1, 2, 3]
    """
    listed = manifest.get("shards", {})
    return [i for i in range(manifest["num_shards"]) if str(i) not in listed or i in redo]
