"""Where problems come from: a synthetic generator, local files, or Hugging Face datasets.

``load_problems`` is the one entry point the ``problems`` stage needs; it dispatches on the source's ``kind``.
Bad input raises ``amc.errors.InputError`` naming the file, row and field, before any engine is started.
"""

from __future__ import annotations

from amc.config import FileSource, HubSource, SyntheticSource
from amc.errors import InputError
from amc.records import Problem
from amc.sources.hub import load_hub_problems
from amc.sources.local import load_file_problems
from amc.sources.synthetic import generate_problems

__all__ = ["generate_problems", "load_file_problems", "load_hub_problems", "load_problems"]


def load_problems(cfg: SyntheticSource | FileSource | HubSource, seed: int) -> list[Problem]:
    """The problems a source config describes; ``seed`` (the run seed) only matters to the synthetic source.

    >>> [p.id for p in load_problems(SyntheticSource(count=2), seed=0)]
    ['synthetic-00000', 'synthetic-00001']
    """
    if cfg.kind == "synthetic":
        problems = generate_problems(cfg, seed)
    elif cfg.kind == "file":
        problems = load_file_problems(cfg)
    elif cfg.kind == "hub":
        problems = load_hub_problems(cfg)
    else:
        raise ValueError(f"unknown source kind {cfg.kind!r}")
    if not problems:  # an empty dataset built from nothing would look finished
        where = getattr(cfg, "path", None) or getattr(cfg, "dataset", None) or getattr(cfg, "preset", cfg.kind)
        raise InputError(str(where), None, None, "the source yields no problem; check the file, split or limit")
    return problems
