"""ProcessBench-style first-error evaluation (arXiv 2412.06559), and the saved predictions it is computed from.

On solutions with an error, a critic is right when its first Wrong step is the labelled one (``acc_error``); on
solutions without, when it calls no step Wrong (``acc_correct``); ``f1 = 2ab/(a+b)`` of the two, in percent as
in the paper. Each subset (ProcessBench's gsm8k, math, ...; amc's strategies) gets the three numbers, and the
headline numbers are their mean over subsets, as the paper averages F1 over its four subsets. Items whose first
error is not known (``label=None``) are left out. An unreadable critique (no prediction) is a miss.

An evaluation folder holds ``predictions.jsonl`` (every prediction with its critique text) and ``metrics.json``;
:func:`metrics_from_predictions` recomputes the figures from the predictions alone.

>>> m = first_error_metrics([(0, 0), (1, 2), (-1, -1), (-1, 3)])
>>> m["acc_error"], m["acc_correct"], m["f1"]
(50.0, 50.0, 50.0)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from amc.errors import InputError
from amc.evaluate.critic import Critic, Prediction, Progress
from amc.evaluate.items import EvalItem

__all__ = [
    "first_error_metrics",
    "metrics_from_predictions",
    "evaluate",
    "save_evaluation",
    "load_predictions",
    "PREDICTIONS",
    "METRICS",
]

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"


def _pct(hits: int, total: int) -> float | None:
    return 100.0 * hits / total if total else None


def f1_of(a: float | None, b: float | None) -> float | None:
    """Harmonic mean of two accuracies (0 when both are 0; ``None`` when either is unknown)."""
    if a is None or b is None:
        return None
    return 2 * a * b / (a + b) if a + b else 0.0


def first_error_metrics(pairs: Iterable[tuple[int | None, int | None]]) -> dict[str, Any]:
    """``acc_error``, ``acc_correct``, ``f1`` (percent) and counts from (label, prediction) pairs."""
    err_hits = err_n = ok_hits = ok_n = unread = 0
    for label, pred in pairs:
        if label is None:
            continue
        unread += pred is None
        if label >= 0:
            err_n += 1
            err_hits += pred == label
        else:
            ok_n += 1
            ok_hits += pred == -1
    a, b = _pct(err_hits, err_n), _pct(ok_hits, ok_n)
    return {
        "acc_error": a,
        "acc_correct": b,
        "f1": f1_of(a, b),
        "n_error": err_n,
        "n_correct": ok_n,
        "unparsed": unread,
    }


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def metrics_from_predictions(preds: Sequence[Prediction | dict[str, Any]]) -> dict[str, Any]:
    """Per-subset figures and their mean over subsets (the headline ``acc_error``, ``acc_correct``, ``f1``)."""
    rows = [p.as_row() if isinstance(p, Prediction) else p for p in preds]
    subsets: dict[str, list[tuple[int | None, int | None]]] = {}
    for r in rows:
        subsets.setdefault(str(r["subset"]), []).append((r["label"], r["prediction"]))
    per = {name: first_error_metrics(pairs) for name, pairs in sorted(subsets.items())}
    scored = [m for m in per.values() if m["n_error"] + m["n_correct"]]
    return {
        "acc_error": _mean([m["acc_error"] for m in scored]),
        "acc_correct": _mean([m["acc_correct"] for m in scored]),
        "f1": _mean([m["f1"] for m in scored]),
        "n": len(rows),
        "scored": sum(m["n_error"] + m["n_correct"] for m in per.values()),
        "unparsed": sum(m["unparsed"] for m in per.values()),
        "subsets": per,
    }


def evaluate(
    critic: Critic, items: Sequence[EvalItem], progress: Progress | None = None
) -> tuple[list[Prediction], dict[str, Any]]:
    """Critique every item and score the predictions; the metrics carry the critic's name and the wall time."""
    start = time.perf_counter()
    preds = critic.critique(items, progress)
    metrics = metrics_from_predictions(preds)
    metrics.update(kind="processbench", critic=critic.name, seconds=round(time.perf_counter() - start, 3))
    return preds, metrics


def save_evaluation(out: Path, preds: Sequence[Prediction], metrics: dict[str, Any]) -> None:
    """Write ``predictions.jsonl`` and ``metrics.json`` into ``out`` (each through a temporary file and a rename,
    so an interrupted write never leaves half a file under the final name)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (PREDICTIONS + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for p in preds:
            fh.write(json.dumps(p.as_row(), ensure_ascii=False) + "\n")
    tmp.replace(out / PREDICTIONS)
    tmp = out / (METRICS + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / METRICS)


def load_predictions(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``predictions.jsonl`` (a folder holding one is fine), each checked for the scored fields."""
    path = path / PREDICTIONS if path.is_dir() else path
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(str(path), n, None, f"invalid JSON: {exc}") from None
        for key in ("subset", "label", "prediction"):
            if key not in row:
                raise InputError(str(path), n, key, "missing")
        rows.append(row)
    return rows
