"""`amc models`: the named models (``smollm2-135m-instruct``, ``tiny-llama``) a pipeline file may use as ``model:``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import app, fail
from amc.errors import AmcError

models_app = typer.Typer(no_args_is_help=True, help="Named models: build them once, list them.")
app.add_typer(models_app, name="models")


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="A registered name (see `amc models list`).")],
    to: Annotated[Path | None, typer.Option("--to", help="Also copy the folder here (new or empty).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float32 or bfloat16.")] = "float32",
    force: Annotated[bool, typer.Option("--force", help="Rebuild the cached folder.")] = False,
) -> None:
    """Build a named model once (cached under the user cache dir) and print its folder. Installs nothing: a
    missing package is named with the command that installs it."""
    from amc.models import pull

    try:
        folder = pull(name, dtype, to=to, force=force)
    except AmcError as exc:
        fail(exc)
    typer.echo(str(folder))


@models_app.command("list")
def models_list() -> None:
    """The registered names, what each needs, and where it is cached (or 'not built')."""
    from amc.models import cache_dir, list_models

    for row in list_models():
        where = row["folder"] or ("not built" if row["available"] else f"needs: {row['requires']}")
        typer.echo(f"{row['name']}\t{where}\n    {row['description']}")
    typer.echo(f"cache: {cache_dir() / 'models'}")
