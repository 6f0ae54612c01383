"""Stage ``inject`` (RG3): take a correct path, have the injector rewrite step k with a named error type, and
let the actor continue from the rewritten step. The error step and type are known by construction.

The stage passes its input paths through, so the stage after it sees sampled and injected paths together.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from amc.backends.base import GenerationRequest, Message, SamplingParams
from amc.config import PipelineConfig
from amc.records import ReasoningPath, Reject
from amc.stages.base import Stage, StageContext, StageResult, model_slice, reject_for
from amc.stages.sample import grade_paths
from amc.steps import split


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def choose_step(path: ReasoningPath, rng: random.Random) -> int | None:
    """A step to corrupt: any but the closing answer line (when there is more than one step)."""
    candidates = list(range(len(path.steps) - 1)) if len(path.steps) > 1 else []
    return rng.choice(candidates) if candidates else None


class InjectStage(Stage):
    name = "inject"
    input_stage = "sample"
    output = ReasoningPath
    roles = ("injector", "actor")

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"stage": cfg.stages.inject.model_dump(), "injector": model_slice(cfg, "injector"),
                "actor": model_slice(cfg, "actor"), "solve_template": cfg.stages.sample.template, "seed": cfg.seed}

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.inject.template, cfg.stages.sample.template]

    def run(self, rows: list[ReasoningPath], ctx: StageContext) -> StageResult:
        icfg = ctx.cfg.stages.inject
        result = StageResult(rows=list(rows))
        if not icfg.enabled or icfg.per_problem == 0:
            return result
        by_problem: dict[str, list[ReasoningPath]] = defaultdict(list)
        for p in rows:
            if p.correct and p.strategy != "inject":
                by_problem[p.problem_id].append(p)

        # 1. the injector rewrites one step of each chosen path
        plans: list[tuple[ReasoningPath, int, Any, str]] = []
        for pid, correct in by_problem.items():
            rng = random.Random(ctx.seed(pid, "inject"))
            for j, base in enumerate(rng.sample(correct, min(icfg.per_problem, len(correct)))):
                k = choose_step(base, rng)
                if k is None:
                    result.rejects.append(Reject(stage=self.name, row_id=f"{pid}/inject/{j}", reason="too_short",
                                                 detail="a one-step path has no step to corrupt"))
                    continue
                plans.append((base, k, rng.choice(icfg.error_types), f"{pid}/inject/{j}"))
        tmpl = ctx.template(icfg.template)
        requests = [
            GenerationRequest(
                id=f"{path_id}/rewrite", role="injector",
                messages=tmpl.render(question=base.question, steps=base.steps, k=k, error_type=et),
                params=SamplingParams(n=1, seed=ctx.seed(path_id, "rewrite"), **icfg.sampling.model_dump()),
                template=tmpl.ref,
                context={"task": "inject", "steps": base.steps, "k": k, "error_type": et.name},
            )
            for base, k, et, path_id in plans
        ]
        rewritten = ctx.backend("injector").generate(requests)

        # 2. the actor continues from the rewritten step
        solve = ctx.template(ctx.cfg.stages.sample.template)
        continuations: list[tuple[ReasoningPath, int, Any, str, list[str]]] = []
        cont_requests = []
        for (base, k, et, path_id), resp in zip(plans, rewritten, strict=True):
            bad = reject_for(self.name, path_id, resp)
            if bad:
                result.rejects.append(bad)
                continue
            new_lines = split(resp.completions[0].text)
            new_step = new_lines[0] if new_lines else ""
            if not new_step or _norm(new_step) == _norm(base.steps[k]):
                result.rejects.append(Reject(stage=self.name, row_id=path_id, reason="unchanged_step",
                                             detail=f"step {k} came back unchanged or empty"))
                continue
            prefix = [*base.steps[:k], new_step]
            messages = [*solve.render(question=base.question),
                        Message(role="assistant", content="\n".join(prefix) + "\n")]
            cont_requests.append(GenerationRequest(
                id=f"{path_id}/continue", role="actor", messages=messages, continue_final_message=True,
                params=SamplingParams(n=1, seed=ctx.seed(path_id, "continue"), **icfg.sampling.model_dump()),
                template=solve.ref,
                context={"task": "continue", "steps": prefix, "original_steps": base.steps, "k": k,
                         "answer": base.reference_answer},
            ))
            continuations.append((base, k, et, path_id, prefix))
        actor = ctx.backend("actor")
        finished = actor.generate(cont_requests)

        new_paths = []
        for (base, k, et, path_id, prefix), resp in zip(continuations, finished, strict=True):
            bad = reject_for(self.name, path_id, resp)
            if bad:
                result.rejects.append(bad)
                continue
            comp = resp.completions[0]
            if comp.finish_reason != "stop":
                result.rejects.append(Reject(stage=self.name, row_id=path_id, reason="truncated",
                                             detail=f"finish_reason={comp.finish_reason}"))
                continue
            new_paths.append(ReasoningPath(
                id=path_id, problem_id=base.problem_id, question=base.question,
                reference_answer=base.reference_answer, steps=prefix + split(comp.text), strategy="inject",
                generator=f"{ctx.backend('injector').model}+{actor.model}", sample_index=int(path_id.rsplit("/", 1)[1]),
                error_step=k, error_type=et.name, temperature=icfg.sampling.temperature,
                source=base.source, difficulty=base.difficulty,
            ))
        for p in grade_paths(new_paths):
            if p.correct:
                result.rejects.append(Reject(stage=self.name, row_id=p.id, reason="answer_still_correct",
                                             detail=f"final answer {p.predicted_answer!r} still matches the reference"))
            else:
                result.rows.append(p)
                result.counts["injected"] += 1
        return result
