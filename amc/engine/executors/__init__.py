"""Executors run shard tasks for the driver: :class:`LocalExecutor` (this machine) or :class:`RayExecutor`
(Ray Data, local or on a cluster). See :mod:`amc.engine.executors.base` for the seam."""

from __future__ import annotations

from amc.engine.executors.base import Engines, Executor, ShardOutcome, ShardTask, WorkerCache, run_shard
from amc.engine.executors.local import LocalExecutor

EXECUTORS = ("local", "ray")


def create_executor(name: str = "local", *, address: str | None = None, workers: int = 1) -> Executor:
    """An executor by name: ``local`` (``workers`` processes for light stages) or ``ray`` (``address``: None
    starts a local Ray instance, ``auto`` joins this machine's cluster, ``ray://host:port`` connects a client)."""
    if name == "local":
        return LocalExecutor(workers=workers)
    if name == "ray":
        from amc.engine.executors.ray import RayExecutor

        return RayExecutor(address=address)
    raise ValueError(f"unknown executor '{name}'; executors are {', '.join(EXECUTORS)}")


__all__ = [
    "EXECUTORS",
    "Engines",
    "Executor",
    "LocalExecutor",
    "ShardOutcome",
    "ShardTask",
    "WorkerCache",
    "create_executor",
    "run_shard",
]
