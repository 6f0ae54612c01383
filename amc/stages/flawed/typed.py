"""RG3, a typed error: the injector rewrites step k of a correct path with a named mistake (``error_types`` of the
pipeline file, named in the prompt), then the actor continues from the rewritten step.

Rejects: ``too_short`` (no step to rewrite), ``unchanged_step`` (the rewrite equals the original step or is empty),
``answer_still_correct`` (the continuation still reaches the reference answer), and engine failures.
"""

from __future__ import annotations

from dataclasses import dataclass

from amc.backends.base import GenerationRequest, SamplingParams
from amc.config import ErrorType
from amc.records import ReasoningPath, Reject
from amc.stages.base import StageContext, reject_for
from amc.stages.flawed.common import (
    STAGE,
    Built,
    attempts_at_step,
    continue_request,
    continued_steps,
    keep_wrong,
    norm,
)
from amc.steps import split


@dataclass(frozen=True)
class Plan:
    base: ReasoningPath
    k: int
    error_type: ErrorType
    path_id: str


def plan(bases: dict[str, list[ReasoningPath]], ctx: StageContext, built: Built) -> list[Plan]:
    """Which step of which base path gets which error type, per problem (seeded by the problem id)."""
    icfg = ctx.cfg.stages.inject
    return [
        Plan(base, k, rng.choice(icfg.error_types), path_id)
        for rng, base, k, path_id in attempts_at_step(
            bases, ctx, "inject", icfg.per_problem, icfg.k_distribution, built, "corrupt"
        )
    ]


def rewrite_request(ctx: StageContext, p: Plan) -> GenerationRequest:
    """The injector's request: the prompt names the error type (name, description, example)."""
    icfg = ctx.cfg.stages.inject
    tmpl = ctx.template(icfg.template)
    return GenerationRequest(
        id=f"{p.path_id}/rewrite",
        role="injector",
        messages=tmpl.render(question=p.base.question, steps=p.base.steps, k=p.k, error_type=p.error_type),
        params=SamplingParams(n=1, seed=ctx.seed(p.path_id, "rewrite"), **icfg.sampling.model_dump()),
        template=tmpl.ref,
        context={"task": "inject", "steps": p.base.steps, "k": p.k, "error_type": p.error_type.name},
    )


def build(bases: dict[str, list[ReasoningPath]], ctx: StageContext) -> Built:
    """RG3 paths of a shard: rewrite, continue, grade; only paths whose answer turns wrong are kept."""
    icfg = ctx.cfg.stages.inject
    built = Built()
    if not icfg.enabled or icfg.per_problem == 0 or not icfg.error_types:
        return built
    plans = plan(bases, ctx, built)
    if not plans:
        return built  # no engine is started for nothing
    injector = ctx.backend("injector")
    rewritten = injector.generate([rewrite_request(ctx, p) for p in plans])

    todo: list[tuple[Plan, list[str]]] = []
    for p, resp in zip(plans, rewritten, strict=True):
        bad = reject_for(STAGE, p.path_id, resp)
        if bad:
            built.rejects.append(bad)
            continue
        if resp.completions[0].finish_reason != "stop":
            built.rejects.append(
                Reject(
                    stage=STAGE,
                    row_id=p.path_id,
                    reason="truncated",
                    detail=f"rewrite finish_reason={resp.completions[0].finish_reason}",
                )
            )
            continue
        new_lines = split(resp.completions[0].text)
        new_step = new_lines[0] if new_lines else ""
        if not new_step or norm(new_step) == norm(p.base.steps[p.k]):
            built.rejects.append(
                Reject(
                    stage=STAGE,
                    row_id=p.path_id,
                    reason="unchanged_step",
                    detail=f"step {p.k} came back unchanged or empty",
                )
            )
            continue
        todo.append((p, [*p.base.steps[: p.k], new_step]))
    actor = ctx.backend("actor")
    requests = [continue_request(ctx, p.base, prefix, p.path_id, icfg.sampling, {"k": p.k}) for p, prefix in todo]
    finished = actor.generate(requests) if requests else []

    made = []
    for (p, prefix), resp in zip(todo, finished, strict=True):
        steps = continued_steps(p.path_id, prefix, resp)
        if isinstance(steps, Reject):
            built.rejects.append(steps)
            continue
        made.append(
            ReasoningPath(
                id=p.path_id,
                problem_id=p.base.problem_id,
                question=p.base.question,
                reference_answer=p.base.reference_answer,
                steps=steps,
                strategy="inject",
                generator=f"{injector.model}+{actor.model}",
                sample_index=int(p.path_id.rsplit("/", 1)[1]),
                error_step=p.k,
                error_type=p.error_type.name,
                temperature=icfg.sampling.temperature,
                source=p.base.source,
                difficulty=p.base.difficulty,
            )
        )
    keep_wrong(made, built)
    return built
