"""`amc eval processbench|critic|loop` and `amc report`: measuring critics and critique loops."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from amc.cli.common import SetOpt, app, console, fail, load_pipeline
from amc.errors import AmcError

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate critics (ProcessBench-style, on amc runs) and loops.")
app.add_typer(eval_app, name="eval")

CriticOpt = Annotated[
    str, typer.Option("--critic", help="checks | ENGINE:MODEL (e.g. vllm:./critic-out) | a models: role name.")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline file: engine settings, roles.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Folder for predictions.jsonl and metrics.json.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Longest critique a model may write.")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="checks: processes to spread items over [default: usable cores].")
]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "eval"


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """With ``--json``, stdout carries the JSON only: engines log there (vLLM does, from its engine processes too),
    so file descriptor 1 points at stderr while the critic runs, for this process and the ones it starts."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _critic(spec: str, config: Path | None, set_: list[str] | None, out: Path, max_tokens: int, workers: int | None):
    from amc.evaluate.critic import critic_from_spec

    cfg = load_pipeline(config, set_) if config is not None else None
    return critic_from_spec(spec, cfg, cache_path=out / "cache.sqlite", max_tokens=max_tokens, workers=workers)


def _progress(done: int, total: int) -> None:
    console.print(f"critiqued {done}/{total}", highlight=False)


def _print(metrics: dict[str, Any], as_json: bool, out: Path, keys: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(metrics, indent=2, ensure_ascii=False))
        return

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)

    typer.echo("  ".join(f"{k} {fmt(metrics.get(k))}" for k in keys))
    typer.echo(f"predictions and metrics in {out} (amc report {out} renders them)")


@eval_app.command("processbench")
def processbench(
    critic: CriticOpt,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="ProcessBench/PRMBench file or folder, amc run or publish folder, or a Hub id (Qwen/ProcessBench).",
        ),
    ],
    subset: Annotated[str | None, typer.Option("--subset", help="One subset (file stem, Hub split, strategy).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N solutions of each subset.", min=1)] = None,
    balanced: Annotated[
        bool, typer.Option("--balanced", help="With --limit N: half erroneous, half correct solutions per subset.")
    ] = False,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    max_tokens: MaxTokensOpt = 1024,
    workers: WorkersOpt = None,
) -> None:
    """First-error accuracy on erroneous and on correct solutions, and their F1 (ProcessBench, arXiv 2412.06559)."""
    from amc.evaluate.items import load_items
    from amc.evaluate.processbench import evaluate, save_evaluation

    out = out or Path("evals") / _slug(f"processbench-{Path(data).stem}-{subset or 'all'}-{critic}")
    try:
        items = load_items(data, subset=subset, limit=limit, balanced=balanced)
        with _stdout_to_stderr(as_json):
            judge = _critic(critic, config, set_, out, max_tokens, workers)
            try:
                preds, metrics = evaluate(judge, items, None if as_json and critic == "checks" else _progress)
            finally:
                judge.close()
        metrics.update(data=str(data), subset=subset, limit=limit, balanced=balanced)
        save_evaluation(out, preds, metrics)
    except AmcError as exc:
        fail(exc)
    _print(metrics, as_json, out, ["acc_error", "acc_correct", "f1", "n", "unparsed", "seconds"])


@eval_app.command("critic")
def critic_eval(
    run: Annotated[Path, typer.Option("--run", help="An amc run directory.")],
    critic: Annotated[
        str | None,
        typer.Option(
            "--critic", help="Critique the run's paths with this critic (default: score the run's own critiques)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="--critic: first N paths of each source.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    max_tokens: MaxTokensOpt = 1024,
    workers: WorkersOpt = None,
) -> None:
    """Verdict accuracy against true correctness, first-error accuracy against known error steps, by strategy,
    error type and difficulty."""
    from amc.evaluate.critic_eval import critic_metrics, run_critiques
    from amc.evaluate.items import load_items
    from amc.evaluate.processbench import save_evaluation

    out = out or Path("evals") / _slug(f"critic-{run.name}-{critic or 'annotator'}")
    try:
        if not run.is_dir():
            raise AmcError(f"{run}: no such run directory")
        if critic is None:
            preds, hints = run_critiques(run)
            name = "the run's annotator"
        else:
            items = load_items(run, limit=limit)
            with _stdout_to_stderr(as_json):
                judge = _critic(critic, config, set_, out, max_tokens, workers)
                try:
                    preds = judge.critique(items, None if as_json else _progress)
                finally:
                    judge.close()
            hints, name = {}, critic
        metrics = critic_metrics(preds)
        metrics.update(critic=name, run=str(run), hints=hints)
        save_evaluation(out, preds, metrics)
    except AmcError as exc:
        fail(exc)
    _print(metrics, as_json, out, ["verdict_accuracy", "first_error_accuracy", "f1", "n", "unparsed"])


@eval_app.command("loop")
def loop_eval(
    folder: Annotated[Path, typer.Argument(help="An amc loop or amc selftrain output folder.")],
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Transitions (C->C, C->I, I->C, I->I) and Confidence-vs-Critique scores (Acc1, CL, CS, Acc2, RSS)."""
    from amc.evaluate.report import read_output

    try:
        metrics = read_output(folder)
        if metrics["kind"] not in ("loop", "selftrain"):
            raise AmcError(f"{folder}: not an amc loop or selftrain output")
    except AmcError as exc:
        fail(exc)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
        return
    runs = metrics["iterations"] if metrics["kind"] == "selftrain" else {"loop": metrics}
    for name, m in runs.items():
        s = m["cvc"]["overall"]
        cells = "  ".join(f"{k} {'-' if s[k] is None else f'{s[k]:.3f}'}" for k in ("acc1", "cl", "cs", "acc2", "rss"))
        typer.echo(f"{name}: {cells}")


@app.command("report")
def report(
    folder: Annotated[Path, typer.Argument(help="An amc eval, amc loop or amc selftrain output folder.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where report.md and plots/ go.")] = None,
) -> None:
    """Render an evaluation or loop output as markdown with plots (report.md, plots/*.png)."""
    from amc.evaluate.report import render_report

    try:
        page = render_report(folder, out)
    except AmcError as exc:
        fail(exc)
    typer.echo(f"wrote {page}")
