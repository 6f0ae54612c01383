"""What a stage is: a function from a list of records to a list of records, plus what it could not produce.

A stage knows neither the command line nor the run engine. The runner hands it a :class:`StageContext` (the
pipeline config, cache-wrapped engines by role, seeds) and writes what it returns. Stages never raise for one
bad row: they return it as a :class:`~amc.records.Reject` with a reason.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from amc.backends.base import GenerationRequest, GenerationResponse
from amc.config import ModelConfig, PipelineConfig
from amc.prompts import Template, load_template
from amc.records import Problem, Record, Reject
from amc.stages.resources import StageResources


def derive_seed(run_seed: int, *parts: object) -> int:
    """A 31-bit seed from the run seed and an address such as (row id, purpose, sample index)."""
    text = "\x1f".join(str(p) for p in (run_seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


class Generator(Protocol):
    """What a stage sees of an engine: ``generate`` (cache-wrapped by the runner) and the model's name."""

    engine: str
    model: str
    revision: str | None

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]: ...


@dataclass
class StageContext:
    cfg: PipelineConfig
    get_backend: Callable[[Any], Generator]
    problems: dict[str, Problem] = field(default_factory=dict)
    _templates: dict[str, Template] = field(default_factory=dict, repr=False, compare=False)

    def backend(self, role: str | ModelConfig) -> Generator:
        """The cache-wrapped engine of a role ('actor', 'injector', 'annotator') or of an explicit model block."""
        return self.get_backend(role)

    def seed(self, *parts: object) -> int:
        return derive_seed(self.cfg.seed, *parts)

    def template(self, name: str) -> Template:
        # read once per context (a shard), not once per request
        if (found := self._templates.get(name)) is None:
            found = self._templates[name] = load_template(name, self.cfg.prompts_dir)
        return found


@dataclass
class StageResult:
    rows: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    dropped: list[Record] = field(default_factory=list)
    extra: dict[str, list[Record]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)


class Stage:
    """Base of the five stages. Subclasses set the class attributes and implement ``config_slice`` and ``run``."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    input_stage: ClassVar[str | None] = None
    output: ClassVar[type[Record]]
    dropped_output: ClassVar[type[Record] | None] = None
    extra_outputs: ClassVar[dict[str, type[Record]]] = {}  # optional outputs, each in <stage>/<name>/
    roles: ClassVar[tuple[str, ...]] = ()
    cpu_work: ClassVar[tuple[str, ...]] = ()  # CPU-heavy work besides engines ("grading", "step checks", ...)

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        """The part of the config this stage's output depends on (part of its fingerprint)."""
        raise NotImplementedError

    def fingerprint_extra(self, cfg: PipelineConfig) -> dict[str, Any]:
        """What else the output depends on besides the config slice (the problems stage: its source files' bytes)."""
        return {}

    def engines(self, cfg: PipelineConfig) -> dict[str, list[ModelConfig]]:
        """The model blocks this stage may call, by role."""
        return {r: [cfg.models.for_role(r)] for r in self.roles}

    def models(self, cfg: PipelineConfig) -> dict[str, Any]:
        """The model blocks by role as the manifest records them (one block, or a list where a role has several)."""
        return {
            r: [m.model_dump() for m in ms] if len(ms) > 1 else ms[0].model_dump()
            for r, ms in self.engines(cfg).items()
        }

    def resources(self, cfg: PipelineConfig) -> StageResources:
        """What one shard task needs: engines, GPUs per engine replica, CPU work (read by the executors)."""
        return StageResources.of(self.engines(cfg), self.cpu_work)

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return []

    def load(self, cfg: PipelineConfig) -> list[Any]:
        """A first stage (no ``input_stage``) loads and validates its input here, before any engine starts."""
        raise NotImplementedError(f"stage '{self.name}' reads stage '{self.input_stage}', it loads nothing")

    def shards(self, rows: list[Any], size: int) -> list[list[Any]]:
        """A first stage's loaded input cut into shards of ``size`` rows (one empty shard when there is none)."""
        return [rows[i : i + size] for i in range(0, len(rows), size)] or [[]]

    def run(self, rows: list[Any], ctx: StageContext) -> StageResult:
        raise NotImplementedError

    def asks_again(self, request_id: str, rejected: frozenset[str]) -> bool:
        """Whether the request ``request_id`` made one of the ``rejected`` rows (``amc build --retry-rejects``
        sends such a request to its engine again instead of reusing the cached answer). By default a request
        made a row whose id is its own, a row whose id extends it (``<request>/<completion index>``), or a row
        whose id it extends (``<path>/continue`` for the path ``<path>``)."""
        if request_id in rejected:
            return True
        parts = request_id.split("/")
        if any("/".join(parts[:k]) in rejected for k in range(1, len(parts))):
            return True
        return any(r.startswith(request_id + "/") for r in rejected)


def model_slice(cfg: PipelineConfig, role: str) -> dict[str, Any]:
    """The model block of a role, as it enters fingerprints (no secret is ever in a model block)."""
    return cfg.models.for_role(role).model_dump()


def reject_for(stage: str, row_id: str, resp: GenerationResponse) -> Reject | None:
    """A reject row for a failed engine response, else None."""
    if resp.error is not None:
        # 'engine_unavailable' (an outage) makes the stage incomplete: the next build asks for the row again
        reason = "engine_unavailable" if resp.retryable else "engine_error"
        return Reject(stage=stage, row_id=row_id, reason=reason, detail=resp.error[:2000])
    if not resp.completions:
        return Reject(stage=stage, row_id=row_id, reason="empty_response", detail="the engine returned no completion")
    return None
