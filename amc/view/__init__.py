"""``amc view``: a local, read-only web viewer of a run directory or a published dataset folder.

>>> from amc.view import ViewSource, start  # doctest: +SKIP
>>> server, _ = start(ViewSource("runs/quickstart"))  # doctest: +SKIP
"""

from amc.view.server import ViewServer, start
from amc.view.source import ViewError, ViewSource

__all__ = ["ViewError", "ViewServer", "ViewSource", "start"]
