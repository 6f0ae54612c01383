"""`amc clean`: remove a stage's outputs or the request cache, the way out of a corrupt run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import ConfigOpt, SetOpt, app, fail, load_pipeline
from amc.errors import AmcError


@app.command()
def clean(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", "-s", help="Remove this stage's outputs (repeatable).")
    ] = None,
    cache: Annotated[bool, typer.Option("--cache", help="Remove the request cache (cache.sqlite).")] = False,
) -> None:
    """Remove a stage's outputs (only files amc wrote) or the request cache; the next build redoes them.

    Stages after a removed one are rebuilt too by the next build (their input changed)."""
    from amc.config import STAGES
    from amc.engine.rundir import RunDir

    cfg = load_pipeline(config, set_)
    if not stage and not cache:
        fail(AmcError("say what to remove: --stage NAME (repeatable) and/or --cache"))
    rundir = RunDir(cfg.run_path)
    if not rundir.path.is_dir():
        fail(AmcError(f"{rundir.path}: no such run directory; nothing to remove"))
    for name in stage or []:
        if name not in STAGES:
            fail(AmcError(f"unknown stage '{name}'; stages are {', '.join(STAGES)}"))
    try:
        with rundir.lock():
            for name in stage or []:
                n = rundir.remove_stage(name)
                typer.echo(f"removed stage {name}: {n} file(s) from {rundir.stage_dir(name)}")
            if cache:
                n = rundir.remove_cache()
                typer.echo(f"removed the request cache: {n} file(s) from {rundir.path}")
    except (AmcError, OSError) as exc:
        fail(exc)
