"""Symbolic injection, with no model: perturb an arithmetic claim of step k of a correct path (a reference solution
or a sampled path, by ``symbolic.base``) with :func:`amc.perturb.inject`.

The mistake (``symbolic.modes``) is drawn per path and recorded as ``error_type``; ``error_step`` is k and
``generator`` is ``"symbolic"``. With ``carry: true`` the wrong value is carried through the later steps and a
path whose final answer stays right is rejected (``answer_still_correct``); with ``carry: false`` the later steps
stay as they were, so the answer stays right while step k is wrong: such a path is kept (``correct`` says the
answer is right, ``error_step`` that the path is not). Rejects: ``no_claim`` (no step holds arithmetic that can be
perturbed) and ``answer_still_correct``.
"""

from __future__ import annotations

import random

from amc import perturb
from amc.config import KDistribution
from amc.records import ReasoningPath, Reject
from amc.stages.base import StageContext
from amc.stages.flawed.common import STAGE, Built, attempts, draw_step, inner_steps, keep_wrong
from amc.stages.sample import grade_paths, undecided
from amc.steps import CheckTimeout, claims

ERROR_TYPES = {"result": "calculation", "operand": "misread_quantity", "operator": "wrong_operation"}
"""The ``error_type`` recorded for each :mod:`amc.perturb` mode (names of the default error types)."""


def perturbable_steps(path: ReasoningPath) -> list[int]:
    """Steps (not the closing answer line) that state at least one true arithmetic claim."""
    return [i for i in inner_steps(path) if any(c.true for c in claims(path.steps[i]))]


def perturb_path(
    base: ReasoningPath, rng: random.Random, mode: str, carry: bool, distribution: KDistribution
) -> perturb.InjectedPath | None:
    """Perturb a step drawn by ``distribution``; when it holds nothing ``mode`` can change, the next draw among the
    remaining steps is tried. None when no step can be perturbed."""
    candidates = perturbable_steps(base)
    while candidates:
        k = draw_step(candidates, rng, distribution)
        assert k is not None
        got = perturb.inject(base.steps, k, rng, carry=carry, mode=mode)
        if got is not None:
            return got
        candidates.remove(k)
    return None


def build(bases: dict[str, list[ReasoningPath]], ctx: StageContext) -> Built:
    """Symbolic paths of a shard; needs no engine."""
    scfg = ctx.cfg.stages.inject.symbolic
    built = Built()
    if not scfg.enabled or scfg.per_problem == 0:
        return built
    made = []
    for rng, j, base, path_id in attempts(bases, ctx, "symbolic", scfg.per_problem, built):
        mode = rng.choice(scfg.modes)
        try:
            got = perturb_path(base, rng, mode, scfg.carry, scfg.k_distribution)
        except CheckTimeout:  # a step check the last-resort guard stopped: undecided, so no path is built on it
            built.rejects.append(undecided(STAGE, path_id, f"the steps of {base.id}"))
            continue
        if got is None:
            built.rejects.append(
                Reject(
                    stage=STAGE,
                    row_id=path_id,
                    reason="no_claim",
                    detail=f"no step of {base.id} holds arithmetic a '{mode}' change fits",
                )
            )
            continue
        made.append(
            ReasoningPath(
                id=path_id,
                problem_id=base.problem_id,
                question=base.question,
                reference_answer=base.reference_answer,
                steps=got.steps,
                strategy="symbolic",
                generator="symbolic",
                sample_index=j,
                error_step=got.k,
                error_type=ERROR_TYPES[mode],
                source=base.source,
                difficulty=base.difficulty,
            )
        )
    if scfg.carry:
        keep_wrong(made, built)
    else:
        built.paths.extend(grade_paths(made, built.rejects, STAGE))
    return built
