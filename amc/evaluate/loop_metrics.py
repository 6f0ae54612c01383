"""What critique-and-refine does to answers: transitions and the Confidence-vs-Critique scores.

``amc loop`` writes ``transitions.parquet`` into its output folder, one row per (problem, sample, round) with
``problem_id``, ``sample_index``, ``round`` (1-based), ``correct_before``, ``correct_after`` and ``difficulty``;
``amc selftrain`` writes one in each ``iter-N/``. From those rows:

- transitions per round: how many answers went correct -> correct, correct -> incorrect, incorrect -> correct and
  incorrect -> incorrect (RealCritic's C->C, C->I, I->C, I->I), with accuracy before and after;
- Confidence-vs-Critique (arXiv 2412.19513), from the repeated samples of each problem: P_a = P(correct before),
  P_b = P(correct after | correct before), P_c = P(correct after | wrong before); then Acc1 = mean P_a,
  CL = sum P_a P_b / sum P_a (how well the critic leaves right answers right), CS = sum (1-P_a) P_c / sum (1-P_a)
  (how well it turns wrong answers right), Acc2 = Acc1 CL + (1-Acc1) CS, and RSS = (Acc2 - Acc1^2) /
  (2 Acc1 (1-Acc1)). A problem with no correct (no wrong) sample before has weight 0 in CL (CS).

>>> rows = [{"problem_id": "p", "sample_index": i, "round": 1, "correct_before": b, "correct_after": a}
...         for i, (b, a) in enumerate([(True, True), (False, True)])]
>>> s = confidence_vs_critique(rows)
>>> s["acc1"], s["cl"], s["cs"], s["acc2"]
(0.5, 1.0, 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from amc.errors import AmcError, InputError

__all__ = [
    "TRANSITIONS",
    "read_transitions",
    "transitions",
    "confidence_vs_critique",
    "loop_metrics",
    "find_loop_outputs",
]

TRANSITIONS = "transitions.parquet"
_COLUMNS = ("problem_id", "sample_index", "round", "correct_before", "correct_after")


def read_transitions(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``transitions.parquet`` (or of the one in a folder), checked for the contract's columns."""
    import pyarrow.parquet as pq

    path = path / TRANSITIONS if path.is_dir() else path
    if not path.is_file():
        raise AmcError(f"{path}: no such file")
    rows = pq.read_table(path).to_pylist()
    for i, row in enumerate(rows):
        for col in _COLUMNS:
            if row.get(col) is None:
                raise InputError(str(path), i, col, "missing")
        if int(row["round"]) < 1:
            raise InputError(str(path), i, "round", f"rounds count from 1, got {row['round']}")
    return rows


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def transitions(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per round: counts of C->C, C->I, I->C, I->I and the accuracy before and after."""
    per: dict[int, dict[str, int]] = {}
    for r in rows:
        c = per.setdefault(int(r["round"]), {"c_c": 0, "c_i": 0, "i_c": 0, "i_i": 0})
        c[("c" if r["correct_before"] else "i") + "_" + ("c" if r["correct_after"] else "i")] += 1
    out = []
    for rnd, c in sorted(per.items()):
        n = sum(c.values())
        out.append(
            {"round": rnd, "n": n, **c, "acc_before": (c["c_c"] + c["c_i"]) / n, "acc_after": (c["c_c"] + c["i_c"]) / n}
        )
    return out


def confidence_vs_critique(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Acc1, CL, CS, Acc2 and RSS from one round's before/after pairs, grouped by problem (see the module doc).

    Values are fractions in [0, 1]; a score whose denominator is 0 is ``None`` (e.g. RSS when Acc1 is 0 or 1).
    """
    problems: dict[str, list[tuple[bool, bool]]] = {}
    for r in rows:
        problems.setdefault(str(r["problem_id"]), []).append((bool(r["correct_before"]), bool(r["correct_after"])))
    if not problems:
        raise AmcError("no before/after pairs to score")
    per = []
    for pairs in problems.values():
        right = [after for before, after in pairs if before]
        wrong = [after for before, after in pairs if not before]
        p_a = len(right) / len(pairs)
        p_b = sum(right) / len(right) if right else 0.0  # weight P_a is 0 then
        p_c = sum(wrong) / len(wrong) if wrong else 0.0  # weight 1-P_a is 0 then
        per.append((p_a, p_b, p_c))
    acc1 = sum(a for a, _, _ in per) / len(per)
    w_right, w_wrong = sum(a for a, _, _ in per), sum(1 - a for a, _, _ in per)
    cl = sum(a * b for a, b, _ in per) / w_right if w_right else None
    cs = sum((1 - a) * c for a, _, c in per) / w_wrong if w_wrong else None
    acc2 = acc1 * (cl or 0.0) + (1 - acc1) * (cs or 0.0)
    rss = (acc2 - acc1**2) / (2 * acc1 * (1 - acc1)) if 0 < acc1 < 1 else None
    return {"problems": len(per), "acc1": acc1, "cl": cl, "cs": cs, "acc2": acc2, "rss": rss}


def loop_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Transitions per round and by difficulty, and Confidence-vs-Critique per round and over all rounds (each
    sample's answer before round 1 against its answer after the last round)."""
    rounds = sorted({int(r["round"]) for r in rows})
    per_round = {rnd: [r for r in rows if int(r["round"]) == rnd] for rnd in rounds}
    first, last = per_round[rounds[0]], {(r["problem_id"], r["sample_index"]): r for r in per_round[rounds[-1]]}
    overall = [
        {**r, "correct_after": last.get((r["problem_id"], r["sample_index"]), r)["correct_after"]} for r in first
    ]
    by_difficulty: dict[str, list[dict[str, Any]]] = {}
    for r in first:
        by_difficulty.setdefault("none" if r.get("difficulty") is None else str(r["difficulty"]), []).append(r)
    return {
        "kind": "loop",
        "rows": len(rows),
        "transitions": transitions(rows),
        "cvc": {
            "overall": confidence_vs_critique(overall),
            "rounds": {str(rnd): confidence_vs_critique(per_round[rnd]) for rnd in rounds},
        },
        "by_difficulty": {k: transitions(v)[0] for k, v in sorted(by_difficulty.items())},
    }


def find_loop_outputs(folder: Path) -> dict[str, Path]:
    """The transitions files of a loop folder (``{"": path}``) or of a selftrain folder (``{"iter-1": ...}``)."""
    if (folder / TRANSITIONS).is_file():
        return {"": folder / TRANSITIONS}
    iters = sorted(folder.glob(f"iter-*/{TRANSITIONS}"), key=lambda p: _iter_number(p.parent.name))
    return {p.parent.name: p for p in iters}


def _iter_number(name: str) -> int:
    tail = name.removeprefix("iter-")
    return int(tail) if tail.isdigit() else 0
