"""Stage ``critique``: the annotator critiques each flawed path (and a share of correct ones) step by step, in
the AutoMathCritique text format; the text is parsed into step verdicts and a final verdict.

An unparsable critique is asked again (with another seed) up to ``max_parse_retries`` times, then becomes a
reject row. Each critique records which hints the annotator was given.
"""

from __future__ import annotations

from typing import Any

from amc.backends.base import GenerationRequest, SamplingParams
from amc.config import PipelineConfig
from amc.critique_format import parse
from amc.records import Critique, ReasoningPath, Reject
from amc.stages.base import Stage, StageContext, StageResult, derive_seed, model_slice, reject_for


def wants_critique(path: ReasoningPath, share_correct: float, run_seed: int) -> bool:
    """Every flawed path; a deterministic share of the correct ones."""
    if not path.correct:
        return True
    return derive_seed(run_seed, path.id, "critique-correct") / 0x7FFFFFFF < share_correct


def hints_for(path: ReasoningPath, cfg: PipelineConfig) -> dict[str, Any]:
    c = cfg.stages.critique
    known = path.error_step is not None and path.error_step >= 0
    return {
        "reference_answer": path.reference_answer if c.reference_answer_hint else None,
        "error_step": path.error_step if (c.error_location_hint and known) else None,
        "error_type": path.error_type if (c.error_location_hint and known) else None,
        "stop_at_first_error": c.stop_at_first_error,
    }


def hint_names(hints: dict[str, Any]) -> list[str]:
    names = []
    if hints["reference_answer"] is not None:
        names.append("reference_answer")
    if hints["error_step"] is not None:
        names.append("error_location")
    if hints["error_type"]:
        names.append("error_type")
    if hints["stop_at_first_error"]:
        names.append("stop_at_first_error")
    return names


class CritiqueStage(Stage):
    name = "critique"
    input_stage = "inject"
    output = Critique
    roles = ("annotator",)

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"stage": cfg.stages.critique.model_dump(), "annotator": model_slice(cfg, "annotator"),
                "seed": cfg.seed}

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.critique.template]

    def _request(self, ctx: StageContext, path: ReasoningPath, attempt: int) -> GenerationRequest:
        c = ctx.cfg.stages.critique
        tmpl = ctx.template(c.template)
        hints = hints_for(path, ctx.cfg)
        return GenerationRequest(
            id=f"{path.id}/critique/{attempt}", role="annotator",
            messages=tmpl.render(question=path.question, steps=path.steps, hints=hints),
            params=SamplingParams(n=c.n, seed=ctx.seed(path.id, "critique", attempt), **c.sampling.model_dump()),
            template=tmpl.ref,
            context={"task": "critique", "question": path.question, "steps": path.steps,
                     "reference_answer": path.reference_answer, "correct": path.correct,
                     "error_step": path.error_step, "stop_at_first_error": c.stop_at_first_error},
        )

    def run(self, rows: list[ReasoningPath], ctx: StageContext) -> StageResult:
        c = ctx.cfg.stages.critique
        result = StageResult()
        todo = [p for p in rows if wants_critique(p, c.include_correct_paths, ctx.cfg.seed)]
        result.counts["paths"] = len(todo)
        annotator = ctx.backend("annotator")
        # slots[(path index, sample index)] -> last raw text that failed to parse
        pending = [(i, j) for i in range(len(todo)) for j in range(c.n)]
        done: dict[tuple[int, int], Critique] = {}
        failures: dict[tuple[int, int], str] = {}
        for attempt in range(c.max_parse_retries + 1):
            need = sorted({i for i, _ in pending})
            if not need:
                break
            responses = annotator.generate([self._request(ctx, todo[i], attempt) for i in need])
            still: list[tuple[int, int]] = []
            for i, resp in zip(need, responses, strict=True):
                path = todo[i]
                bad = reject_for(self.name, path.id, resp)
                slots = [s for s in pending if s[0] == i]
                if bad:
                    result.rejects.extend(bad.model_copy(update={"row_id": f"{path.id}/c{j}"}) for _, j in slots)
                    continue
                for (_, j) in slots:
                    comp = resp.completions[j] if j < len(resp.completions) else resp.completions[-1]
                    parsed = parse(comp.text, "text", steps=path.steps)
                    if comp.finish_reason == "stop" and parsed.status != "failed":
                        done[(i, j)] = Critique(
                            id=f"{path.id}/c{j}", path=path, annotator=annotator.model,
                            step_verdicts=parsed.step_verdicts, first_error_step=parsed.first_error_step,
                            final_verdict=parsed.final_verdict, final_explanation=parsed.final_explanation,
                            raw=comp.text, parse_status=parsed.status, format="text",
                            hints=hint_names(hints_for(path, ctx.cfg)),
                        )
                    else:
                        why = "truncated" if comp.finish_reason != "stop" else "; ".join(parsed.problems)
                        failures[(i, j)] = why or "no step verdict and no final verdict"
                        still.append((i, j))
            pending = still
            result.counts["retried"] += len(pending) if attempt < c.max_parse_retries else 0
        for i, j in pending:
            result.rejects.append(Reject(stage=self.name, row_id=f"{todo[i].id}/c{j}", reason="unparsable",
                                         detail=failures.get((i, j), "")[:2000]))
        result.rows = [done[key] for key in sorted(done)]
        result.counts["critiques"] = len(result.rows)
        return result
