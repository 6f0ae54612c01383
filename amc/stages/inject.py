"""Stage ``inject``: flawed paths from correct ones, by three strategies (:mod:`amc.stages.flawed`):

- ``resample`` (RG2): keep the steps before k, the actor continues at a high temperature;
- ``inject`` (RG3, the top-level keys of ``stages.inject``): the injector rewrites step k with a named error type,
  the actor continues;
- ``symbolic``: an arithmetic claim of step k is perturbed with no model at all.

Each keeps only what it knows to be flawed and says so in ``error_step`` (and ``error_type``). The stage passes its
input paths on, so the stage after it sees sampled and constructed paths together; then it drops duplicates
(``dedup``) and, with ``balance``, surplus correct paths. Every dropped row is a reject with its reason, and the
funnel counts paths, tries and rejects per strategy (``paths:resample``, ``tried:symbolic``, ...).
"""

from __future__ import annotations

from typing import Any

from amc.config import PipelineConfig
from amc.records import ReasoningPath
from amc.stages.base import Stage, StageContext, StageResult, model_slice
from amc.stages.flawed import resample, symbolic, typed
from amc.stages.flawed.common import balance, bases_by_problem, dedup, reject_counts
from amc.stages.sample import strategy_counts


class InjectStage(Stage):
    name = "inject"
    version = 2
    input_stage = "sample"
    output = ReasoningPath
    roles = ("injector", "actor")
    cpu_work = ("grading", "step checks")  # continuations are graded; the symbolic strategy checks arithmetic

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {
            "stage": cfg.stages.inject.model_dump(),
            "injector": model_slice(cfg, "injector"),
            "actor": model_slice(cfg, "actor"),
            "solve_template": cfg.stages.sample.template,
            "seed": cfg.seed,
        }

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.inject.template, cfg.stages.sample.template]

    def run(self, rows: list[ReasoningPath], ctx: StageContext) -> StageResult:
        icfg = ctx.cfg.stages.inject
        result = StageResult()
        paths = list(rows)
        # Bases come from every input path: a reference solution that repeats a sampled path is still a base of
        # its own (symbolic.base: reference), though dedup keeps only the sampled copy in the output.
        actor_bases = bases_by_problem(paths, prefer="sample")
        prefer = "sample" if icfg.symbolic.base == "sample" else "reference"
        symbolic_bases = bases_by_problem(paths, prefer=prefer)
        if icfg.symbolic.base == "reference":
            symbolic_bases = {pid: [p for p in ps if p.strategy == "reference"] for pid, ps in symbolic_bases.items()}
        for strategy, built in (
            ("resample", resample.build(actor_bases, ctx)),
            ("inject", typed.build(actor_bases, ctx)),
            ("symbolic", symbolic.build(symbolic_bases, ctx)),
        ):
            paths.extend(built.paths)
            result.rejects.extend(built.rejects)
            if built.tried:
                result.counts[f"tried:{strategy}"] += built.tried
        if icfg.dedup:
            paths, dups = dedup(paths)
            result.rejects.extend(dups)
        if icfg.balance is not None:
            paths, surplus = balance(paths, icfg.balance, ctx.cfg.seed)
            result.rejects.extend(surplus)
        result.rows = list(paths)
        result.counts.update(paths=len(paths), correct=sum(p.correct for p in paths))
        result.counts.update(strategy_counts(paths))
        result.counts.update(reject_counts(result.rejects))
        return result
