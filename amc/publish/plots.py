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
    note: str = ""

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


# key -> (title, axis label). Titles stay short so a chart never clips them; the card's text says the rest.
DISTRIBUTION_TITLES = {
    "first_error_step": ("Position of the first error (0-based step)", "step"),
    "error_types": ("Error types (known by construction)", "error type"),
    "verdicts": ("Verdict balance", "verdict"),
    "steps_per_path": ("Steps per path", "steps"),
    "difficulty": ("Difficulty", "difficulty (reference steps or MATH level)"),
}


def _dist(key: str, series: dict[str, dict[str, int]]) -> Distribution:
    title, label = DISTRIBUTION_TITLES[key]
    return Distribution(key, title, label, series)


def steps_follow_difficulty(pairs: Iterable[tuple[int | None, int]]) -> int | None:
    """The constant ``steps - difficulty`` when every (difficulty, steps) pair has the same one, else None: then
    a "steps per path" chart would only repeat the difficulty chart (synthetic problems: one step per operation
    plus the answer line)."""
    offsets = {steps - level for level, steps in pairs if level is not None}
    return offsets.pop() if len(offsets) == 1 else None


def distributions(run: RunData) -> list[Distribution]:
    """Every distribution that has data in this run; empty ones are left out of the card, and so is "steps per
    path" when it only repeats the difficulty (see :func:`steps_follow_difficulty`)."""
    kept = [d.critique for d in run.kept]
    known = [p.error_step for p in run.paths if p.error_step is not None]
    dists = [
        _dist(
            "first_error_step",
            {
                "paths (known by construction)": _count(_error_position(s) for s in known),
                "critiques (annotator)": _count(_error_position(c.first_error_step) for c in run.critiques),
                "filtered (annotator)": _count(_error_position(c.first_error_step) for c in kept),
            },
        ),
        _dist(
            "error_types",
            {
                "paths": _count(p.error_type for p in run.paths if p.error_type),
                "filtered": _count(c.path.error_type for c in kept if c.path.error_type),
            },
        ),
        _dist(
            "verdicts",
            {
                "paths (true correctness)": _count(_verdict(p.correct) for p in run.paths),
                "critiques (final verdict)": _count(_verdict(c.final_verdict) for c in run.critiques),
                "filtered (final verdict)": _count(_verdict(c.final_verdict) for c in kept),
            },
        ),
        _dist(
            "steps_per_path",
            {
                "paths": _count(len(p.steps) for p in run.paths),
                "filtered": _count(len(c.path.steps) for c in kept),
            },
        ),
        _dist(
            "difficulty",
            {
                "paths": _count(p.difficulty for p in run.paths if p.difficulty is not None),
                "filtered": _count(c.path.difficulty for c in kept if c.path.difficulty is not None),
            },
        ),
    ]
    offset = steps_follow_difficulty((p.difficulty, len(p.steps)) for p in run.paths)
    for d in dists:
        d.series = {name: counts for name, counts in d.series.items() if counts}
        if d.key == "difficulty" and offset is not None and d.series:
            d.note = (
                f"Every path has exactly difficulty + {offset} steps, so a separate steps-per-path chart "
                f"would repeat this one."
            )
    return [
        d
        for d in dists
        if d.series
        and not (
            d.key == "steps_per_path" and offset is not None and any(x.key == "difficulty" and x.series for x in dists)
        )
    ]


def draw(dist: Distribution):
    """A grouped bar chart of one distribution as a matplotlib Figure (Agg, no display). The legend sits to the
    right of the axes, never over a bar, and the layout keeps the title and tick labels inside the figure."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    cats = dist.categories()
    names = list(dist.series)
    long_ticks = max((len(c) for c in cats), default=0) > 6
    width_in = min(10.0, max(4.0, 0.35 * len(cats) * max(1, len(names)) + 1.5)) + 2.4  # + room for the legend
    fig = Figure(figsize=(width_in, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(cats))]
        ax.bar(xs, [dist.series[name].get(c, 0) for c in cats], width=width, label=name)
    ax.set_xticks(range(len(cats)), cats, rotation=30 if long_ticks else 0, ha="right" if long_ticks else "center")
    ax.set_xlabel(dist.label)
    ax.set_ylabel("rows")
    ax.set_title(dist.title)
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def render_png(dist: Distribution) -> bytes:
    """A grouped bar chart of one distribution (:func:`draw`), as PNG bytes."""
    fig = draw(dist)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
