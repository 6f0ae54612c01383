"""Stage ``sample`` (RG1): each actor samples ``n`` solutions per problem, in one request each; every path is split
into steps and graded against the reference answer.

With ``stages.sample.reference`` the problem's reference solution (when the source has one) is passed on too, as
a correct path of strategy ``reference``: the symbolic strategy of the ``inject`` stage perturbs real, human-written
arithmetic that way.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from amc.answers import extract, verify_many
from amc.backends.base import GenerationRequest, SamplingParams
from amc.config import ModelConfig, PipelineConfig
from amc.errors import AmcError
from amc.records import Problem, ReasoningPath, Reject
from amc.stages.base import Stage, StageContext, StageResult, model_slice, reject_for
from amc.steps import solution_steps, split


def solve_request(
    ctx: StageContext, problem: Problem, template: str, purpose: str, n: int, sampling: Any, seed: int
) -> GenerationRequest:
    """The actor's request to solve ``problem`` from scratch."""
    tmpl = ctx.template(template)
    return GenerationRequest(
        id=f"{problem.id}/{purpose}",
        role="actor",
        messages=tmpl.render(question=problem.question),
        params=SamplingParams(n=n, seed=seed, **sampling.model_dump()),
        template=tmpl.ref,
        context={"task": "solve", "question": problem.question, "answer": problem.answer, "solution": problem.solution},
    )


def undecided(stage: str, row_id: str, what: str) -> Reject:
    """The reject of a row whose grading the last-resort wall-clock guard stopped: no answer is guessed for it."""
    return Reject(
        stage=stage,
        row_id=row_id,
        reason="grading_undecided",
        detail=f"the last-resort guard stopped grading {what[:200]}; it is neither right nor wrong "
        "(`amc build --retry-rejects` grades it again)",
    )


def grade_paths(
    paths: list[ReasoningPath], rejects: list[Reject] | None = None, stage: str = "sample"
) -> list[ReasoningPath]:
    """Fill ``predicted_answer`` and ``correct`` of each path (a truncated path is never correct).

    A path whose grading the last-resort guard stopped (:func:`amc.answers.verify_many` says ``None``) is left
    out and gets a ``grading_undecided`` reject in ``rejects``; without a ``rejects`` list that is an error."""
    preds = [extract("\n".join(p.steps)) for p in paths]
    verdicts = verify_many([(p.reference_answer, pred) for p, pred in zip(paths, preds, strict=True)])
    graded = []
    for p, pred, ok in zip(paths, preds, verdicts, strict=True):
        if ok is None:
            bad = undecided(stage, p.id, f"the answer {pred!r}")
            if rejects is None:
                raise AmcError(f"{p.id}: {bad.detail}")
            rejects.append(bad)
            continue
        graded.append(p.model_copy(update={"predicted_answer": pred, "correct": ok and p.finish_reason == "stop"}))
    return graded


def actor_models(cfg: PipelineConfig) -> list[ModelConfig]:
    """The model blocks that sample: ``stages.sample.actors``, or just ``models.actor`` when that list is empty."""
    return list(cfg.stages.sample.actors) or [cfg.models.actor]


def reference_steps(problem: Problem) -> list[str] | None:
    """The reference solution as steps, or None when the source has none.

    GSM8K calculator notes (``<<48/2=24>>``) are dropped, because no actor writes them, and a closing line
    "The answer is X." is added when the solution states no final answer of its own.

    >>> reference_steps(Problem(id="p", question="q", answer="72", source="s",
    ...                         solution="48/2 = <<48/2=24>>24\\n48+24 = <<48+24=72>>72"))
    ['48/2 = 24', '48+24 = 72', 'The answer is 72.']
    """
    if not problem.solution:
        return None
    steps = solution_steps(problem.solution)
    if not steps:
        return None
    if extract("\n".join(steps)) is None:
        steps.append(f"The answer is {problem.answer}.")
    return steps


