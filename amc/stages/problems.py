"""Stage ``problems``: load and validate every problem before any engine starts."""

from __future__ import annotations

from typing import Any

from amc.config import PipelineConfig
from amc.records import Problem
from amc.stages.base import Stage, StageContext, StageResult


class ProblemsStage(Stage):
    name = "problems"
    output = Problem

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"source": cfg.source.model_dump(), "seed": cfg.seed}

    def load(self, cfg: PipelineConfig) -> list[Problem]:
        """All problems of the source; raises :class:`~amc.errors.InputError` on the first bad row."""
        from amc.sources import load_problems

        return load_problems(cfg.source, seed=cfg.seed)

    def run(self, rows: list[Problem], ctx: StageContext) -> StageResult:
        return StageResult(rows=list(rows))
