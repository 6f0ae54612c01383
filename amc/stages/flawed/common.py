"""What the flawed-path strategies share: drawing the step k, picking base paths, asking the actor to continue a
partial solution, and the stage-wide dedup and balance of paths."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

from amc.backends.base import GenerationRequest, GenerationResponse, Message, SamplingParams
from amc.config import KDistribution, Sampling
from amc.prompts import Template
from amc.records import ReasoningPath, Reject, Strategy
from amc.stages.base import StageContext, derive_seed, reject_for
from amc.stages.sample import grade_paths
from amc.steps import split

STAGE = "inject"
_STRATEGIES = set(get_args(Strategy))


@dataclass
class Built:
    """What one strategy made: graded flawed paths, reject rows, and how many constructions it tried."""

    paths: list[ReasoningPath] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    tried: int = 0


def norm(text: str) -> str:
    """A step as dedup and "unchanged" checks see it: lowercase, single spaces."""
    return " ".join(text.split()).lower()


def text_key(path: ReasoningPath) -> str:
    """A path's normalised text: what dedup compares."""
    return "\n".join(norm(s) for s in path.steps)


def is_flawed(path: ReasoningPath) -> bool:
    """A wrong final answer, or a known error step (a wrong step with a right answer is still flawed)."""
    return not path.correct or (path.error_step is not None and path.error_step >= 0)


def step_weights(m: int, distribution: KDistribution) -> list[int]:
    """Weights of m candidate steps: uniform, linearly falling ('early') or rising ('late')."""
    if distribution == "early":
        return [m - i for i in range(m)]
    if distribution == "late":
        return [i + 1 for i in range(m)]
    return [1] * m


def draw_step(candidates: list[int], rng: random.Random, distribution: KDistribution = "uniform") -> int | None:
    """One of ``candidates`` (step indices in order) drawn by ``distribution``; None when there is none.

    >>> draw_step([0, 1, 2], random.Random(0), "late") in (0, 1, 2)
    True
    """
    if not candidates:
        return None
    if distribution == "uniform":
        return rng.choice(candidates)
    return rng.choices(candidates, weights=step_weights(len(candidates), distribution))[0]


def inner_steps(path: ReasoningPath) -> list[int]:
    """Steps that may be made wrong: all but the closing answer line (none for a one-step path)."""
    return list(range(len(path.steps) - 1))


def pick_bases(correct: list[ReasoningPath], count: int, rng: random.Random) -> list[ReasoningPath]:
    """``count`` base paths: a seeded shuffle of the correct paths, cycled when there are fewer than ``count``."""
    if not correct or count <= 0:
        return []
    order = rng.sample(correct, len(correct))
    return [order[i % len(order)] for i in range(count)]


