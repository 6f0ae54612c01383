"""Stage ``filter``: correction-outcome filtering. The actor refines each flawed path N times given the critique;
the critique is kept when at least k refinements reach the reference answer (Monte Carlo soft filtering).

Cheap rules run before any refinement is asked for; every dropped row carries the rule that dropped it, and the
funnel (rows in, dropped per rule, kept) is returned as counts for the manifest, ``amc status`` and the card.
Optionally it also writes Math-Shepherd step labels of the critiqued paths (``filter/step_labels/``).
"""

from __future__ import annotations

from typing import Any

from amc.answers import extract, verify_many
from amc.backends.base import GenerationRequest, SamplingParams
from amc.config import FilterRules, PipelineConfig
from amc.records import Critique, FilterDecision, ReasoningPath, Refinement, Reject, StepLabels
from amc.stages.base import Stage, StageContext, StageResult, model_slice, reject_for
from amc.stages.flawed.common import continuation_messages, norm
from amc.stages.sample import undecided
from amc.steps import split


def rule_violation(c: Critique, rules: FilterRules) -> str | None:
    """The first cheap rule a critique breaks, or None. Order matters only for which reason is recorded."""
    if c.parse_status != "ok":
        return "incomplete_critique"
    if rules.verdict_matches and c.final_verdict != c.path.correct:
        return "verdict_mismatch"
    known = c.path.error_step
    if rules.error_step_matches and known is not None and known >= 0:
        predicted = c.first_error_step
        if predicted is None or predicted < 0 or abs(predicted - known) > rules.error_step_tolerance:
            return "error_step_mismatch"
    return None


def is_shortcut(text: str, rules: FilterRules) -> bool:
    """A refinement that states an answer with almost no working is not a success."""
    return rules.shortcut_guard and len(split(text)) < rules.min_refinement_steps


class FilterStage(Stage):
    name = "filter"
    input_stage = "critique"
    output = FilterDecision
    dropped_output = FilterDecision
    extra_outputs = {"step_labels": StepLabels}
    roles = ("actor",)
    cpu_work = ("grading",)

    def config_slice(self, cfg: PipelineConfig) -> dict[str, Any]:
        return {"stage": cfg.stages.filter.model_dump(), "actor": model_slice(cfg, "actor"), "seed": cfg.seed}

    def templates(self, cfg: PipelineConfig) -> list[str]:
        return [cfg.stages.filter.template]

    def run(self, rows: list[Critique], ctx: StageContext) -> StageResult:
        f = ctx.cfg.stages.filter
        result = StageResult()
        result.counts["in"] = len(rows)
        survivors: list[Critique] = []
        seen: set[tuple[str, str]] = set()
        for c in rows:
            why = rule_violation(c, f.rules)
            text_key = (c.path.id, norm(c.raw))
            if why is None and f.rules.deduplicate and text_key in seen:
                why = "duplicate_critique"
            seen.add(text_key)
            if why:
                result.dropped.append(
                    FilterDecision(
                        id=c.id, critique=c, refinements=[], n=f.n, k=f.k, n_correct=0, kept=False, reason=why
                    )
                )
                result.counts[f"dropped:{why}"] += 1
            else:
                survivors.append(c)

        tmpl = ctx.template(f.template)
        actor = ctx.backend("actor")
        requests = [
            GenerationRequest(
                id=f"{c.id}/refine",
                role="refiner",
                messages=tmpl.render(question=c.path.question, steps=c.path.steps, critique=c.raw),
                params=SamplingParams(n=f.n, seed=ctx.seed(c.id, "refine"), **f.sampling.model_dump()),
                template=tmpl.ref,
                context={
                    "task": "refine",
                    "question": c.path.question,
                    "steps": c.path.steps,
                    "first_error_step": c.first_error_step,
                    "answer": c.path.reference_answer,
                    "path_correct": c.path.correct,
                },
            )
            for c in survivors
        ]
        responses = actor.generate(requests)
        graded: list[tuple[Critique, list[Refinement]]] = []
        pairs: list[tuple[str, str | None]] = []
        for c, resp in zip(survivors, responses, strict=True):
            bad = reject_for(self.name, c.id, resp)
            if bad:
                result.rejects.append(bad)
                result.counts["dropped:engine_error"] += 1
                continue
            refs = [
                Refinement(
                    index=i,
                    text=comp.text,
                    predicted_answer=extract(comp.text),
                    shortcut=is_shortcut(comp.text, f.rules),
                    finish_reason=comp.finish_reason,
                )
                for i, comp in enumerate(resp.completions)
            ]
            pairs.extend((c.path.reference_answer, r.predicted_answer) for r in refs)
            graded.append((c, refs))
        verdicts = iter(verify_many(pairs))
        for c, refs in graded:
            marks = [next(verdicts) for _ in refs]
            if any(ok is None for ok in marks):
                # the grading guard stopped: the outcome is unknown, so the critique is neither kept nor dropped
                result.rejects.append(undecided(self.name, c.id, "a refinement's answer"))
                result.counts["grading_undecided"] += 1
                continue
            refs = [
                r.model_copy(update={"correct": bool(ok) and r.finish_reason == "stop" and not r.shortcut})
                for r, ok in zip(refs, marks, strict=True)
            ]
            n_correct = sum(r.correct for r in refs)
            kept = n_correct >= f.k
            reason = None if kept else "too_few_correct_refinements"
            decision = FilterDecision(
                id=c.id, critique=c, refinements=refs, n=len(refs), k=f.k, n_correct=n_correct, kept=kept, reason=reason
            )
            if kept:
                result.rows.append(decision)
            else:
                result.dropped.append(decision)
                result.counts[f"dropped:{reason}"] += 1
        result.counts["kept"] = len(result.rows)
        if f.step_labels.enabled:
            paths = list({c.path.id: c.path for c in rows}.values())
            labels, failures = step_labels(paths, ctx)
            result.extra["step_labels"] = list(labels)
            result.rejects.extend(failures)
            result.counts["step_labels"] = len(labels)
        return result


