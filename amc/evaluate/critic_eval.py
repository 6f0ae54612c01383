"""How good are the critiques of an amc run: verdicts against true correctness, first errors against known ones.

amc knows the truth about its own paths: each is graded against the reference answer (``correct``), and a
resampled, injected or symbolic path carries its first error step by construction (``error_step``). So a critic
can be scored on a run without any human label:

- ``verdict_accuracy``: the critique's final-answer verdict equals the path's true correctness (an unreadable
  verdict is a miss);
- ``first_error_accuracy``: on paths with a known first error, the first Wrong step is that step;
- ProcessBench's ``acc_error``, ``acc_correct`` and ``f1`` on the same predictions (correct paths with no known
  error count as error-free);

overall and by strategy, error type and difficulty. The critiques are either the run's own (its ``critique``
stage: the annotator, which may have been told the reference answer and the error location: the ``hints``
counts say so), or a critic's run over the run's paths (``amc eval critic --run DIR --critic SPEC``).

>>> critic_metrics([{"label": 1, "prediction": 1, "final_verdict": False, "final_answer_correct": False,
...                  "strategy": "inject", "error_type": "x", "difficulty": 2, "subset": "s"}])["verdict_accuracy"]
100.0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amc.errors import AmcError
from amc.evaluate.critic import Prediction
from amc.evaluate.items import amc_label, read_rows
from amc.evaluate.processbench import first_error_metrics

__all__ = ["critic_metrics", "run_critiques"]

GROUPS = ("strategy", "error_type", "difficulty")


def _pct(hits: int, total: int) -> float | None:
    return 100.0 * hits / total if total else None


def _scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    graded = [r for r in rows if r.get("final_answer_correct") is not None]
    verdict_hits = sum(
        r.get("final_verdict") is not None and r["final_verdict"] == r["final_answer_correct"] for r in graded
    )
    known = [r for r in rows if r.get("label") is not None and r["label"] >= 0]
    pb = first_error_metrics((r.get("label"), r.get("prediction")) for r in rows)
    return {
        "n": len(rows),
        "verdict_accuracy": _pct(verdict_hits, len(graded)),
        "first_error_accuracy": _pct(sum(r.get("prediction") == r["label"] for r in known), len(known)),
        "n_known_error": len(known),
        "acc_error": pb["acc_error"],
        "acc_correct": pb["acc_correct"],
        "f1": pb["f1"],
        "unparsed": sum(r.get("prediction") is None for r in rows),
    }


def critic_metrics(preds: Sequence[Prediction | dict[str, Any]]) -> dict[str, Any]:
    """Overall scores, and the same scores by strategy, error type and difficulty (``"none"`` when unset)."""
    rows = [p.as_row() if isinstance(p, Prediction) else dict(p) for p in preds]
    out: dict[str, Any] = {"kind": "critic", **_scores(rows), "by": {}}
    for key in GROUPS:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault("none" if r.get(key) is None else str(r[key]), []).append(r)
        out["by"][key] = {name: _scores(g) for name, g in sorted(groups.items(), key=lambda kv: _order(kv[0]))}
    return out


def _order(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def run_critiques(run_dir: Path) -> tuple[list[Prediction], dict[str, int]]:
    """The run's own critiques (its ``critique`` stage) as predictions, and how many were given each hint."""
    files = sorted((run_dir / "critique" / "data").glob("*.parquet"))
    if not files:
        raise AmcError(
            f"{run_dir}: no critique stage output (critique/data/*.parquet); build it first, or pass "
            "--critic to critique the run's paths"
        )
    preds: list[Prediction] = []
    hints: Counter[str] = Counter()
    for f in files:
        for i, row in enumerate(read_rows(f)):
            path = row.get("path")
            if not isinstance(path, dict):
                raise AmcError(f"{f}, row {i}, field 'path': missing; is this an amc critique stage?")
            hints.update(row.get("hints") or [])
            preds.append(
                Prediction(
                    id=str(row["id"]),
                    subset=str(path.get("source") or "amc"),
                    label=amc_label(path.get("error_step"), path.get("correct")),
                    prediction=row.get("first_error_step"),
                    final_verdict=row.get("final_verdict"),
                    critique=str(row.get("raw") or ""),
                    parse_status=str(row.get("parse_status") or "ok"),
                    final_answer_correct=bool(path.get("correct")),
                    strategy=path.get("strategy"),
                    error_type=path.get("error_type"),
                    difficulty=path.get("difficulty"),
                    num_steps=len(path.get("steps") or []),
                )
            )
    return preds, dict(hints)
