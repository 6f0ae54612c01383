"""Stage ``critique``: the annotator critiques each flawed path (and a share of correct ones) step by step, in
the AutoMathCritique text format (or JSON, schema-guided); the output is parsed into step verdicts and a final
verdict. Hints (reference answer, reference solution, known error location and type, verifier feedback, stop at the
first error) are switchable; each critique records which it was given.

An unparsable critique is asked again (with another seed) up to ``max_parse_retries`` times, then becomes a
reject row. A critique cut off by ``max_tokens`` is asked again too; when every attempt is cut off, the verdicts
it completed are kept as a "partial" critique whose ``parse_problems`` start with "truncated". The counts record
every output's parse status (``outputs``, ``parse_ok``, ``parse_partial``, ``parse_failed``, ``parse_truncated``).
"""

from __future__ import annotations

from typing import Any

from amc.backends.base import GenerationRequest, SamplingParams
from amc.config import CritiqueHints, PipelineConfig
from amc.critique_format import ParsedCritique, critique_json_schema, parse
from amc.records import Critique, CritiqueFormat, Problem, ReasoningPath, Reject
from amc.stages.base import Stage, StageContext, StageResult, derive_seed, model_slice, reject_for
from amc.stages.flawed.common import is_flawed
from amc.stages.sample import undecided
from amc.steps import CheckTimeout, first_false_arithmetic


def wants_critique(path: ReasoningPath, share_correct: float, run_seed: int) -> bool:
    """Every flawed path (a wrong answer, or a known error step even when the answer came out right); a
    deterministic share of the correct ones."""
    if is_flawed(path):
        return True
    return derive_seed(run_seed, path.id, "critique-correct") / 0x7FFFFFFF < share_correct


def verifier_feedback(steps: list[str]) -> str:
    """CTRL-style feedback from the symbolic step checks, in words."""
    idx = first_false_arithmetic(steps)
    if idx is None:
        return "no step states a false arithmetic equation."
    return f"step {idx + 1} states a false arithmetic equation: {steps[idx]}"


def hints_for(path: ReasoningPath, cfg: PipelineConfig, problem: Problem | None) -> dict[str, Any]:
    """The hints an annotator gets for a path, as the template sees them (None = not given)."""
    h = cfg.stages.critique.hints
    known = path.error_step is not None and path.error_step >= 0
    solution = problem.solution if (h.reference_solution and problem is not None) else None
    return {
        "reference_answer": path.reference_answer if h.reference_answer else None,
        "reference_solution": solution or None,
        "error_step": path.error_step if (h.error_location and known) else None,
        "error_type": path.error_type if (h.error_location and known) else None,
        "verifier_feedback": verifier_feedback(path.steps) if h.verifier_feedback else None,
        "stop_at_first_error": h.stop_at_first_error,
    }


def hint_names(hints: dict[str, Any]) -> list[str]:
    """Names of the hints actually given (as in the config's ``hints`` block), recorded on each critique."""
    given = {
        "error_location" if name in ("error_step", "error_type") else name
        for name, value in hints.items()
        if value not in (None, False, "")
    }
    return [name for name in CritiqueHints.model_fields if name in given]


