"""Markdown tables of `amc selftrain` runs side by side: test accuracy per iteration, overall and by difficulty, and
what each iteration trained on. Usage: python bench/selftrain_table.py RUN_FOLDER [RUN_FOLDER ...]"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _summary(folder: Path) -> dict:
    """summary.json, or for a run still going (or stopped) the iterations it has finished so far."""
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    rows = []
    for it in range(100):
        metrics = folder / f"iter-{it}" / "metrics.json"
        if not metrics.is_file():
            break
        stats = folder / f"iter-{it}" / "data_stats.json"
        rows.append({**json.loads(metrics.read_text()), **(json.loads(stats.read_text()) if stats.is_file() else {})})
    critic = folder.name.removeprefix("selftrain-")
    return {"critic": f"{critic} (unfinished)", "iterations": rows}


def tables(folders: list[Path]) -> str:
    """One table of test accuracy per iteration and arm, one of each iteration's training data."""
    runs = [(f, _summary(f)) for f in folders]
    diffs = sorted({d for _, s in runs for r in s["iterations"] for d in r["test_accuracy_by_difficulty"]})
    head = ["arm (critic)", "iteration", "test acc %", *[f"difficulty {d} %" for d in diffs]]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, s in runs:
        for r in s["iterations"]:
            by_d = r["test_accuracy_by_difficulty"]
            cells = [s["critic"], str(r["iteration"]), _pct(r["test_accuracy"]), *[_pct(by_d.get(d)) for d in diffs]]
            out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "| arm (critic) | iteration | explore acc % | failures | recovered | actor generations | "
        "train rows | by origin | hard share (difficulty >= h) | hard share (low solve rate) |",
        "|" + "---|" * 10,
    ]
    for _, s in runs:
        for r in s["iterations"][1:]:
            origin = ", ".join(f"{k} {v}" for k, v in sorted(r.get("train_by_origin", {}).items()))
            out.append(
                f"| {s['critic']} | {r['iteration']} | {_pct(r['explore_accuracy'])} | {r['failures']} | "
                f"{r['recovered']} | {r['actor_generations']} | {r['train_examples']} | {origin or '-'} | "
                f"{_pct(r['hard_share_by_difficulty'])} | {_pct(r['hard_share_by_solve_rate'])} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    print(tables([Path(a) for a in sys.argv[1:]]))
