"""Stage ``sample`` (RG1): the actor samples ``n`` solutions per problem, in one request each; every path is split
into steps and graded against the reference answer."""

from __future__ import annotations

from typing import Any

from amc.answers import extract, verify_many
from amc.backends.base import GenerationRequest, SamplingParams
from amc.config import PipelineConfig
from amc.records import Problem, ReasoningPath, Reject
from amc.stages.base import Stage, StageContext, StageResult, model_slice, reject_for
from amc.steps import split


def solve_request(ctx: StageContext, problem: Problem, template: str, purpose: str, n: int, sampling: Any,
                  seed: int) -> GenerationRequest:
    """The actor's request to solve ``problem`` from scratch (also used by the filter's rollouts)."""
    tmpl = ctx.template(template)
    return GenerationRequest(
        id=f"{problem.id}/{purpose}",
        role="actor",
        messages=tmpl.render(question=problem.question),
        params=SamplingParams(n=n, seed=seed, **sampling.model_dump()),
        template=tmpl.ref,
        context={"task": "solve", "question": problem.question, "answer": problem.answer,
                 "solution": problem.solution},
    )


def grade_paths(paths: list[ReasoningPath]) -> list[ReasoningPath]:
    """Fill ``predicted_answer`` and ``correct`` of each path (a truncated path is never correct)."""
    preds = [extract("\n".join(p.steps)) for p in paths]
    verdicts = verify_many([(p.reference_answer, pred) for p, pred in zip(paths, preds, strict=True)])
    return [
        p.model_copy(update={"predicted_answer": pred, "correct": ok and p.finish_reason == "stop"})
        for p, pred, ok in zip(paths, preds, verdicts, strict=True)
    ]


class SampleStage(Stage):
    name = "sample"
    input_stage = "problems"
    output = ReasoningPath
    roles = ("actor",)

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"stage": cfg.stages.sample.model_dump(), "actor": model_slice(cfg, "actor"), "seed": cfg.seed}

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.sample.template]

    def enabled(self, cfg: PipelineConfig) -> bool:
        return cfg.stages.sample.enabled

    def run(self, rows: list[Problem], ctx: StageContext) -> StageResult:
        scfg = ctx.cfg.stages.sample
        actor = ctx.backend("actor")
        requests = [
            solve_request(ctx, p, scfg.template, "sample", scfg.n, scfg.sampling, ctx.seed(p.id, "sample"))
            for p in rows
        ]
        responses = actor.generate(requests)
        result = StageResult()
        paths: list[ReasoningPath] = []
        for problem, resp in zip(rows, responses, strict=True):
            bad = reject_for(self.name, f"{problem.id}/sample", resp)
            if bad:
                result.rejects.append(bad)
                continue
            for i, comp in enumerate(resp.completions):
                path_id = f"{problem.id}/sample/{i}"
                if comp.finish_reason != "stop":
                    result.rejects.append(Reject(stage=self.name, row_id=path_id, reason="truncated",
                                                 detail=f"finish_reason={comp.finish_reason}"))
                    continue
                paths.append(ReasoningPath(
                    id=path_id, problem_id=problem.id, question=problem.question,
                    reference_answer=problem.answer, steps=split(comp.text), strategy="sample",
                    generator=actor.model, sample_index=i, temperature=scfg.sampling.temperature,
                    finish_reason=comp.finish_reason, source=problem.source, difficulty=problem.difficulty,
                ))
        result.rows = list(grade_paths(paths))
        result.counts.update(paths=len(result.rows), correct=sum(p.correct for p in result.rows))
        return result