class CritiqueStage(Stage):
    name = "critique"
    input_stage = "inject"
    output = Critique
    roles = ("annotator",)
    cpu_work = ("critique parsing", "step checks")

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"stage": cfg.stages.critique.model_dump(), "annotator": model_slice(cfg, "annotator"), "seed": cfg.seed}

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.critique.template_name]

    def asks_again(self, request_id: str, rejected: frozenset[str]) -> bool:
        # the critique "<path>/c<j>" is sample j of every attempt "<path>/critique/<attempt>"
        path_id, _, attempt = request_id.rpartition("/critique/")
        return bool(path_id) and attempt.isdigit() and any(r.rpartition("/c")[0] == path_id for r in rejected)

    def _request(
        self, ctx: StageContext, path: ReasoningPath, hints: dict[str, Any], attempt: int
    ) -> GenerationRequest:
        c = ctx.cfg.stages.critique
        tmpl = ctx.template(c.template_name)
        return GenerationRequest(
            id=f"{path.id}/critique/{attempt}",
            role="annotator",
            messages=tmpl.render(question=path.question, steps=path.steps, hints=hints, budget=c.explanation_chars),
            params=SamplingParams(n=c.n, seed=ctx.seed(path.id, "critique", attempt), **c.sampling.model_dump()),
            template=tmpl.ref,
            response_schema=critique_json_schema(max_steps=len(path.steps), explanation_chars=c.explanation_chars)
            if c.format == "json"
            else None,
            context={
                "task": "critique",
                "question": path.question,
                "steps": path.steps,
                "reference_answer": path.reference_answer,
                "error_step": hints["error_step"],
                "stop_at_first_error": hints["stop_at_first_error"],
                "format": c.format,
            },
        )

    def _critique(
        self,
        path: ReasoningPath,
        j: int,
        annotator: str,
        parsed: ParsedCritique,
        raw: str,
        fmt: CritiqueFormat,
        hints: dict[str, Any],
    ) -> Critique:
        return Critique(
            id=f"{path.id}/c{j}",
            path=path,
            annotator=annotator,
            step_verdicts=parsed.step_verdicts,
            first_error_step=parsed.first_error_step,
            final_verdict=parsed.final_verdict,
            final_explanation=parsed.final_explanation,
            raw=raw,
            parse_status=parsed.status,
            parse_problems=parsed.problems,
            format=fmt,
            hints=hint_names(hints),
        )

    def run(self, rows: list[ReasoningPath], ctx: StageContext) -> StageResult:
        c = ctx.cfg.stages.critique
        result = StageResult()
        wanted = [p for p in rows if wants_critique(p, c.include_correct_paths, ctx.cfg.seed)]
        result.counts["paths"] = len(wanted)
        annotator = ctx.backend("annotator")
        todo: list[ReasoningPath] = []
        hints: list[dict[str, Any]] = []
        for p in wanted:
            try:
                hints.append(hints_for(p, ctx.cfg, ctx.problems.get(p.problem_id)))
            except CheckTimeout:  # the step check is undecided: no hint is guessed, the path is not critiqued
                result.rejects.extend(
                    undecided(self.name, f"{p.id}/c{j}", "the steps (verifier feedback)") for j in range(c.n)
                )
                result.counts["grading_undecided"] += 1
                continue
            todo.append(p)
        # slots[(path index, sample index)] -> last raw text that failed to parse
        pending = [(i, j) for i in range(len(todo)) for j in range(c.n)]
        done: dict[tuple[int, int], Critique] = {}
        failures: dict[tuple[int, int], str] = {}
        fallback: dict[tuple[int, int], Critique] = {}  # best cut-off critique so far, per slot
        for attempt in range(c.max_parse_retries + 1):
            need = sorted({i for i, _ in pending})
            if not need:
                break
            responses = annotator.generate([self._request(ctx, todo[i], hints[i], attempt) for i in need])
            still: list[tuple[int, int]] = []
            for i, resp in zip(need, responses, strict=True):
                path = todo[i]
                bad = reject_for(self.name, path.id, resp)
                slots = [s for s in pending if s[0] == i]
                if bad:
                    result.rejects.extend(bad.model_copy(update={"row_id": f"{path.id}/c{j}"}) for _, j in slots)
                    continue
                for _, j in slots:
                    if j >= len(resp.completions):  # the engine sent fewer samples than asked: ask again
                        failures[(i, j)] = f"the engine returned {len(resp.completions)} of {c.n} samples"
                        still.append((i, j))
                        continue
                    comp = resp.completions[j]
                    parsed = parse(comp.text, c.format, steps=path.steps, truncated=comp.finish_reason == "length")
                    result.counts["outputs"] += 1
                    result.counts[f"parse_{parsed.status}"] += 1
                    result.counts["parse_truncated"] += parsed.truncated
                    usable = comp.finish_reason != "error" and parsed.status != "failed"
                    if usable:
                        critique = self._critique(path, j, annotator.model, parsed, comp.text, c.format, hints[i])
                        if not parsed.truncated:
                            done[(i, j)] = critique
                            continue
                        # cut off: asked again; the verdicts it completed are kept if every attempt is cut off
                        best = fallback.get((i, j))
                        if best is None or len(critique.step_verdicts) > len(best.step_verdicts):
                            fallback[(i, j)] = critique
                    failures[(i, j)] = parsed.reason or comp.finish_reason or "no step verdict and no final verdict"
                    still.append((i, j))
            pending = still
            result.counts["retried"] += len(pending) if attempt < c.max_parse_retries else 0
        for i, j in pending:
            if (i, j) in fallback:  # a "partial" row whose parse_problems say it was cut off: never a silent success
                done[(i, j)] = fallback[(i, j)]
                result.counts["kept_truncated"] += 1
                continue
            result.rejects.append(
                Reject(
                    stage=self.name,
                    row_id=f"{todo[i].id}/c{j}",
                    reason="unparsable",
                    detail=failures.get((i, j), "")[:2000],
                )
            )
        result.rows = [done[key] for key in sorted(done)]
        result.counts["critiques"] = len(result.rows)
        return result
