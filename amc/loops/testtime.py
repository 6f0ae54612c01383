"""``amc loop``: critique-in-the-loop at test time (AutoMathCritique section 5; best-of-N as in CTRL).

- ``parallel``: K samples per problem, each critiqued and refined once, then a majority vote over the K answers;
- ``sequential``: R rounds of critique then refine on each of the K samples (a sample the critic accepts, or,
  with the oracle, a correct one, is settled and kept as it is);
- ``best_of_n``: K samples, the critic's final verdicts choose (ties broken by a majority vote over the K);
- ``oracle``: only answers known to be wrong are refined; otherwise the critic's final verdict decides.

Outputs in the loop folder: ``samples.parquet`` (every sample and refinement), ``critiques.parquet``,
``transitions.parquet`` (one row per problem, sample and round), ``answers.parquet`` (each problem's chosen
answer), ``metrics.json`` and ``cache.sqlite`` (the request cache: a rerun makes no engine call).
"""

from __future__ import annotations

import fcntl
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amc.backends.base import Completion
from amc.config import PipelineConfig
from amc.engine.store import atomic_write_json, write_records
from amc.errors import AmcError
from amc.loopconfig import LoopSampling
from amc.loops.common import Actor, Engines, ModelCritic, SymbolicCritic, grade, steps_of, vote
from amc.loops.rows import Attempt, CritiqueRow, Transition, transition_name
from amc.records import Problem

Critic = ModelCritic | SymbolicCritic


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """One loop at a time per folder (an OS lock, released when the process dies).

    A POSIX record lock (``lockf``), not ``flock``: child processes forked while it is held (the grading pool,
    data-loader workers) do not inherit it, so a killed run's leftover children never lock its rerun out."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AmcError(f"another loop is running in {folder}; wait for it or use another --out") from None
        yield


def make_critic(cfg: PipelineConfig, engines: Engines, kind: str, sampling: LoopSampling) -> Critic:
    """The critic: the ``critic`` role's model (``models.critic``, else the annotator), or the symbolic checks."""
    if kind == "symbolic":
        return SymbolicCritic()
    return ModelCritic(engines.get(cfg.models.for_role("critic")), cfg.seed, sampling, cfg.prompts_dir)


def attempts_from(
    problem: Problem, texts: Sequence[Completion | str], start: int, round_: int, kind: str
) -> list[Attempt]:
    """Graded attempts of one problem from an engine's texts (an error string becomes a wrong, empty attempt)."""
    marks = grade([problem] * len(texts), texts)
    return [
        Attempt(
            problem_id=problem.id,
            sample_index=start + j,
            round=round_,
            kind=kind,  # type: ignore[arg-type]
            text=t.text if isinstance(t, Completion) else "",
            predicted_answer=pred,
            correct=ok,
            finish_reason=t.finish_reason if isinstance(t, Completion) else "error",
            difficulty=problem.difficulty,
            error=None if isinstance(t, Completion) else t,
        )
        for j, (t, (pred, ok)) in enumerate(zip(texts, marks, strict=True))
    ]


@dataclass
class RoundResult:
    """What one critique-refine round produced for the attempts it was given."""

    critiques: list[CritiqueRow]
    refinements: list[list[Attempt]]  # per input attempt: its refinements ([] when not refined)
    verdicts: list[bool | None]  # per input attempt: the critic's final verdict (None: not critiqued)


def critique_round(
    problems: dict[str, Problem],
    attempts: Sequence[Attempt],
    actor: Actor,
    critic: Critic,
    *,
    oracle: bool,
    round_: int,
    sampling: LoopSampling,
    purpose: str,
    n_refine: int = 1,
) -> RoundResult:
    """Critique each attempt (with the oracle: only the wrong ones) and refine those to refine: with the oracle
    every critiqued one, else those the critic judges Wrong. ``n_refine`` refinements each, graded."""
    asked = [i for i, a in enumerate(attempts) if not (oracle and a.correct)]
    addr = {i: f"{attempts[i].problem_id}/{purpose}/s{attempts[i].sample_index}/r{round_}" for i in asked}
    results = critic.critique([(problems[attempts[i].problem_id], steps_of(attempts[i].text), addr[i]) for i in asked])
    verdicts: list[bool | None] = [None] * len(attempts)
    rows, todo = [], []
    for i, res in zip(asked, results, strict=True):
        a = attempts[i]
        verdicts[i] = res.parsed.final_verdict
        rows.append(
            CritiqueRow(
                problem_id=a.problem_id,
                sample_index=a.sample_index,
                round=round_,
                critic=critic.name,
                raw=res.raw,
                final_verdict=res.parsed.final_verdict,
                first_error_step=res.parsed.first_error_step,
                parse_status=res.parsed.status,
                truly_correct=a.correct,
                difficulty=a.difficulty,
            )
        )
        if oracle or res.parsed.final_verdict is False:
            todo.append((i, res))
    items = [
        (problems[attempts[i].problem_id], steps_of(attempts[i].text), res.parsed, res.raw, addr[i]) for i, res in todo
    ]
    refined: list[list[Attempt]] = [[] for _ in attempts]
    for (i, _), texts in zip(todo, actor.refine(items, sampling, n=n_refine), strict=True):
        a = attempts[i]
        made = attempts_from(problems[a.problem_id], texts, 0, round_, "refinement")
        refined[i] = [m.model_copy(update={"sample_index": a.sample_index}) for m in made]
    return RoundResult(rows, refined, verdicts)


