"""What a stage needs to run a shard: its engines by role, GPUs per engine replica, and its CPU work.

Executors read this and nothing stage-specific: the local executor decides whether shards may run in parallel
processes, the Ray executor whether a stage's shards go to an actor pool (one engine replica per GPU group) or to
plain CPU tasks. Like distilabel's ``StepResources``, but derived from the pipeline file, never hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amc.config import ModelConfig

# Engines that hold no model in this process: a shard task may create its own handle cheaply, many at a time.
LIGHT_ENGINES = frozenset({"sim", "openai"})


@dataclass(frozen=True)
class StageResources:
    """Declared needs of one stage under one config.

    >>> r = StageResources.of({"actor": [ModelConfig(engine="vllm", tensor_parallel_size=2)]}, ("grading",))
    >>> r.gpus_per_replica, r.light
    (2, False)
    """

    engines: dict[str, list[ModelConfig]] = field(default_factory=dict)  # role -> model blocks it may call
    gpus_per_replica: int = 0  # GPUs one replica of the stage's engines needs (0: none)
    cpu_work: tuple[str, ...] = ()  # CPU-heavy work besides the engines, e.g. ("grading", "step checks")

    @classmethod
    def of(cls, engines: dict[str, list[ModelConfig]], cpu_work: tuple[str, ...] = ()) -> StageResources:
        """Resources from the model blocks a stage calls: a vLLM engine needs ``tensor_parallel_size`` GPUs, a
        transformers engine on a CUDA device one; blocks of different roles share a replica's GPU group."""
        gpus = 0
        for blocks in engines.values():
            for m in blocks:
                if m.engine == "vllm":
                    gpus = max(gpus, m.tensor_parallel_size)
                elif m.engine == "transformers" and m.device.startswith("cuda"):
                    gpus = max(gpus, 1)
        return cls(engines=dict(engines), gpus_per_replica=gpus, cpu_work=tuple(cpu_work))

    @property
    def model_blocks(self) -> list[ModelConfig]:
        """Every model block, once each."""
        seen: dict[str, ModelConfig] = {}
        for blocks in self.engines.values():
            for m in blocks:
                seen.setdefault(m.model_dump_json(), m)
        return list(seen.values())

    @property
    def light(self) -> bool:
        """True when no engine loads a model into the process (sim, or a server reached over HTTP): shards can then
        run in many processes at once, each with its own engine handles."""
        return all(m.engine in LIGHT_ENGINES for m in self.model_blocks)
