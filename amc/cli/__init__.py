"""The ``amc`` command line: thin. It parses, loads the pipeline file, calls the library and prints.

One module per command group; each registers its commands on ``amc.cli.common.app`` when imported here.
"""

from __future__ import annotations

import sys

from amc.cli import build, clean, evaluate, loop, models, publish, schema, train, view  # noqa: F401  (registers the commands)
from amc.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    sys.exit(app())
