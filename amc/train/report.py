"""The short report written beside a trained model: ``report.json``, ``report.md`` and curve PNGs.

What a researcher checks first after a run: did the loss fall (or the rewards rise), how many steps and tokens,
and which examples were dropped and why (an example whose prompt alone fills ``max_length`` has no completion
token left to learn from; TRL drops it, and the report says so instead of letting it vanish).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amc.train.common import finite_or_none

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

Curve = list[tuple[int, float]]


def curves_from_history(history: list[dict[str, Any]], keys: dict[str, str]) -> dict[str, Curve]:
    """``{name: [(step, value), ...]}`` for each ``name: log key`` found in a trainer's ``log_history``."""
    out: dict[str, Curve] = {}
    for name, key in keys.items():
        points = [(int(h["step"]), float(h[key])) for h in history if key in h and "step" in h]
        if points:
            out[name] = points
    return out


def plot_curves(path: Path, title: str, curves: dict[str, Curve], ylabel: str) -> Path | None:
    """One PNG with a line per curve (matplotlib's Agg backend: no display needed); None when nothing to draw."""
    drawn = {k: v for k, v in curves.items() if v}
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, points in drawn.items():
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(drawn) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_report(
    out: Path, title: str, summary: dict[str, Any], curves: dict[str, Curve], plots: dict[str, tuple[list[str], str]]
) -> dict[str, Any]:
    """Write ``report.json`` (summary and curves), the PNGs of ``plots`` (file name -> (curve names, y label)) and
    ``report.md``; returns the JSON record."""
    images = []
    for name, (members, ylabel) in plots.items():
        drawn = plot_curves(out / name, f"{title}: {ylabel}", {m: curves.get(m, []) for m in members}, ylabel)
        if drawn is not None:
            images.append(name)
    record = {"title": title, "summary": finite_or_none(summary), "curves": finite_or_none(curves), "plots": images}
    (out / REPORT_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(_markdown(title, summary, curves, images), encoding="utf-8")
    return record


def _markdown(title: str, summary: dict[str, Any], curves: dict[str, Curve], images: list[str]) -> str:
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        lines.append(f"| {key} | {value} |")
    lines.append("")
    for name, points in curves.items():
        if points:
            first, last = points[0], points[-1]
            lines.append(f"- {name}: {first[1]:.4g} (step {first[0]}) -> {last[1]:.4g} (step {last[0]})")
    lines.append("")
    lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"
