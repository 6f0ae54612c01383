"""The local executor: shard tasks in this process, one after another, or in forked worker processes.

With ``workers=1`` (the default) every shard runs in the driver's process through the driver's request cache,
and an engine stays loaded from one shard to the next. With ``workers > 1``, the shards of a stage whose engines
hold no model in the process (``sim``, or an OpenAI-compatible server: :attr:`StageResources.light`) run in that
many forked processes, each with its own engine handles; a stage with a local model (vLLM, transformers) still
runs in the driver, because a second copy of the model would not fit beside the first.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

from amc.config import PipelineConfig
from amc.engine.cache import RequestCache
from amc.engine.executors.base import Engines, Executor, ShardOutcome, ShardTask, WorkerCache, run_shard
from amc.records import Problem
from amc.stages import Stage, get_stage


class LocalExecutor(Executor):
    """Shards in this process (``workers=1``) or across ``workers`` forked processes for light stages."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._engines: Engines | None = None

    def start(self, cfg: PipelineConfig, cache: RequestCache, problems: list[Problem]) -> None:
        self.cfg, self.cache = cfg, cache
        self.problems = {p.id: p for p in problems}
        self._engines = Engines(cfg, cache)

    def run(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[ShardOutcome]:
        assert self._engines is not None, "start() first"
        if self.workers > 1 and stage.resources(self.cfg).light:
            yield from self._run_forked(stage, tasks)
            return
        for task in tasks:
            yield run_shard(stage, task, self.cfg, self.problems, self._engines)

    def _run_forked(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[ShardOutcome]:
        global _WORKER
        # The workers inherit the config and the problems through fork instead of receiving them with every task.
        _WORKER = {"cfg": self.cfg, "problems": self.problems, "cache_path": str(self.cache.path)}
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(self.workers, initializer=_init_worker) as pool:
            # imap_unordered pulls tasks lazily (a few ahead), so input shards are read as workers free up.
            yield from pool.imap_unordered(_forked_shard, ((stage.name, t) for t in tasks), chunksize=1)
        _WORKER = None

    def release_unused(self, later: list[Stage]) -> None:
        if self._engines is not None:
            self._engines.release_unused(later)

    def close(self) -> None:
        if self._engines is not None:
            self._engines.close()
            self._engines = None


_WORKER: dict[str, Any] | None = None  # set in the driver just before forking; read by the workers
_ENGINES: Engines | None = None  # a worker's own engine handles, kept from one shard to the next


def _init_worker() -> None:
    global _ENGINES
    assert _WORKER is not None
    _ENGINES = Engines(_WORKER["cfg"], WorkerCache(_WORKER["cache_path"]))


def _forked_shard(item: tuple[str, ShardTask]) -> ShardOutcome:
    name, task = item
    assert _WORKER is not None and _ENGINES is not None
    return run_shard(get_stage(name), task, _WORKER["cfg"], _WORKER["problems"], _ENGINES)
