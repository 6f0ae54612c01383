"""The five stages, in order: problems -> sample -> inject -> critique -> filter."""

from __future__ import annotations

from amc.stages.base import Stage, StageContext, StageResult, derive_seed
from amc.stages.critique import CritiqueStage
from amc.stages.filter import FilterStage
from amc.stages.inject import InjectStage
from amc.stages.problems import ProblemsStage
from amc.stages.sample import SampleStage

STAGE_ORDER: tuple[Stage, ...] = (ProblemsStage(), SampleStage(), InjectStage(), CritiqueStage(), FilterStage())
STAGES: dict[str, Stage] = {s.name: s for s in STAGE_ORDER}

__all__ = ["STAGES", "STAGE_ORDER", "Stage", "StageContext", "StageResult", "derive_seed"]