def _summary(problems: Sequence[Problem], current: dict[tuple[str, int], Attempt], k: int) -> dict[str, float]:
    acc, maj, pss = [], [], []
    for p in problems:
        row = [current[(p.id, j)] for j in range(k)]
        acc += [a.correct for a in row]
        win, _ = vote([a.predicted_answer for a in row])
        maj.append(win is not None and row[win].correct)
        pss.append(any(a.correct for a in row))
    return {"accuracy": _mean(acc), f"maj@{k}": _mean(maj), f"pass@{k}": _mean(pss)}


def _mean(xs: Sequence[bool | float]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0


def run_loop(cfg: PipelineConfig, out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Run the ``loop:`` block of a pipeline file; return the output folder and the metrics it wrote."""
    from amc.stages.problems import ProblemsStage

    lc = cfg.loop
    problems = ProblemsStage().load(cfg)[: lc.limit]  # bad input fails here, before any engine starts
    if not problems:
        raise AmcError(f"{cfg.name}: the sources hold no problem")
    folder = Path(out or lc.out or cfg.run_path / "loop")
    with exclusive(folder):
        engines = Engines(folder / "cache.sqlite")
        try:
            actor = Actor(engines.get(cfg.models.actor), cfg.seed, cfg.prompts_dir)
            critic = make_critic(cfg, engines, lc.critic, lc.critique_sampling)
            metrics, tables = _loop(cfg, problems, actor, critic)
            metrics["requests"] = engines.counters()
        finally:
            engines.close()
    write_records(folder / "samples.parquet", tables["samples"], Attempt)
    write_records(folder / "critiques.parquet", tables["critiques"], CritiqueRow)
    write_records(folder / "transitions.parquet", tables["transitions"], Transition)
    write_records(folder / "answers.parquet", tables["answers"], Attempt)
    atomic_write_json(folder / "metrics.json", metrics)
    return folder, metrics


def _loop(
    cfg: PipelineConfig, problems: list[Problem], actor: Actor, critic: Critic
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    lc = cfg.loop
    k = lc.samples
    by_id = {p.id: p for p in problems}
    texts = actor.solve(problems, {p.id: k for p in problems}, lc.sampling, "loop/sample")
    samples = [a for p in problems for a in attempts_from(p, texts[p.id], 0, 0, "sample")]
    current = {(a.problem_id, a.sample_index): a for a in samples}
    rounds: list[dict[str, Any]] = [{"round": 0, **_summary(problems, current, k)}]
    critiques: list[CritiqueRow] = []
    transitions: list[Transition] = []
    metrics: dict[str, Any] = {
        "mode": lc.mode,
        "samples": k,
        "rounds": lc.rounds if lc.mode != "best_of_n" else 0,
        "oracle": lc.oracle,
        "problems": len(problems),
        "actor": actor.backend.model,
        "critic": critic.name,
        "config": lc.model_dump(),
    }
    if lc.mode == "best_of_n":
        answers, extra = _best_of_n(problems, by_id, samples, critic, critiques)
        metrics.update(extra)
    else:
        settled: set[tuple[str, int]] = set()
        for r in range(1, lc.rounds + 1):
            before_round = set(settled)
            open_ = [a for key, a in current.items() if key not in settled]
            res = critique_round(
                by_id, open_, actor, critic, oracle=lc.oracle, round_=r, sampling=lc.refine_sampling, purpose="loop"
            )
            critiques += res.critiques
            for a, refs, verdict in zip(open_, res.refinements, res.verdicts, strict=True):
                key = (a.problem_id, a.sample_index)
                after = refs[0] if refs else a
                samples += refs
                current[key] = after
                transitions.append(
                    Transition(
                        problem_id=a.problem_id,
                        sample_index=a.sample_index,
                        round=r,
                        correct_before=a.correct,
                        correct_after=after.correct,
                        refined=bool(refs),
                        critic_verdict=verdict,
                        difficulty=a.difficulty,
                    )
                )
                if not refs:
                    settled.add(key)  # accepted by the critic (or correct, with the oracle): it stays as it is
            for key in sorted(before_round):  # settled in an earlier round: carried through unchanged
                a = current[key]
                transitions.append(
                    Transition(
                        problem_id=a.problem_id,
                        sample_index=a.sample_index,
                        round=r,
                        correct_before=a.correct,
                        correct_after=a.correct,
                        refined=False,
                        difficulty=a.difficulty,
                    )
                )
            this = [t for t in transitions if t.round == r]
            rounds.append(
                {
                    "round": r,
                    **_summary(problems, current, k),
                    "refined": sum(t.refined for t in this),
                    "critiqued": len(res.critiques),
                    "transitions": _transitions(this),
                }
            )
        answers = []
        for p in problems:
            row = [current[(p.id, j)] for j in range(k)]
            win, _ = vote([a.predicted_answer for a in row])
            answers.append(row[win if win is not None else 0])
    metrics.update(
        {
            "per_round": rounds,
            "final": rounds[-1],
            "transitions": _transitions(transitions),
            "answer_accuracy": _mean([a.correct for a in answers]),
            "critic_verdicts": _verdict_quality(critiques),
            "by_difficulty": _by_difficulty(problems, samples, answers),
        }
    )
    transitions.sort(key=lambda t: (t.problem_id, t.sample_index, t.round))
    return metrics, {"samples": samples, "critiques": critiques, "transitions": transitions, "answers": answers}


def _best_of_n(
    problems: list[Problem],
    by_id: dict[str, Problem],
    samples: list[Attempt],
    critic: Critic,
    critiques: list[CritiqueRow],
) -> tuple[list[Attempt], dict[str, Any]]:
    """Each problem's answer is a sample the critic judges Correct; among several, the one whose answer most
    samples share (then the earliest); when the critic accepts none, the plain majority vote."""
    results = critic.critique(
        [(by_id[a.problem_id], steps_of(a.text), f"{a.problem_id}/bon/s{a.sample_index}") for a in samples]
    )
    verdict = {}
    for a, r in zip(samples, results, strict=True):
        verdict[(a.problem_id, a.sample_index)] = r.parsed.final_verdict
        critiques.append(
            CritiqueRow(
                problem_id=a.problem_id,
                sample_index=a.sample_index,
                round=1,
                critic=critic.name,
                raw=r.raw,
                final_verdict=r.parsed.final_verdict,
                first_error_step=r.parsed.first_error_step,
                parse_status=r.parsed.status,
                truly_correct=a.correct,
                difficulty=a.difficulty,
            )
        )
    answers, chosen_by_critic = [], 0
    for p in problems:
        row = [a for a in samples if a.problem_id == p.id]
        _, sizes = vote([a.predicted_answer for a in row])
        accepted = [j for j, a in enumerate(row) if verdict[(p.id, a.sample_index)] is True]
        pool = accepted or list(range(len(row)))
        chosen_by_critic += bool(accepted)
        best = max(pool, key=lambda j: (sizes[j], -j))
        answers.append(row[best])
    first = [next(a for a in samples if a.problem_id == p.id and a.sample_index == 0).correct for p in problems]
    return answers, {
        "best_of_n": _mean([a.correct for a in answers]),
        "first_sample_accuracy": _mean(first),
        "chosen_by_critic": chosen_by_critic,
    }


def _transitions(rows: Sequence[Transition]) -> dict[str, int]:
    counts = Counter(transition_name(t.correct_before, t.correct_after) for t in rows)
    return {name: counts.get(name, 0) for name in ("C->C", "C->I", "I->C", "I->I")}


def _verdict_quality(rows: Sequence[CritiqueRow]) -> dict[str, Any]:
    """How often the critic's final verdict agrees with the truth; unparsed verdicts counted apart."""
    judged = [r for r in rows if r.final_verdict is not None]
    right = [r for r in judged if r.truly_correct]
    wrong = [r for r in judged if not r.truly_correct]
    return {
        "critiques": len(rows),
        "no_verdict": len(rows) - len(judged),
        "accuracy": _mean([r.final_verdict == r.truly_correct for r in judged]),
        "accepts_correct": _mean([r.final_verdict is True for r in right]),
        "rejects_wrong": _mean([r.final_verdict is False for r in wrong]),
    }


def _by_difficulty(problems: list[Problem], samples: list[Attempt], answers: list[Attempt]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in sorted({p.difficulty for p in problems}, key=lambda x: (x is None, x or 0)):
        ids = {p.id for p in problems if p.difficulty == d}
        first = [a.correct for a in samples if a.problem_id in ids and a.round == 0]
        out[str(d)] = {
            "problems": len(ids),
            "sample_accuracy_before": _mean(first),
            "answer_accuracy": _mean([a.correct for a in answers if a.problem_id in ids]),
        }
    return out
