"""The one registry of stages, in order: problems -> sample -> inject -> critique -> filter.

Everything that needs the stages or their names (the plan, the executors, ``amc status``, ``amc clean``, the
exporter, the viewer) reads them here. Each stage declares what it reads (``input_stage``), writes (``output``,
``dropped_output``, ``extra_outputs``) and needs (:meth:`Stage.resources`), so the run engine has no branch on a
stage's name.
"""

from __future__ import annotations

from amc.stages.base import Stage, StageContext, StageResult, derive_seed
from amc.stages.critique import CritiqueStage
from amc.stages.filter import FilterStage
from amc.stages.inject import InjectStage
from amc.stages.problems import ProblemsStage
from amc.stages.resources import StageResources
from amc.stages.sample import SampleStage

STAGE_ORDER: tuple[Stage, ...] = (ProblemsStage(), SampleStage(), InjectStage(), CritiqueStage(), FilterStage())
STAGES: dict[str, Stage] = {s.name: s for s in STAGE_ORDER}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)


def get_stage(name: str) -> Stage:
    """The stage called ``name``; a ValueError names the stages there are.

    >>> get_stage("critique").input_stage
    'inject'
    """
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage '{name}'; stages are {', '.join(STAGE_NAMES)}") from None


__all__ = [
    "STAGES",
    "STAGE_NAMES",
    "STAGE_ORDER",
    "Stage",
    "StageContext",
    "StageResources",
    "StageResult",
    "derive_seed",
    "get_stage",
]
