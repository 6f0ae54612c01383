"""The overview's numbers: the card's distributions drawn from the row index, and one record in one shape.

Run directories hold nested records, publications flat rows; :func:`normalize` turns any of them into the one
dict the row page renders, so the page never cares where a row came from.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from amc.publish.plots import NO_ERROR, UNKNOWN, Distribution


def _rows(index: pa.Table, **equal: str) -> pa.Table:
    mask = pa.array([True] * index.num_rows, pa.bool_())
    for key, value in equal.items():
        mask = pc.and_(mask, pc.fill_null(pc.equal(index.column(key), value), False))
    return index.filter(mask)


def _count(values: list[Any]) -> dict[str, int]:
    return dict(Counter(str(v) for v in values))


def _position(step: int | None) -> str:
    return UNKNOWN if step is None else (NO_ERROR if step < 0 else str(step))


def run_distributions(index: pa.Table) -> list[Distribution]:
    """The card's distributions (same keys and titles as :func:`amc.publish.plots.distributions`) from the index
    of a run directory: paths of the last path stage, critiques, and the filter's kept rows."""
    from amc.publish.plots import DISTRIBUTION_TITLES, steps_follow_difficulty

    stages = index.column("stage").unique().to_pylist()
    path_stage = next((s for s in ("inject", "sample") if s in stages), None)
    paths = _rows(index, stage=path_stage, part="data") if path_stage else index.slice(0, 0)
    crit = _rows(index, stage="critique", part="data")
    kept = _rows(index, stage="filter", status="kept")

    def col(t: pa.Table, name: str) -> list[Any]:
        return t.column(name).to_pylist()

    def verdicts(t: pa.Table, name: str) -> list[str]:
        return [UNKNOWN if v is None else ("Correct" if v in (True, "Correct") else "Wrong") for v in col(t, name)]

    series = {
        "first_error_step": {
            "paths (known by construction)": _count(_position(s) for s in col(paths, "error_step") if s is not None),
            "critiques (annotator)": _count(_position(s) for s in col(crit, "first_error_step")),
            "filtered (annotator)": _count(_position(s) for s in col(kept, "first_error_step")),
        },
        "error_types": {
            "paths": _count(v for v in col(paths, "error_type") if v),
            "filtered": _count(v for v in col(kept, "error_type") if v),
        },
        "verdicts": {
            "paths (true correctness)": _count(verdicts(paths, "correct")),
            "critiques (final verdict)": _count(verdicts(crit, "verdict")),
            "filtered (final verdict)": _count(verdicts(kept, "verdict")),
        },
        "steps_per_path": {
            "paths": _count(v for v in col(paths, "num_steps") if v is not None),
            "filtered": _count(v for v in col(kept, "num_steps") if v is not None),
        },
        "difficulty": {
            "paths": _count(v for v in col(paths, "difficulty") if v is not None),
            "filtered": _count(v for v in col(kept, "difficulty") if v is not None),
        },
    }
    offset = steps_follow_difficulty(zip(col(paths, "difficulty"), col(paths, "num_steps"), strict=True))
    if offset is not None and series["difficulty"]["paths"]:
        del series["steps_per_path"]  # it would repeat the difficulty chart, shifted by `offset`
    out = []
    for key, by_series in series.items():
        title, label = DISTRIBUTION_TITLES[key]
        d = Distribution(key, title, label, {n: c for n, c in by_series.items() if c})
        if d.series:
            out.append(d)
    return out


# ----------------------------------------------------------------------------------------------- one record
def normalize(kind: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Any record kind (nested or flat) as one dict: problem, path, critique, refinements, decision, reject."""
    out: dict[str, Any] = {"kind": kind, "raw_record": rec}
    if kind == "decision":
        critique = rec.get("critique") or {}
        path = critique.get("path") or {}
    elif kind == "critique":
        critique, path = rec, rec.get("path") or {}
    elif kind in ("flat_filtered", "flat_critique"):
        critique = {**rec, "raw": rec.get("critique")}
        path = {**rec, "id": rec.get("path_id"), "correct": rec.get("path_correct")}
    elif kind == "path":
        critique, path = {}, rec
    else:
        critique, path = {}, {}
    if kind == "problem":
        out["problem"] = {
            "question": rec.get("question"),
            "reference_answer": rec.get("answer"),
            "solution": rec.get("solution"),
            "difficulty": rec.get("difficulty"),
            "source": rec.get("source"),
            "subject": rec.get("subject"),
        }
    elif path:
        out["problem"] = {
            "question": path.get("question"),
            "reference_answer": path.get("reference_answer"),
            "difficulty": path.get("difficulty"),
            "source": path.get("source"),
            "problem_id": path.get("problem_id"),
        }
        out["path"] = {
            k: path.get(k)
            for k in (
                "id",
                "steps",
                "strategy",
                "generator",
                "error_step",
                "error_type",
                "predicted_answer",
                "correct",
                "temperature",
                "finish_reason",
            )
        }
    if critique:
        out["critique"] = {
            k: critique.get(k)
            for k in (
                "annotator",
                "step_verdicts",
                "first_error_step",
                "final_verdict",
                "final_explanation",
                "raw",
                "hints",
                "parse_status",
                "format",
            )
        }
    if kind in ("decision", "flat_filtered"):
        out["decision"] = {
            "n": rec.get("n"),
            "k": rec.get("k"),
            "n_correct": rec.get("n_correct"),
            "kept": rec.get("kept", True),
            "reason": rec.get("reason"),
        }
        out["refinements"] = rec.get("refinements") or []
    if kind == "reject":
        out["reject"] = {
            "stage": rec.get("stage"),
            "row_id": rec.get("row_id"),
            "reason": rec.get("reason"),
            "detail": rec.get("detail"),
        }
    if kind == "sft":
        out["messages"] = [*(rec.get("prompt") or []), *(rec.get("completion") or [])]
    return out


RULE_TEXT = {
    "verdict_mismatch": "rule verdict_matches: the annotator's final verdict ({verdict}) disagrees with the "
    "path's true correctness ({truth})",
    "error_step_mismatch": "rule error_step_matches: the first step judged Wrong ({first}) is not the known "
    "error step ({known})",
    "too_few_correct_refinements": "correction outcome: {n_correct} of {n} refinements reached the reference "
    "answer; at least k = {k} needed",
    "duplicate_critique": "rule deduplicate: the same critique text as an earlier critique of this path",
    "incomplete_critique": "the critique did not parse completely (parse status {parse_status})",
    "engine_error": "the engine failed on the refinement request",
}


def decision_text(view: dict[str, Any]) -> str:
    """One sentence: why the filter kept or dropped this row, naming the rule."""
    d, c, p = view.get("decision") or {}, view.get("critique") or {}, view.get("path") or {}
    if d.get("kept"):
        return (
            f"kept: {d.get('n_correct')} of {d.get('n')} refinements reached the reference answer "
            f"(k = {d.get('k')} needed)"
        )
    reason = d.get("reason") or "unknown"
    fmt = {
        "verdict": _word(c.get("final_verdict")),
        "truth": _word(p.get("correct")),
        "first": c.get("first_error_step"),
        "known": p.get("error_step"),
        "n_correct": d.get("n_correct"),
        "n": d.get("n"),
        "k": d.get("k"),
        "parse_status": c.get("parse_status"),
    }
    return f"dropped by {reason}: " + RULE_TEXT.get(reason, reason).format(**fmt)


def _word(value: Any) -> str:
    return "unknown" if value is None else ("Correct" if value else "Wrong")