def bases_by_problem(rows: list[ReasoningPath], prefer: str = "sample") -> dict[str, list[ReasoningPath]]:
    """Correct input paths per problem: those of strategy ``prefer`` when the problem has any, else the others.

    ``prefer='sample'`` gives the actor's own correct paths (RG2, RG3), falling back to the reference solution;
    ``prefer='reference'`` the reference solution, falling back to sampled paths. A path whose text repeats an
    earlier one of its problem is no second base, so a solution sampled four times is not drawn four times as often.
    """
    grouped: dict[str, list[ReasoningPath]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for p in rows:
        key = (p.problem_id, p.strategy, text_key(p))
        if p.correct and p.strategy in ("sample", "reference") and key not in seen:
            seen.add(key)
            grouped[p.problem_id].append(p)
    out = {}
    for pid, paths in grouped.items():
        preferred = [p for p in paths if p.strategy == prefer]
        out[pid] = preferred or paths
    return out


def continuation_messages(ctx: StageContext, question: str, prefix: list[str]) -> tuple[list[Message], Template]:
    """The solve prompt followed by ``prefix`` as a partial assistant turn to continue (none when it is empty),
    and the template it was rendered from."""
    solve = ctx.template(ctx.cfg.stages.sample.template)
    messages = solve.render(question=question)
    if prefix:
        messages = [*messages, Message(role="assistant", content="\n".join(prefix) + "\n")]
    return messages, solve


def continue_request(
    ctx: StageContext, base: ReasoningPath, prefix: list[str], path_id: str, sampling: Sampling, context: dict[str, Any]
) -> GenerationRequest:
    """The actor's request to finish ``prefix`` (a partial assistant turn) as a solution of ``base``'s problem.

    An empty prefix is a plain solve request: some servers refuse an empty assistant turn to continue.
    """
    messages, solve = continuation_messages(ctx, base.question, prefix)
    return GenerationRequest(
        id=f"{path_id}/continue",
        role="actor",
        messages=messages,
        continue_final_message=bool(prefix),
        params=SamplingParams(n=1, seed=ctx.seed(path_id, "continue"), **sampling.model_dump()),
        template=solve.ref,
        context={
            "task": "continue",
            "steps": prefix,
            "original_steps": base.steps,
            "answer": base.reference_answer,
            **context,
        },
    )


def attempts(
    bases: dict[str, list[ReasoningPath]], ctx: StageContext, strategy: str, per_problem: int, built: Built
) -> Iterator[tuple[random.Random, int, ReasoningPath, str]]:
    """(rng, j, base path, new path id) for each construction a strategy tries, per problem, seeded by the
    problem id and the strategy; each try is counted in ``built.tried``."""
    for pid, correct in bases.items():
        rng = random.Random(ctx.seed(pid, strategy))
        for j, base in enumerate(pick_bases(correct, per_problem, rng)):
            built.tried += 1
            yield rng, j, base, f"{pid}/{strategy}/{j}"


def attempts_at_step(
    bases: dict[str, list[ReasoningPath]],
    ctx: StageContext,
    strategy: str,
    per_problem: int,
    distribution: KDistribution,
    built: Built,
    verb: str,
) -> Iterator[tuple[random.Random, ReasoningPath, int, str]]:
    """Like :func:`attempts`, with the step k to work on drawn; a path too short to have one is a reject."""
    for rng, _, base, path_id in attempts(bases, ctx, strategy, per_problem, built):
        k = draw_step(inner_steps(base), rng, distribution)
        if k is None:
            built.rejects.append(
                Reject(stage=STAGE, row_id=path_id, reason="too_short", detail=f"a one-step path has no step to {verb}")
            )
            continue
        yield rng, base, k, path_id


def continued_steps(path_id: str, prefix: list[str], resp: GenerationResponse) -> list[str] | Reject:
    """The prefix plus the actor's continuation, or the reject row of a failed, truncated or empty answer."""
    bad = reject_for(STAGE, path_id, resp)
    if bad:
        return bad
    comp = resp.completions[0]
    if comp.finish_reason != "stop":
        return Reject(stage=STAGE, row_id=path_id, reason="truncated", detail=f"finish_reason={comp.finish_reason}")
    rest = split(comp.text)
    if not rest:
        return Reject(stage=STAGE, row_id=path_id, reason="empty_response", detail="the continuation has no step")
    return [*prefix, *rest]


def keep_wrong(paths: list[ReasoningPath], built: Built) -> None:
    """Grade ``paths``; keep those whose final answer is wrong, reject the others as 'answer_still_correct' (or
    'no_answer' when there is no final answer to grade, 'grading_undecided' when the grading guard stopped)."""
    for p in grade_paths(paths, built.rejects, STAGE):
        if p.predicted_answer is None:
            built.rejects.append(
                Reject(
                    stage=STAGE, row_id=p.id, reason="no_answer", detail=f"no final answer in: {p.steps[-1][:200]!r}"
                )
            )
        elif p.correct:
            built.rejects.append(
                Reject(
                    stage=STAGE,
                    row_id=p.id,
                    reason="answer_still_correct",
                    detail=f"final answer {p.predicted_answer!r} still matches the reference",
                )
            )
        else:
            built.paths.append(p)


# --------------------------------------------------------------------------------------------- stage-wide
def dedup(paths: list[ReasoningPath]) -> tuple[list[ReasoningPath], list[Reject]]:
    """Drop paths whose normalised text repeats an earlier path of the same problem (the first one stays)."""
    seen: set[tuple[str, str]] = set()
    kept, rejects = [], []
    for p in paths:
        key = (p.problem_id, text_key(p))
        if key in seen:
            rejects.append(
                Reject(
                    stage=STAGE, row_id=p.id, reason="duplicate", detail="same text as an earlier path of this problem"
                )
            )
        else:
            seen.add(key)
            kept.append(p)
    return kept, rejects


def balance(paths: list[ReasoningPath], ratio: float, run_seed: int) -> tuple[list[ReasoningPath], list[Reject]]:
    """Within each (source, strategy), keep at most ``floor(ratio * flawed)`` correct paths.

    A path is flawed when its final answer is wrong or it has a known error step (a symbolic perturbation with
    ``carry: false`` keeps the right answer); any other path is correct. The correct paths kept are those with the
    smallest ``derive_seed(run_seed, id, 'balance')``, so the choice is deterministic and independent of order. A
    group with no flawed path keeps no correct path; a group with only flawed paths (resample, inject, symbolic)
    is untouched. Applied per shard (whole problems), so the bound also holds over the whole run.
    """
    groups: dict[tuple[str, str], list[ReasoningPath]] = defaultdict(list)
    for p in paths:
        groups[(p.source, p.strategy)].append(p)
    dropped: set[str] = set()
    rejects = []
    for (source, strategy), members in groups.items():
        correct = [p for p in members if not is_flawed(p)]
        allowed = math.floor(ratio * (len(members) - len(correct)) + 1e-9)
        if len(correct) <= allowed:
            continue
        ranked = sorted(correct, key=lambda p: (derive_seed(run_seed, p.id, "balance"), p.id))
        for p in ranked[allowed:]:
            dropped.add(p.id)
            rejects.append(
                Reject(
                    stage=STAGE,
                    row_id=p.id,
                    reason="balance",
                    detail=f"more than {ratio:g} correct per flawed path in ({source}, {strategy})",
                )
            )
    return [p for p in paths if p.id not in dropped], rejects


def reject_counts(rejects: list[Reject]) -> Counter[str]:
    """``rejected:<strategy>:<reason>`` for the funnel; the strategy is read from the row id."""
    counts: Counter[str] = Counter()
    for r in rejects:
        strategy = next((part for part in r.row_id.split("/") if part in _STRATEGIES), "other")
        counts[f"rejected:{strategy}:{r.reason}"] += 1
    return counts
