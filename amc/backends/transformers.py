"""The ``transformers`` engine: a local ``AutoModelForCausalLM`` on CPU or GPU, no server, no vLLM.

Requests are expanded into one row per sample and generated in left-padded batches of ``batch_size`` rows. Each
row samples with its own ``torch.Generator`` seeded from the request's seed and the sample index, so a seeded
request gives the same samples whatever else shares its batch (the sampling is done by a logits processor that
leaves one token standing, and ``generate`` then picks it greedily). A completion that used its whole
``max_tokens`` without reaching EOS has ``finish_reason == "length"``.

A request with a ``response_schema`` is constrained to it as vLLM constrains it: the schema is compiled by
xgrammar (the grammar engine vLLM uses; it comes with the ``transformers`` extra) into a per-row matcher whose
token mask is applied before the row samples, compact JSON (no free whitespace), ending at EOS once the JSON is
complete. Without xgrammar installed such requests fail with a message saying so, rather than silently generating
unconstrained text.

>>> backend = TransformersBackend(ModelConfig(engine="transformers", model="path/to/model"))  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import json
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amc.backends._common import (
    cut_at_stop,
    describe_error,
    encode_prompt,
    error_response,
    ok_response,
    prefix_order,
    render_chat,
)
from amc.backends.base import Completion, FinishReason, GenerationRequest, GenerationResponse, SamplingParams

if TYPE_CHECKING:
    import torch

    from amc.config import ModelConfig

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "float": "float32", "float16": "float16", "half": "float16", "bfloat16": "bfloat16"}


@dataclass
class _Row:
    """One sample to generate: request ``req`` (index into the batch of requests), sample ``index``."""

    req: int
    index: int
    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    seed: int
    grammar: Any = None  # a compiled xgrammar grammar (the request's response_schema), or None
    completion: Completion | None = None
    error: str | None = None
    tokens: list[int] = field(default_factory=list)


def row_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a request seeded with ``seed`` (distinct per sample, stable across runs)."""
    return (seed * 1_000_003 + index) % (2**63)


