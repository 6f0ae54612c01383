"""`amc loop` and `amc selftrain`: the critic in the loop, at test time and in self-training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import ConfigOpt, SetOpt, app, fail, load_pipeline
from amc.errors import AmcError

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: under the run dir).")]


@app.command("loop")
def loop_command(config: ConfigOpt, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Critique-in-the-loop at test time: sample, critique, refine, vote (the pipeline file's `loop:` block)."""
    from amc.loops.testtime import run_loop

    cfg = load_pipeline(config, set_)
    try:
        folder, m = run_loop(cfg, out)
    except AmcError as exc:
        fail(exc)
    k = m["samples"]
    if m["mode"] == "best_of_n":
        typer.echo(
            f"best_of_{k}: {m['best_of_n']:.3f} (first sample {m['first_sample_accuracy']:.3f}, "
            f"maj@{k} {m['per_round'][0][f'maj@{k}']:.3f}, pass@{k} {m['per_round'][0][f'pass@{k}']:.3f}) "
            f"on {m['problems']} problems"
        )
    else:
        for r in m["per_round"]:
            t = r.get("transitions")
            moves = f"  {' '.join(f'{n} {v}' for n, v in t.items())}" if t else ""
            typer.echo(
                f"round {r['round']}: accuracy {r['accuracy']:.3f}  maj@{k} {r[f'maj@{k}']:.3f}  "
                f"pass@{k} {r[f'pass@{k}']:.3f}{moves}"
            )
    req = m["requests"]
    typer.echo(f"requests: {req['made']} made, {req['cached']} from cache; wrote {folder}/metrics.json")


@app.command("selftrain")
def selftrain_command(config: ConfigOpt, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Self-training with the critic in the loop (the `selftrain:` block); `--set selftrain.critic=off` is the
    baseline. Each iteration is a resumable folder iter-N/; summary.json and summary.png at the top."""
    from amc.loops.selftrain import run_selftrain

    cfg = load_pipeline(config, set_)
    try:
        folder, summary = run_selftrain(cfg, out, echo=typer.echo)
    except ImportError as exc:
        fail(AmcError(f"{exc}; install the training extra: pip install -e '.[train]'"))
    except AmcError as exc:
        fail(exc)
    for row in summary["iterations"]:
        by_d = " ".join(f"d{d}={v:.2f}" for d, v in row["test_accuracy_by_difficulty"].items())
        typer.echo(
            f"iter {row['iteration']}: test accuracy {row['test_accuracy']:.3f} ({by_d})  "
            f"train examples {row.get('train_examples', 0)}"
        )
    typer.echo(f"wrote {folder}/summary.json")
