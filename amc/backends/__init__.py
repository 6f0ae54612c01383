"""Engines behind one protocol (see :mod:`amc.backends.base`). ``create`` builds one from a model block.

Heavy engines are imported lazily, so that ``import amc`` never pulls vLLM, torch or an HTTP client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from amc.backends.base import (
    Backend,
    Completion,
    GenerationRequest,
    GenerationResponse,
    Message,
    SamplingParams,
)

if TYPE_CHECKING:
    from amc.config import ModelConfig

# engine name -> "module:class"; each class takes (cfg: ModelConfig) in its constructor.
ENGINES: dict[str, str] = {
    "sim": "amc.backends.sim:SimBackend",
    "vllm": "amc.backends.vllm:VLLMBackend",
    "openai": "amc.backends.openai:OpenAIBackend",
    "transformers": "amc.backends.transformers:TransformersBackend",
}


def create(cfg: ModelConfig) -> Backend:
    """Build the engine a model block names, e.g. ``create(ModelConfig(engine="sim"))``."""
    module_name, _, cls_name = ENGINES[cfg.engine].partition(":")
    cls = getattr(import_module(module_name), cls_name)
    return cls(cfg)


__all__ = [
    "Backend",
    "Completion",
    "GenerationRequest",
    "GenerationResponse",
    "Message",
    "SamplingParams",
    "ENGINES",
    "create",
]
