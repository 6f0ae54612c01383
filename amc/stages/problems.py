"""Stage ``problems``: load and validate every problem before any engine starts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from amc.config import FileSource, PipelineConfig
from amc.records import Problem
from amc.stages.base import Stage, StageContext, StageResult


class ProblemsStage(Stage):
    name = "problems"
    output = Problem

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        # shard_size is here because shards are the unit of per-shard work downstream (balance), so it is content
        return {"source": [src.model_dump() for src in cfg.sources], "seed": cfg.seed, "shard_size": cfg.shard_size}

    def fingerprint_extra(self, cfg: PipelineConfig) -> dict[str, Any]:
        # Hashes of local source files, so that editing a file makes the problems stage stale.
        return {
            "source_content": [
                hashlib.sha256(Path(src.path).read_bytes()).hexdigest()
                if isinstance(src, FileSource) and Path(src.path).is_file()
                else None
                for src in cfg.sources
            ]
        }

    def load(self, cfg: PipelineConfig) -> list[Problem]:
        """All problems of every source, in order; raises :class:`~amc.errors.InputError` on the first bad row or
        on an id that two sources share."""
        from amc.errors import InputError
        from amc.sources import load_problems

        problems: list[Problem] = []
        origin: dict[str, int] = {}
        for i, src in enumerate(cfg.sources):
            for p in load_problems(src, seed=cfg.seed):
                if p.id in origin and origin[p.id] != i:
                    raise InputError(
                        f"source[{i}] ({p.source})",
                        p.id,
                        "id",
                        f"id '{p.id}' is also used by source[{origin[p.id]}]; map distinct ids",
                    )
                origin[p.id] = i
                problems.append(p)
        return problems

    def run(self, rows: list[Problem], ctx: StageContext) -> StageResult:
        return StageResult(rows=list(rows))
