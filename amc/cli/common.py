"""What every command module shares: the typer app, the error console, common options, loading a pipeline file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from amc.errors import AmcError

# Plain click help (rich_markup_mode=None, inherited by every sub-app): rich's option table shows a `<bool>` type
# on flags and cuts long option names ("--gradient-checkpoint…") at 80 columns; click's help does neither.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Build step-level critique datasets for math.",
)
console = Console(stderr=True)
PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Pipeline file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set stages.filter.k=2")]


def fail(exc: Exception | str) -> NoReturn:
    """Print one red error line and exit 2 (never a traceback for an expected error)."""
    # escaped: an error text is not markup ("pip install 'amc[smollm2]'" lost its "[smollm2]")
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)  # paths unbroken
    raise typer.Exit(code=2)


def load_pipeline(config: Path, overrides: list[str] | None):
    """Load and validate a pipeline file with its ``--set`` overrides, or fail with one clear line."""
    from amc.config import load_config

    try:
        return load_config(config, overrides or [])
    except AmcError as exc:
        fail(exc)
