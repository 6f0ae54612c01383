"""``amc report DIR``: any evaluation or loop output as a markdown page with PNG plots beside it.

It recognises, by what the folder holds:
- an ``amc eval processbench`` folder (``metrics.json`` of kind ``processbench`` and ``predictions.jsonl``);
- an ``amc eval critic`` folder (``metrics.json`` of kind ``critic``);
- an ``amc eval loop`` folder (``metrics.json`` of kind ``loop`` or ``selftrain``);
- an ``amc loop`` output (``transitions.parquet``) or an ``amc selftrain`` output (``iter-N/transitions.parquet``),
  scored on the spot.

The page is ``report.md`` and the plots ``plots/*.png`` in the output folder (the input folder by default).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from amc.errors import AmcError
from amc.evaluate.loop_metrics import find_loop_outputs, loop_metrics, read_transitions
from amc.evaluate.processbench import METRICS, PREDICTIONS, load_predictions

__all__ = ["render_report", "read_output"]


def read_output(folder: Path) -> dict[str, Any]:
    """The metrics of an evaluation or loop folder (computed from transitions when it is a loop output)."""
    if (folder / METRICS).is_file():
        try:
            metrics = json.loads((folder / METRICS).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AmcError(f"{folder / METRICS}: invalid JSON: {exc}") from None
        if isinstance(metrics, dict) and metrics.get("kind") in ("processbench", "critic", "loop", "selftrain"):
            return metrics
    found = find_loop_outputs(folder)
    if "" in found:
        return {**loop_metrics(read_transitions(found[""])), "source": str(folder)}
    if found:
        iters = {name: loop_metrics(read_transitions(p)) for name, p in found.items()}
        return {"kind": "selftrain", "source": str(folder), "iterations": iters}
    raise AmcError(
        f"{folder}: nothing to report (no metrics.json of amc eval, transitions.parquet of amc loop, "
        "or iter-N/transitions.parquet of amc selftrain)"
    )


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}" if pct else f"{v:.3f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]], pct: bool = False) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(_fmt(c, pct) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class _Plots:
    """Writes bar charts into ``plots/`` (matplotlib's Agg backend: no display needed)."""

    def __init__(self, out: Path):
        import matplotlib

        matplotlib.use("Agg")
        self.dir = out / "plots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written: list[str] = []

    def bars(
        self,
        name: str,
        title: str,
        groups: list[str],
        series: dict[str, list[float | None]],
        ylabel: str,
        stacked: bool = False,
    ) -> str:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(groups) + 2), 3.2))
        width = 0.8 if stacked else 0.8 / max(1, len(series))
        bottom = [0.0] * len(groups)
        for i, (label, values) in enumerate(series.items()):
            vals = [v or 0.0 for v in values]
            xs = (
                list(range(len(groups)))
                if stacked
                else [x + (i - (len(series) - 1) / 2) * width for x in range(len(groups))]
            )
            ax.bar(xs, vals, width, label=label, bottom=bottom if stacked else None)
            if stacked:
                bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 5 else 0)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = self.dir / f"{name}.png"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        self.written.append(path.name)
        return f"![{title}](plots/{path.name})"


