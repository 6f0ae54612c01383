"""`amc view`: browse a run directory or a publish folder in a local web page (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import app, console, fail
from amc.errors import AmcError


@app.command()
def view(
    path: Annotated[Path, typer.Argument(help="A run directory (runs/<name>) or a publish folder.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; loopback unless told otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.")] = 8765,
) -> None:
    """Serve a local, read-only web viewer: funnel, counts and plots, a filterable table of rows, each row's
    steps with their verdicts, refinements and the filter's decision."""
    from amc.view import ViewSource, start

    try:
        src = ViewSource(path)
    except AmcError as exc:
        fail(exc)
    try:
        server, thread = start(src, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can read the data")
    typer.echo(f"amc view: {src.index.num_rows} rows of {src.root} at {server.url} (Ctrl-C stops)")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