class SampleStage(Stage):
    name = "sample"
    input_stage = "problems"
    output = ReasoningPath
    roles = ("actor",)

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"stage": cfg.stages.sample.model_dump(), "actor": model_slice(cfg, "actor"), "seed": cfg.seed}

    cpu_work = ("grading",)

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.sample.template]

    def engines(self, cfg: PipelineConfig) -> dict[str, list[ModelConfig]]:
        return {"actor": actor_models(cfg)}

    def models(self, cfg: PipelineConfig) -> dict[str, Any]:
        if cfg.stages.sample.actors:
            return {"actor": [m.model_dump() for m in cfg.stages.sample.actors]}
        return super().models(cfg)

    def asks_again(self, request_id: str, rejected: frozenset[str]) -> bool:
        # a path "<problem>/sample/<i>" (or "<problem>/sample/a<k>-<i>") is completion i of "<problem>/sample[/a<k>]"
        return request_id in rejected or request_id in {re.sub(r"[/-]\d+$", "", r) for r in rejected}

    def run(self, rows: list[Problem], ctx: StageContext) -> StageResult:
        scfg = ctx.cfg.stages.sample
        result = StageResult()
        paths: list[ReasoningPath] = []
        actors = actor_models(ctx.cfg) if scfg.enabled else []
        many = len(actors) > 1
        for a, model_cfg in enumerate(actors):
            # One actor keeps the addresses of a single-actor run (ids, seeds), so its cache entries stay valid.
            tag = f"sample/a{a}" if many else "sample"
            actor = ctx.backend(model_cfg)
            requests = [
                solve_request(
                    ctx,
                    p,
                    scfg.template,
                    tag,
                    scfg.n,
                    scfg.sampling,
                    ctx.seed(p.id, "sample", a) if many else ctx.seed(p.id, "sample"),
                )
                for p in rows
            ]
            for problem, resp in zip(rows, actor.generate(requests), strict=True):
                bad = reject_for(self.name, f"{problem.id}/{tag}", resp)
                if bad:
                    result.rejects.append(bad)
                    continue
                for i, comp in enumerate(resp.completions):
                    path_id = f"{problem.id}/sample/a{a}-{i}" if many else f"{problem.id}/sample/{i}"
                    if comp.finish_reason != "stop":
                        result.rejects.append(
                            Reject(
                                stage=self.name,
                                row_id=path_id,
                                reason="truncated",
                                detail=f"finish_reason={comp.finish_reason}",
                            )
                        )
                        continue
                    steps = split(comp.text)
                    if not steps:
                        result.rejects.append(
                            Reject(
                                stage=self.name,
                                row_id=path_id,
                                reason="empty_response",
                                detail="the answer has no step",
                            )
                        )
                        continue
                    paths.append(
                        ReasoningPath(
                            id=path_id,
                            problem_id=problem.id,
                            question=problem.question,
                            reference_answer=problem.answer,
                            steps=steps,
                            strategy="sample",
                            generator=actor.model,
                            sample_index=i,
                            temperature=scfg.sampling.temperature,
                            finish_reason=comp.finish_reason,
                            source=problem.source,
                            difficulty=problem.difficulty,
                        )
                    )
        if scfg.reference:
            paths.extend(self._references(rows))
        # Rows of a problem together, sampled paths first (actor by actor), then its reference solution.
        order = {p.id: i for i, p in enumerate(rows)}
        paths.sort(key=lambda p: order[p.problem_id])
        kept: list[ReasoningPath] = []
        for p in grade_paths(paths, result.rejects, self.name):
            if p.strategy == "reference" and not p.correct:
                # A reference solution that does not grade as its own answer is unreadable, not a flawed path.
                result.rejects.append(
                    Reject(
                        stage=self.name,
                        row_id=p.id,
                        reason="reference_not_gradable",
                        detail=f"read {p.predicted_answer!r}, reference {p.reference_answer!r}",
                    )
                )
            elif p.predicted_answer is None:
                # No final answer to grade: an unreadable answer is a reject, not a flawed path to critique.
                result.rejects.append(
                    Reject(
                        stage=self.name,
                        row_id=p.id,
                        reason="no_answer",
                        detail=f"no final answer in: {p.steps[-1][:200]!r}",
                    )
                )
            else:
                kept.append(p)
        result.rows = list(kept)
        result.counts.update(paths=len(kept), correct=sum(p.correct for p in kept))
        result.counts.update(strategy_counts(kept))
        if many:
            result.counts.update(Counter(f"generator:{p.generator}" for p in kept if p.strategy == "sample"))
        return result

    def _references(self, problems: list[Problem]) -> list[ReasoningPath]:
        out = []
        for p in problems:
            steps = reference_steps(p)
            if steps is not None:
                out.append(
                    ReasoningPath(
                        id=f"{p.id}/reference/0",
                        problem_id=p.id,
                        question=p.question,
                        reference_answer=p.answer,
                        steps=steps,
                        strategy="reference",
                        generator="reference",
                        error_step=-1,
                        source=p.source,
                        difficulty=p.difficulty,
                    )
                )
        return out


def strategy_counts(paths: list[ReasoningPath]) -> Counter[str]:
    """The funnel's per-strategy counts: ``paths:<strategy>`` and ``correct:<strategy>`` (for ``amc status``)."""
    counts: Counter[str] = Counter()
    for p in paths:
        counts[f"paths:{p.strategy}"] += 1
        if p.correct:
            counts[f"correct:{p.strategy}"] += 1
    return counts