def _processbench(m: dict[str, Any], folder: Path, plots: _Plots) -> list[str]:
    subsets = m.get("subsets", {})
    names = list(subsets)
    rows = [
        [n, s["acc_error"], s["acc_correct"], s["f1"], s["n_error"], s["n_correct"], s["unparsed"]]
        for n, s in subsets.items()
    ]
    rows.append(["**average**", m["acc_error"], m["acc_correct"], m["f1"], "", "", m.get("unparsed")])
    out = [
        f"# ProcessBench-style evaluation of `{m.get('critic', '?')}`",
        "",
        f"{m.get('n')} solutions, {m.get('scored')} with a known label, in {m.get('seconds', '?')} s. "
        "Accuracies in percent; F1 = 2ab/(a+b); the average is the mean over subsets.",
        "",
        _table(["subset", "acc_error", "acc_correct", "f1", "erroneous", "correct", "unparsed"], rows, pct=True),
        "",
        plots.bars(
            "processbench",
            "First-error accuracy by subset",
            names,
            {k: [subsets[n][k] for n in names] for k in ("acc_error", "acc_correct", "f1")},
            "%",
        ),
    ]
    if (folder / PREDICTIONS).is_file():
        preds = load_predictions(folder)
        cap = 10
        where = [f"{i}" for i in range(cap)] + [f"{cap}+"]

        def bucket(v: int | None) -> str | None:
            return None if v is None or v < 0 else where[min(v, cap)]

        labels = Counter(bucket(p["label"]) for p in preds)
        guesses = Counter(bucket(p["prediction"]) for p in preds)
        out += [
            "",
            "First wrong step, labelled and predicted (0-based; solutions with no error left out):",
            "",
            plots.bars(
                "first_error_position",
                "First wrong step",
                where,
                {"label": [labels[w] for w in where], "predicted": [guesses[w] for w in where]},
                "solutions",
            ),
        ]
        statuses = Counter(p.get("parse_status", "ok") for p in preds)
        out += ["", "Critique parse status: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + "."]
    return out


def _critic(m: dict[str, Any], plots: _Plots) -> list[str]:
    keys = ["verdict_accuracy", "first_error_accuracy", "acc_error", "acc_correct", "f1"]
    out = [
        f"# Critic evaluation of `{m.get('critic', '?')}` on `{m.get('run', '?')}`",
        "",
        f"{m['n']} critiques; accuracies in percent. Verdict accuracy: the final verdict equals the path's true "
        "correctness; first-error accuracy: the first Wrong step is the known first error.",
        "",
    ]
    if m.get("hints"):
        out += [
            "Hints the critiques were given: "
            + ", ".join(f"{k} ({v})" for k, v in m["hints"].items())
            + ". A critique told the error location is not a blind critic.",
            "",
        ]
    out += [_table(["", *keys, "unparsed"], [["**all**", *[m[k] for k in keys], m["unparsed"]]], pct=True)]
    for group, scores in m.get("by", {}).items():
        names = list(scores)
        out += [
            "",
            f"## By {group.replace('_', ' ')}",
            "",
            _table([group, "n", *keys], [[n, s["n"], *[s[k] for k in keys]] for n, s in scores.items()], True),
            "",
            plots.bars(
                f"by_{group}",
                f"Critic accuracy by {group.replace('_', ' ')}",
                names,
                {k: [scores[n][k] for n in names] for k in keys[:2]},
                "%",
            ),
        ]
    return out


def _loop(m: dict[str, Any], plots: _Plots, name: str = "loop", title: str = "") -> list[str]:
    t = m["transitions"]
    rounds = [str(r["round"]) for r in t]
    out = [
        title or "# Critique-in-the-loop",
        "",
        f"{m['rows']} (problem, sample, round) rows.",
        "",
        _table(
            ["round", "n", "C→C", "C→I", "I→C", "I→I", "acc before", "acc after"],
            [[r["round"], r["n"], r["c_c"], r["c_i"], r["i_c"], r["i_i"], r["acc_before"], r["acc_after"]] for r in t],
        ),
        "",
        plots.bars(
            f"{name}_transitions",
            "Transitions per round",
            rounds,
            {k: [float(r[k]) for r in t] for k in ("c_c", "c_i", "i_c", "i_i")},
            "answers",
            stacked=True,
        ),
        "",
        "Confidence-vs-Critique (arXiv 2412.19513): Acc1 before, CL keeps right answers right, CS turns wrong "
        "ones right, Acc2 = Acc1 CL + (1-Acc1) CS, RSS.",
        "",
    ]
    cvc = m["cvc"]
    rows = [["all rounds", *[cvc["overall"][k] for k in ("problems", "acc1", "cl", "cs", "acc2", "rss")]]]
    rows += [
        [f"round {r}", *[s[k] for k in ("problems", "acc1", "cl", "cs", "acc2", "rss")]]
        for r, s in cvc["rounds"].items()
    ]
    out += [_table(["", "problems", "Acc1", "CL", "CS", "Acc2", "RSS"], rows)]
    if m.get("by_difficulty"):
        d = m["by_difficulty"]
        out += [
            "",
            "Round 1 by difficulty:",
            "",
            _table(
                ["difficulty", "n", "C→C", "C→I", "I→C", "I→I", "acc before", "acc after"],
                [
                    [k, r["n"], r["c_c"], r["c_i"], r["i_c"], r["i_i"], r["acc_before"], r["acc_after"]]
                    for k, r in d.items()
                ],
            ),
        ]
    return out


def _selftrain(m: dict[str, Any], plots: _Plots) -> list[str]:
    iters = m["iterations"]
    names = list(iters)
    out = [
        "# Self-training: critique and refine, per iteration",
        "",
        plots.bars(
            "selftrain_accuracy",
            "Accuracy before and after critique-and-refine",
            names,
            {
                "before": [iters[n]["transitions"][0]["acc_before"] for n in names],
                "after": [iters[n]["transitions"][-1]["acc_after"] for n in names],
            },
            "accuracy",
        ),
    ]
    for n in names:
        out += ["", *_loop(iters[n], plots, name=n.replace("-", "_"), title=f"## {n}")]
    return out


def render_report(folder: Path, out: Path | None = None) -> Path:
    """Write ``report.md`` (and ``plots/``) for an evaluation or loop folder; return the page's path."""
    if not folder.is_dir():
        raise AmcError(f"{folder}: not a folder")
    m = read_output(folder)
    out = out or folder
    out.mkdir(parents=True, exist_ok=True)
    plots = _Plots(out)
    kind = m["kind"]
    if kind == "processbench":
        lines = _processbench(m, folder, plots)
    elif kind == "critic":
        lines = _critic(m, plots)
    elif kind == "selftrain":
        lines = _selftrain(m, plots)
    else:
        lines = _loop(m, plots)
    page = out / "report.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page
