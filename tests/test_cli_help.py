"""`--help` of every amc command at 80 columns: long option names whole, no `<bool>` placeholder on flags."""

from __future__ import annotations

import click
import typer
from typer.testing import CliRunner

from amc.cli import app


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = [(path, group)]
    for name, cmd in (getattr(group, "commands", None) or {}).items():  # typer's groups are not click.Group
        out += _commands(cmd, (*path, name))
    return out


def test_every_help_shows_whole_option_names_and_no_bool_placeholder():
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert len(commands) > 10
    runner = CliRunner()
    for path, cmd in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                for name in (*param.opts, *param.secondary_opts):
                    assert name in result.output, (path, name)
