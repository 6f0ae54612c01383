"""RG2, resample from a step: keep the steps before k of a correct path and let the actor continue from that
partial solution (``continue_final_message``) at a high temperature (``resample.sampling``, T=1 by default).

A continuation whose final answer turns wrong is kept with ``error_step`` = the first step at or after k that
differs from the correct path: k itself, unless the actor wrote step k again word for word (then that step is
provably not the first error, since the correct path has it too). Rejects: ``too_short`` (no step to resample),
``answer_still_correct``, and engine failures. k is drawn by ``resample.k_distribution``.
"""

from __future__ import annotations

from amc.records import ReasoningPath, Reject
from amc.stages.base import StageContext
from amc.stages.flawed.common import (
    Built,
    attempts_at_step,
    continue_request,
    continued_steps,
    keep_wrong,
    norm,
)


def first_difference(steps: list[str], original: list[str], k: int) -> int:
    """The first index at or after ``k`` where ``steps`` departs from ``original`` (clamped to the last step).

    >>> first_difference(["a", "b", "c2", "d2"], ["a", "b", "c", "d"], 1)
    2
    """
    i = k
    while i < len(steps) and i < len(original) and norm(steps[i]) == norm(original[i]):
        i += 1
    return min(i, len(steps) - 1)


def build(bases: dict[str, list[ReasoningPath]], ctx: StageContext) -> Built:
    """RG2 paths of a shard: one continuation per draw of (base path, k); wrong final answers are kept."""
    rcfg = ctx.cfg.stages.inject.resample
    built = Built()
    if not rcfg.enabled or rcfg.per_problem == 0:
        return built
    plans: list[tuple[ReasoningPath, int, str]] = [
        (base, k, path_id)
        for _, base, k, path_id in attempts_at_step(
            bases, ctx, "resample", rcfg.per_problem, rcfg.k_distribution, built, "resample"
        )
    ]
    if not plans:
        return built
    actor = ctx.backend("actor")
    requests = [
        continue_request(ctx, base, base.steps[:k], path_id, rcfg.sampling, {"k": k, "mode": "resample"})
        for base, k, path_id in plans
    ]
    made = []
    for (base, k, path_id), resp in zip(plans, actor.generate(requests), strict=True):
        steps = continued_steps(path_id, base.steps[:k], resp)
        if isinstance(steps, Reject):
            built.rejects.append(steps)
            continue
        made.append(
            ReasoningPath(
                id=path_id,
                problem_id=base.problem_id,
                question=base.question,
                reference_answer=base.reference_answer,
                steps=steps,
                strategy="resample",
                generator=actor.model,
                sample_index=int(path_id.rsplit("/", 1)[1]),
                error_step=first_difference(steps, base.steps, k),
                temperature=rcfg.sampling.temperature,
                source=base.source,
                difficulty=base.difficulty,
            )
        )
    keep_wrong(made, built)
    return built
