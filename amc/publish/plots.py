"""The distributions a dataset card shows (first error position, error types, verdicts, steps, difficulty), as
counts and as PNG bar charts shipped in the repository under ``plots/``.

Charts are drawn with matplotlib's Agg backend (no display needed) and without the "Software" PNG text chunk, so
the same counts give the same bytes: an unchanged dataset republishes as a no-op.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amc.publish.exports import RunData

NO_ERROR = "no error"
UNKNOWN = "none"


@dataclass
class Distribution:
    """Counts of one quantity in several row sets ("series"), e.g. first error position in paths and filtered."""

    key: str
    title: str
    label: str
    series: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def plot_path(self) -> str:
        return f"plots/{self.key}.png"

    def categories(self) -> list[str]:
        """Numbers in numeric order then words by total count: bars read left to right like the steps."""
        total: Counter[str] = Counter()
        for counts in self.series.values():
            total.update(counts)
        numeric = sorted((c for c in total if c.lstrip("-").isdigit()), key=int)
        words = sorted((c for c in total if not c.lstrip("-").isdigit()), key=lambda c: (-total[c], c))
        return numeric + words

    def table(self) -> str:
        """A markdown table: one row per category, one column per series."""
        names = list(self.series)
        lines = [f"| {self.label} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for cat in self.categories():
            lines.append(f"| {cat} | " + " | ".join(str(self.series[n].get(cat, 0)) for n in names) + " |")
        return "\n".join(lines)


def _count(values: Iterable[object]) -> dict[str, int]:
    return dict(Counter(str(v) for v in values))


def _error_position(step: int | None) -> str:
    if step is None:
        return UNKNOWN
    return NO_ERROR if step < 0 else str(step)


def _verdict(value: bool | None) -> str:
    return UNKNOWN if value is None else ("Correct" if value else "Wrong")


def distributions(run: RunData) -> list[Distribution]:
    """Every distribution that has data in this run; empty ones are left out of the card."""
    kept = [d.critique for d in run.kept]
    known = [p.error_step for p in run.paths if p.error_step is not None]
    dists = [
        Distribution(
            "first_error_step",
            "Position of the first error (0-based step)",
            "step",
            {
                "paths (known by construction)": _count(_error_position(s) for s in known),
                "critiques (annotator)": _count(_error_position(c.first_error_step) for c in run.critiques),
                "filtered (annotator)": _count(_error_position(c.first_error_step) for c in kept),
            },
        ),
        Distribution(
            "error_types",
            "Error types (known by construction)",
            "error type",
            {
                "paths": _count(p.error_type for p in run.paths if p.error_type),
                "filtered": _count(c.path.error_type for c in kept if c.path.error_type),
            },
        ),
        Distribution(
            "verdicts",
            "Verdict balance",
            "verdict",
            {
                "paths (true correctness)": _count(_verdict(p.correct) for p in run.paths),
                "critiques (final verdict)": _count(_verdict(c.final_verdict) for c in run.critiques),
                "filtered (final verdict)": _count(_verdict(c.final_verdict) for c in kept),
            },
        ),
        Distribution(
            "steps_per_path",
            "Steps per path",
            "steps",
            {
                "paths": _count(len(p.steps) for p in run.paths),
                "filtered": _count(len(c.path.steps) for c in kept),
            },
        ),
        Distribution(
            "difficulty",
            "Difficulty (steps of the reference solution, or MATH level)",
            "difficulty",
            {
                "paths": _count(p.difficulty for p in run.paths if p.difficulty is not None),
                "filtered": _count(c.path.difficulty for c in kept if c.path.difficulty is not None),
            },
        ),
    ]
    for d in dists:
        d.series = {name: counts for name, counts in d.series.items() if counts}
    return [d for d in dists if d.series]


def render_png(dist: Distribution) -> bytes:
    """A grouped bar chart of one distribution, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    cats = dist.categories()
    names = list(dist.series)
    fig = Figure(figsize=(min(10.0, max(5.0, 0.35 * len(cats) * max(1, len(names)) + 2)), 3.2), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(cats))]
        ax.bar(xs, [dist.series[name].get(c, 0) for c in cats], width=width, label=name)
    ax.set_xticks(
        range(len(cats)),
        cats,
        rotation=30 if max((len(c) for c in cats), default=0) > 6 else 0,
        ha="right" if max((len(c) for c in cats), default=0) > 6 else "center",
    )
    ax.set_xlabel(dist.label)
    ax.set_ylabel("rows")
    ax.set_title(dist.title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