class _RowSampler:
    """Logits processor that samples one token per row with that row's temperature, top-p and generator, and
    masks every other token, so greedy search in ``generate`` takes exactly the sampled token.

    ``matchers`` (one per row, None for an unconstrained row) are xgrammar grammar matchers: a constrained row
    samples only among the tokens its grammar allows next, the matcher is told the chosen token, and once the
    grammar is complete the row gets EOS (``eos``)."""

    def __init__(
        self,
        params: list[SamplingParams],
        generators: list[torch.Generator],
        matchers: list[Any] | None = None,
        eos: int = 0,
    ):
        self.params, self.generators = params, generators
        self.matchers = matchers  # None when no row of the batch is constrained
        self.eos = eos
        self._bitmask: Any = None

    def _constrain(self, scores: torch.Tensor) -> tuple[torch.Tensor, set[int]]:
        """Scores (float) with every token a row's grammar forbids at -inf; the rows whose grammar is complete."""
        import xgrammar as xgr

        scores = scores.float()
        if self._bitmask is None:
            self._bitmask = xgr.allocate_token_bitmask(scores.shape[0], scores.shape[1])
        live, done = [], set()
        for r, matcher in enumerate(self.matchers or []):  # called only when there are matchers
            if matcher is None:
                continue
            if matcher.is_terminated():
                done.add(r)
            else:
                matcher.fill_next_token_bitmask(self._bitmask, r)
                live.append(r)
        if live:
            scores = scores.cpu().clone()
            xgr.apply_token_bitmask_inplace(scores, self._bitmask, indices=live)
        return scores, done

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        device = scores.device
        done: set[int] = set()
        if self.matchers is not None:
            scores, done = self._constrain(scores)
        chosen = torch.empty(scores.shape[0], dtype=torch.long)
        for r, (p, gen) in enumerate(zip(self.params, self.generators, strict=True)):
            if r in done:
                chosen[r] = self.eos
                continue
            logits = scores[r].float()
            if p.temperature <= 0.0:
                chosen[r] = int(torch.argmax(logits))
                continue
            probs = torch.softmax(logits / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                # keep the smallest set whose mass reaches top_p (the first token always stays)
                drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= p.top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            chosen[r] = int(torch.multinomial(probs.cpu(), 1, generator=gen))
        if self.matchers is not None:
            for r, matcher in enumerate(self.matchers):
                if matcher is not None and r not in done and not matcher.accept_token(int(chosen[r])):
                    raise RuntimeError(f"the grammar refused token {int(chosen[r])} it had allowed")  # pragma: no cover
        masked = torch.full(scores.shape, float("-inf"), device=device)
        masked.scatter_(1, chosen.to(device).unsqueeze(1), 0.0)
        return masked


class TransformersBackend:
    """Local generation with ``transformers``. Settings used from the model block: ``model``, ``revision``,
    ``device``, ``dtype``, ``batch_size`` (rows per forward pass) and ``max_model_len`` (prompt + completion)."""

    engine = "transformers"

    def __init__(self, cfg: ModelConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from amc.models import resolve_model

        self.cfg = cfg
        self.model = cfg.model
        self.revision = cfg.revision
        self.device = torch.device(cfg.device)
        source = resolve_model(cfg.model)  # a named model (smollm2-135m-instruct) becomes its folder
        self.tokenizer: Any = AutoTokenizer.from_pretrained(source, revision=cfg.revision)
        self.tokenizer.padding_side = "left"
        dtype: Any = "auto" if cfg.dtype == "auto" else getattr(torch, _DTYPES.get(cfg.dtype, cfg.dtype))
        lm: Any = AutoModelForCausalLM.from_pretrained(source, revision=cfg.revision, dtype=dtype)
        self._lm: Any = lm.to(self.device).eval()
        eos = self._lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self._eos_ids = sorted(eos_ids)
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self._eos_ids[0] if self._eos_ids else 0)
        self._rng = random.Random()  # seeds for unseeded requests
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}  # compiled response schemas, by their canonical JSON

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The compiled xgrammar grammar of a JSON schema (compact JSON, as the vllm engine asks for)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            try:
                import xgrammar as xgr
            except ImportError as exc:
                raise RuntimeError(
                    "a response_schema on the transformers engine needs xgrammar "
                    "(pip install 'amc[transformers]' or pip install xgrammar)"
                ) from exc
            if self._grammar_compiler is None:
                vocab = int(self._lm.get_output_embeddings().weight.shape[0])  # the width of the logits
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=vocab, stop_token_ids=self._eos_ids
                )
                self._grammar_compiler = xgr.GrammarCompiler(info)
            self._grammars[key] = self._grammar_compiler.compile_json_schema(schema, any_whitespace=False)
        return self._grammars[key]

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, revision={self.revision!r}, device={str(self.device)!r})"

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        """One response per request, in order; a request that cannot be served comes back with ``error`` set."""
        if self._lm is None:
            raise RuntimeError("this TransformersBackend is closed")
        errors: dict[int, str] = {}
        rows: list[_Row] = []
        limit = self.cfg.max_model_len
        for i, req in enumerate(requests):
            try:
                prompt = encode_prompt(self.tokenizer, render_chat(self.tokenizer, req))
            except Exception as exc:  # a template that rejects these messages fails this request only
                errors[i] = f"could not render the chat template: {describe_error(exc)}"
                continue
            try:
                grammar = self._grammar(req.response_schema) if req.response_schema is not None else None
            except Exception as exc:  # no xgrammar, or a schema it cannot compile: this request only
                errors[i] = f"could not constrain to the response schema: {describe_error(exc)}"
                continue
            max_tokens = req.params.max_tokens
            if limit is not None:
                if len(prompt) >= limit:
                    errors[i] = f"prompt has {len(prompt)} tokens, max_model_len is {limit}"
                    continue
                max_tokens = min(max_tokens, limit - len(prompt))
            base = req.params.seed if req.params.seed is not None else self._rng.getrandbits(63)
            rows += [
                _Row(i, j, prompt, req.params, max_tokens, row_seed(base, j), grammar) for j in range(req.params.n)
            ]

        # Similar lengths and shared prefixes together: less padding per batch.
        order = sorted(prefix_order([r.prompt for r in rows]), key=lambda k: rows[k].max_tokens)
        ordered = [rows[k] for k in order]
        size = self.cfg.batch_size
        for start in range(0, len(ordered), size):
            self._run_batch(ordered[start : start + size])

        by_request: dict[int, list[_Row]] = {}
        for row in rows:
            by_request.setdefault(row.req, []).append(row)
        responses = []
        for i, req in enumerate(requests):
            failed = errors.get(i) or next((r.error for r in by_request.get(i, []) if r.error), None)
            if failed:
                responses.append(error_response(req, self.engine, self.model, failed))
            else:
                done = sorted(by_request[i], key=lambda r: r.index)
                completions = [r.completion for r in done if r.completion is not None]
                responses.append(ok_response(req, self.engine, self.model, completions))
        return responses

    def _run_batch(self, rows: list[_Row]) -> None:
        try:
            self._generate_rows(rows)
        except Exception as exc:
            if len(rows) == 1:
                rows[0].error = describe_error(exc)
                return
            log.warning("batch of %d rows failed (%s); retrying them one by one", len(rows), describe_error(exc))
            for row in rows:
                self._run_batch([row])

    def _generate_rows(self, rows: list[_Row]) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        width = max(len(r.prompt) for r in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            input_ids[k, width - len(row.prompt) :] = torch.tensor(row.prompt, dtype=torch.long)
            attention[k, width - len(row.prompt) :] = 1
        generators = [torch.Generator().manual_seed(r.seed) for r in rows]
        matchers = None
        if any(r.grammar is not None for r in rows):
            import xgrammar as xgr

            matchers = [None if r.grammar is None else xgr.GrammarMatcher(r.grammar) for r in rows]
        eos = self._eos_ids[0] if self._eos_ids else self._pad_id
        sampler = _RowSampler([r.params for r in rows], generators, matchers, eos)
        max_new = max(r.max_tokens for r in rows)
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=self._eos_ids or None,
            pad_token_id=self._pad_id,
        )
        with torch.inference_mode():
            out = self._lm.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        generated = out[:, width:].tolist()
        for row, tokens in zip(rows, generated, strict=True):
            row.completion = self._completion(row, tokens[: row.max_tokens])

    def _completion(self, row: _Row, tokens: list[int]) -> Completion:
        end = next((k for k, t in enumerate(tokens) if t in self._eos_ids), None)
        hit_eos = end is not None
        if end is not None:
            tokens = tokens[: end + 1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        text, hit_stop = cut_at_stop(text, row.params.stop)
        count = len(encode_prompt(self.tokenizer, text)) if hit_stop else len(tokens)
        finish: FinishReason = "stop" if hit_eos or hit_stop or len(tokens) < row.max_tokens else "length"
        return Completion(text=text, finish_reason=finish, prompt_tokens=len(row.prompt), completion_tokens=count)

    # ------------------------------------------------------------------------------------------ close
    def close(self) -> None:
        """Drop the model and free its memory (GPU memory too)."""
        import torch

        self._lm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
