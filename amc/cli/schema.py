"""`amc schema`: the JSON Schemas of the record kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import app

schema_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the record kinds.")
app.add_typer(schema_app, name="schema")


@schema_app.command("export")
def schema_export(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the schemas.")] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every record kind into DIR."""
    from amc.schemas import export_schemas

    for path in export_schemas(directory):
        typer.echo(f"wrote {path}")


@schema_app.command("check")
def schema_check(directory: Annotated[Path, typer.Option("--dir")] = Path("schemas")) -> None:
    """Exit non-zero when the schemas in DIR differ from the records."""
    from amc.schemas import schema_drift

    drift = schema_drift(directory)
    if drift:
        typer.echo("out of date: " + ", ".join(drift) + " (run `amc schema export`)", err=True)
        raise typer.Exit(code=1)
    typer.echo("schemas are up to date")
