"""The executor seam: a shard task is ``(stage, shard index, input rows) -> shard outcome`` with its own engines.

The driver (:class:`amc.engine.runner.Runner`) plans, reads input shards, and writes every output file, manifest
and cache entry; an executor only runs shard tasks and hands back their outcomes, in any order. The same
:func:`run_shard` runs in the driver's process (local), in forked worker processes (local, ``workers > 1``) and on
Ray workers; the stage functions never know which.

A worker away from the driver cannot write the run's request cache (SQLite on a network disk with several writers
corrupts). It reads the cache where it can reach the file and keeps the answers it got from an engine beside
it (:class:`WorkerCache`); they travel back with the shard's outcome and the driver stores them before it writes
the shard, so a rerun finds them.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amc.backends import create
from amc.config import ModelConfig, PipelineConfig
from amc.engine.cache import CachedBackend, RequestCache
from amc.records import Problem
from amc.stages import Stage, StageContext, StageResult

# Requests handed to an engine at once (each committed to the cache when answered). vLLM's throughput grows with
# the batch (with n=4, 256 requests are 1,024 sequences to schedule together); a killed build loses at most one
# batch of answers, never a finished shard.
ENGINE_BATCH = 256


@dataclass
class ShardTask:
    """One shard of one stage to build: its index and its input rows (problems, or the input stage's rows)."""

    stage: str
    index: int
    rows: list[Any]
    # `--retry-rejects`: row ids of the shard's rejects that came from cached answers; the requests that made
    # them skip the cache (Stage.asks_again) and go to the engine again
    refresh: frozenset[str] = frozenset()


@dataclass
class ShardOutcome:
    """What a shard task hands back to the driver: the stage's result and what it cost."""

    index: int
    result: StageResult
    made: int = 0  # requests sent to an engine
    cached: int = 0  # requests answered from the cache
    failed: int = 0  # requests answered with an error
    usage: dict[str, int] = field(default_factory=dict)  # engine token counts, where the engine reports them
    cache_entries: list[tuple[str, str]] = field(default_factory=list)  # new answers, for the driver's cache


class Engines:
    """Cache-wrapped engines by model block, created on first use (an engine starts on the first cache miss)."""

    def __init__(self, cfg: PipelineConfig, cache: Any):
        self.cfg, self.cache = cfg, cache
        self._live: dict[str, CachedBackend] = {}
        self.refresh: Callable[[str], bool] | None = None  # set by run_shard for a shard's --retry-rejects rows

    @staticmethod
    def _key(model_cfg: Any) -> str:
        return json.dumps(model_cfg.model_dump(), sort_keys=True)

    def get(self, role: str | ModelConfig) -> CachedBackend:
        """The engine of a role ('actor', 'annotator', ...) or of an explicit model block."""
        model_cfg = role if isinstance(role, ModelConfig) else self.cfg.models.for_role(role)
        key = self._key(model_cfg)
        if key not in self._live:
            self._live[key] = CachedBackend(
                None,
                self.cache,
                chunk_size=ENGINE_BATCH,
                factory=lambda: create(model_cfg),
                engine=model_cfg.engine,
                model=model_cfg.model,
                revision=model_cfg.revision,
                identity=model_cfg.identity(),
            )
        self._live[key].refresh = self.refresh
        return self._live[key]

    def set_refresh(self, refresh: Callable[[str], bool] | None) -> None:
        """Which request ids skip the cache (``--retry-rejects``), for every engine; ``None``: none does."""
        self.refresh = refresh
        for backend in self._live.values():
            backend.refresh = refresh

    def counters(self) -> tuple[int, int, int]:
        """Requests (made, cached, failed) so far, over every engine."""
        live = self._live.values()
        return sum(b.made for b in live), sum(b.cached for b in live), sum(b.failed for b in live)

    def usage(self) -> Counter[str]:
        """Token counts so far, over every started engine that reports them."""
        total: Counter[str] = Counter()
        for b in self._live.values():
            if b.started:
                total.update(getattr(b.backend, "usage", None) or {})
        return total

    def release_unused(self, later: Iterable[Stage]) -> None:
        """Free engines (and their GPU memory) that none of ``later`` uses."""
        needed = {self._key(m) for s in later for ms in s.engines(self.cfg).values() for m in ms}
        for key in [k for k in self._live if k not in needed]:
            self._live.pop(key).close()

    def close(self) -> None:
        self.release_unused([])


def run_shard(
    stage: Stage, task: ShardTask, cfg: PipelineConfig, problems: dict[str, Problem], engines: Engines
) -> ShardOutcome:
    """The shard task: run ``stage`` on one shard's rows with ``engines``; counts what it cost."""
    made0, cached0, failed0 = engines.counters()
    usage0 = engines.usage()
    if task.refresh:
        engines.set_refresh(lambda request_id: stage.asks_again(request_id, task.refresh))
    try:
        result = stage.run(task.rows, StageContext(cfg=cfg, get_backend=engines.get, problems=problems))
    finally:
        engines.set_refresh(None)
    made, cached, failed = engines.counters()
    usage = engines.usage()
    usage.subtract(usage0)
    entries = engines.cache.drain() if isinstance(engines.cache, WorkerCache) else []
    return ShardOutcome(
        task.index,
        result,
        made=made - made0,
        cached=cached - cached0,
        failed=failed - failed0,
        usage={k: v for k, v in usage.items() if v},
        cache_entries=entries,
    )


class WorkerCache:
    """A shard worker's view of the request cache: the run's cache file read-only (when this machine can reach
    it), plus the answers this worker got from its engines, which :meth:`drain` hands to the driver."""

    def __init__(self, path: str | Path | None):
        self._mine: dict[str, str] = {}
        self._pending: list[tuple[str, str]] = []
        self._db: sqlite3.Connection | None = None
        if path is not None and Path(path).is_file():
            try:
                self._db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, check_same_thread=False)
                self._db.execute("SELECT 1 FROM responses LIMIT 1").fetchall()
            except sqlite3.Error:
                self._db = None  # unreadable from here: this worker asks its engines instead

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found = {k: self._mine[k] for k in keys if k in self._mine}
        rest = [k for k in keys if k not in found]
        if self._db is not None:
            for start in range(0, len(rest), 500):
                chunk = rest[start : start + 500]
                marks = ",".join("?" * len(chunk))
                try:
                    rows = self._db.execute(f"SELECT key, body FROM responses WHERE key IN ({marks})", chunk)
                    found.update(dict(rows.fetchall()))
                except sqlite3.Error:
                    break
        return found

    def put_many(self, items: list[tuple[str, str]]) -> None:
        for key, body in items:
            self._mine[key] = body
        self._pending.extend(items)

    def drain(self) -> list[tuple[str, str]]:
        """The answers stored since the last call (the driver writes them into the run's cache)."""
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class Executor:
    """Runs a stage's shard tasks. Subclasses: :class:`~amc.engine.executors.local.LocalExecutor`,
    :class:`~amc.engine.executors.ray.RayExecutor`."""

    name = "base"

    def start(self, cfg: PipelineConfig, cache: RequestCache, problems: list[Problem]) -> None:
        """Called once per build, before the first stage."""
        raise NotImplementedError

    def run(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[ShardOutcome]:
        """Run every task; yield each outcome as it finishes (any order). ``tasks`` is consumed lazily where the
        executor can, so the driver need not hold every input shard at once."""
        raise NotImplementedError

    def release_unused(self, later: list[Stage]) -> None:
        """Free engines none of ``later`` needs (between stages)."""

    def close(self) -> None:
        """Called once per build, after the last stage (also after an error)."""
