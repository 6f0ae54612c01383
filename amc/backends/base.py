"""The one small protocol every engine speaks.

A stage builds a batch of :class:`GenerationRequest`; an engine answers each with a :class:`GenerationResponse`
holding ``n`` :class:`Completion`. Engines know no stage. The run engine wraps every backend in a request cache
(:mod:`amc.engine.cache`), so a stage never talks to an engine directly.

Design points the real engines need (vLLM, OpenAI-compatible servers, transformers):
- ``n`` samples are one request (vLLM ``SamplingParams(n=...)``, OpenAI ``n``, transformers
  ``num_return_sequences``);
- ``continue_final_message``: the last message is a partial assistant turn to continue (resampling from a step);
- ``response_schema``: a JSON schema for guided decoding / ``response_format`` where supported;
- a completion cut off by ``max_tokens`` has ``finish_reason == "length"`` and is never graded as a success;
- a request that fails after retries comes back with ``error`` set, never as an exception.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from amc.records import Message

Role = Literal["actor", "injector", "annotator", "refiner"]
FinishReason = Literal["stop", "length", "error"]


class SamplingParams(BaseModel):
    """Sampling settings of one request. ``seed`` is derived from (run seed, row id, sample index)."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=1024, ge=1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


class GenerationRequest(BaseModel):
    """One prompt to an engine, addressed by ``id`` (row id and purpose, never the prompt text)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    role: Role
    messages: list[Message]
    params: SamplingParams = Field(default_factory=SamplingParams)
    continue_final_message: bool = False
    response_schema: dict[str, Any] | None = None
    template: str = Field(default="", description="Prompt template name@version, part of the cache key.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Structured facts the prompt was rendered from. Real engines ignore it; only the offline "
        "`sim` stand-in reads it. Not part of the cache key.",
    )


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    finish_reason: FinishReason = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class GenerationResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str
    completions: list[Completion] = Field(default_factory=list)
    error: str | None = None
    engine: str = ""
    model: str = ""
    cached: bool = False
    retryable: bool = Field(
        default=False,
        description="The engine could not be reached after its retries (transport error, timeout, 429, 5xx): an "
        "outage, asked again by the next build. Never cached.",
    )

    @property
    def ok(self) -> bool:
        """True when the engine answered (a truncated completion is still an answer, marked 'length')."""
        return self.error is None and len(self.completions) > 0


@runtime_checkable
class Backend(Protocol):
    """An inference engine. ``generate`` must return one response per request, in order, and never raise for a
    single failed request (it sets ``error`` instead)."""

    engine: str
    model: str
    revision: str | None

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]: ...

    def close(self) -> None: ...