def step_labels(paths: list[ReasoningPath], ctx: StageContext) -> tuple[list[StepLabels], list[Reject]]:
    """Math-Shepherd labels: for each step prefix of each path, M rollouts by the actor continue from the prefix;
    the soft label is the share of graded rollouts that reaches the reference answer, the hard label whether any
    does. A path with a prefix whose rollouts all failed or were cut off gets no labels but a reject row."""
    cfg = ctx.cfg.stages.filter.step_labels
    requests, owners = [], []
    for p in paths:
        for i in range(len(p.steps)):
            prefix = p.steps[: i + 1]
            messages, solve = continuation_messages(ctx, p.question, prefix)
            requests.append(
                GenerationRequest(
                    id=f"{p.id}/rollout/{i}",
                    role="actor",
                    messages=messages,
                    continue_final_message=True,
                    params=SamplingParams(
                        n=cfg.rollouts, seed=ctx.seed(p.id, "rollout", i), **cfg.sampling.model_dump()
                    ),
                    template=solve.ref,
                    context={"task": "rollout", "steps": prefix, "path_steps": p.steps, "answer": p.reference_answer},
                )
            )
            owners.append((p, i))
    responses = ctx.backend("actor").generate(requests)
    failed: dict[str, Reject] = {}
    pairs: list[tuple[str, str | None]] = []
    sizes: list[int] = []
    for (p, i), resp in zip(owners, responses, strict=True):
        bad = reject_for("filter", f"{p.id}/rollout/{i}", resp)
        texts = (
            []
            if bad
            else ["\n".join([*p.steps[: i + 1], c.text]) for c in resp.completions if c.finish_reason == "stop"]
        )
        if bad or not texts:
            # a prefix with no graded rollout has no label: the path gets none rather than a false "wrong"
            failed.setdefault(
                p.id,
                bad
                or Reject(
                    stage="filter",
                    row_id=f"{p.id}/rollout/{i}",
                    reason="no_graded_rollout",
                    detail="every rollout was cut off",
                ),
            )
        pairs.extend((p.reference_answer, extract(t)) for t in texts)
        sizes.append(len(texts))
    verdicts = iter(verify_many(pairs))
    per_prefix = [[next(verdicts) for _ in range(n)] for n in sizes]
    for (p, i), marks in zip(owners, per_prefix, strict=True):
        if any(m is None for m in marks):  # a rollout the grading guard stopped: no label rather than a guess
            failed.setdefault(p.id, undecided("filter", f"{p.id}/rollout/{i}", "a rollout's answer"))
    labels: list[StepLabels] = []
    pos = 0
    for p in paths:
        marks = per_prefix[pos : pos + len(p.steps)]
        pos += len(p.steps)
        if p.id in failed:
            continue
        labels.append(
            StepLabels(
                id=p.id,
                problem_id=p.problem_id,
                question=p.question,
                reference_answer=p.reference_answer,
                steps=p.steps,
                strategy=p.strategy,
                error_step=p.error_step,
                rollouts=cfg.rollouts,
                soft_labels=[sum(m) / len(m) for m in marks],
                hard_labels=[any(m) for m in marks],
            )
        )
    return labels, list(failed.values())
