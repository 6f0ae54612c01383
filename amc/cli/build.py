"""`amc build`, `status`, `init`, `verify`: building a pipeline and looking at it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from amc.cli.common import PIPELINES_DIR, ConfigOpt, SetOpt, app, console, fail, load_pipeline
from amc.errors import AmcError


@app.command()
def build(
    config: ConfigOpt = Path("amc.yaml"),
    stage: Annotated[str, typer.Option("--stage", "-s", help="Build every stage up to and including it.")] = "filter",
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check every shard's sha256 (sizes are always checked).")
    ] = False,
    retry_rejects: Annotated[
        bool,
        typer.Option(
            "--retry-rejects",
            help="Redo the shards of every reject, not only those of engine outages: the rows rejected on cached "
            "answers are asked again (the cache is bypassed for them), undecided gradings are graded again.",
        ),
    ] = False,
    executor: Annotated[
        str, typer.Option("--executor", help="Who runs the shards: local (this machine) or ray (Ray Data).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="ray: the cluster to join ('auto', 'ray://host:10001'); default: a local one."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="local: processes for stages whose engines hold no model.")
    ] = 1,
) -> None:
    """Build the pipeline's stages up to STAGE, skipping stages that are up to date.

    Exits 1 when an engine outage left a stage incomplete (run the same command again to ask for those rows)."""
    from amc.engine.executors import create_executor
    from amc.engine.runner import Runner

    cfg = load_pipeline(config, set_)
    try:
        runs = create_executor(executor, address=address, workers=workers)
        runner = Runner(cfg, show_progress=not quiet, verify=verify, retry_rejects=retry_rejects, executor=runs)
        reports = runner.build(stage)
    except (AmcError, ValueError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished shards are kept in {cfg.run_path}; run the same command to resume")
        raise typer.Exit(code=130) from None
    table = Table(title=f"amc build {cfg.name}: stages up to '{stage}'")
    for col in ("stage", "action", "rows", "rejects", "dropped", "requests made", "from cache", "seconds"):
        table.add_column(col, justify="left" if col in ("stage", "action") else "right")
    for r in reports:
        table.add_row(
            r.name,
            r.action,
            str(r.rows),
            str(r.rejects),
            str(r.dropped),
            str(r.made),
            str(r.cached),
            f"{r.seconds:.1f}",
        )
    out = Console()
    out.print(table)
    if reports and reports[-1].funnel:
        out.print(_funnel_table(reports[-1].name, reports[-1].funnel))
    out.print(f"run directory: {cfg.run_path}")
    for r in reports:
        if r.damaged:
            out.print(f"stage {r.name}: {r.damaged} damaged shard(s) were rebuilt from the cache")
        if r.retryable:
            console.print(
                f"[bold red]incomplete:[/] stage {r.name}: {r.retryable} row(s) failed on engine errors after "
                f"retries (server down, timeouts, 429/5xx); later stages were not built. Run the same command "
                f"again to ask for exactly those rows.",
                highlight=False,
            )
            raise typer.Exit(code=1)


def _funnel_table(stage: str, funnel: dict[str, int]) -> Table:
    table = Table(title=f"{stage} funnel")
    table.add_column("step")
    table.add_column("rows", justify="right")
    order = sorted(funnel, key=lambda k: (k != "in", k == "kept", k))  # rows in first, kept last
    for key in order:
        value = funnel[key]
        table.add_row(key.replace("dropped:", "dropped by "), str(value))
    return table


@app.command()
def status(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check every shard's sha256 (sizes are always checked).")
    ] = False,
) -> None:
    """Show each stage as done, partial, stale, damaged, incomplete or missing, with counts and the funnel."""
    from amc.engine.status import run_status

    cfg = load_pipeline(config, set_)
    try:
        info = run_status(cfg, verify=verify)
    except AmcError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(title=f"{cfg.name} ({info['run_dir']})")
    for col in ("stage", "state", "shards", "rows", "rejects", "dropped", "requests made", "from cache"):
        table.add_column(col)
    for name, s in info["stages"].items():
        req = s.get("requests", {})
        table.add_row(
            name,
            s["state"],
            s.get("shards", ""),
            str(s.get("rows", "")),
            str(s.get("rejects", "")),
            str(s.get("dropped", "")),
            str(req.get("made", "")),
            str(req.get("cached", "")),
        )
    out = Console()
    out.print(table)
    for name, s in info["stages"].items():
        if s.get("funnel") and name in ("sample", "inject", "critique", "filter"):
            out.print(_funnel_table(name, s["funnel"]))
    for name, s in info["stages"].items():
        for idx, what in s.get("damaged", {}).items():
            out.print(f"stage {name} is damaged: shard {idx}: {what}; `amc build` rebuilds it from the cache")
        if s.get("retryable"):
            out.print(
                f"stage {name} is incomplete: {s['retryable']} row(s) failed on engine outages; run "
                f"`amc build` again to ask for them"
            )
    if info["building"]:
        out.print("a build is running in this run directory now: partial stages are being written")
    if info["last_build"]:
        req = info["last_build"]["requests"]
        out.print(f"last build: {req['made']} engine requests made, {req['cached']} served from the cache")


@app.command()
def init(
    template: Annotated[str, typer.Option("--template", "-t", help="One of the ready pipelines.")] = "quickstart",
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("amc.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented amc.yaml from one of the ready pipelines."""
    src = PIPELINES_DIR / f"{template}.yaml"
    if not src.is_file():
        names = sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml"))
        fail(AmcError(f"no pipeline template '{template}'; choose one of: {', '.join(names)}"))
    if output.exists() and not force:
        fail(AmcError(f"{output} exists; pass --force to overwrite it"))
    output.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    typer.echo(f"wrote {output} from the '{template}' pipeline; run `amc build --stage filter`")


@app.command()
def verify(gold: str, pred: str) -> None:
    """Print true (exit 0) when PRED is mathematically equivalent to GOLD, else false (exit 1); undecided (exit 2)
    when the last-resort grading guard stopped math-verify."""
    from amc.answers import verify as _verify

    same = _verify(gold, pred)
    typer.echo("undecided" if same is None else "true" if same else "false")
    if same is None:
        raise typer.Exit(code=2)
    if not same:
        raise typer.Exit(code=1)
