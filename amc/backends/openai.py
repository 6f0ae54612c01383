"""The ``openai`` engine: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, SGLang, a hosted API).

An async ``httpx`` client sends up to ``max_concurrency`` requests at a time. A 429, a 5xx, a timeout, a dropped
connection, a body that is not JSON or has no choices is retried with exponential backoff and jitter (a
``Retry-After`` header sets the wait); after ``max_retries`` retries the request comes back with ``error`` set, never
as an exception. ``n`` samples are one call when the server supports it (``supports_n``), else ``n`` calls merged;
a server that silently returns fewer choices than asked is topped up with more calls.

vLLM's own fields are used where a request needs them: ``continue_final_message``/``add_generation_prompt`` to
continue a partial assistant turn. ``response_schema`` is sent as ``response_format={"type": "json_schema", ...}``.

The API key is read from the environment variable named by ``api_key_env`` at each ``generate`` call; it is kept
in no attribute, and is masked in every error message.

>>> cfg = ModelConfig(engine="openai", model="m", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
>>> backend = OpenAIBackend(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from amc.backends._common import describe_error, error_response, messages_as_dicts, ok_response, redact
from amc.backends.base import Completion, FinishReason, GenerationRequest, GenerationResponse
from amc.redact import redact_text

if TYPE_CHECKING:
    from amc.config import ModelConfig

# Statuses worth another try: throttling, timeouts, conflicts and every server-side failure.
_RETRY_STATUS = {408, 409, 425, 429}
_BODY_CHARS = 300
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure another try will not fix (400, 401, 404, ...)."""


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _finish_reason(raw: Any) -> FinishReason:
    if raw == "length":
        return "length"
    if raw == "content_filter":
        return "error"
    return "stop"  # "stop", "eos", "tool_calls", None (some servers omit it)


class OpenAIBackend:
    """Client of an OpenAI-compatible server. Settings used from the model block: ``model``, ``base_url``,
    ``api_key_env``, ``max_concurrency``, ``timeout``, ``max_retries``, ``retry_backoff``, ``retry_max_backoff``,
    ``supports_n`` and ``extra_body``.

    ``usage`` sums what the server reported over the backend's life: ``prompt_tokens``, ``completion_tokens``,
    ``requests`` (successful HTTP calls), ``retries`` and ``failed`` (requests given up on).
    """

    engine = "openai"

    def __init__(self, cfg: ModelConfig):
        if not cfg.base_url:
            raise ValueError("the openai engine needs base_url, e.g. http://127.0.0.1:8000/v1")
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            if not _ENV_NAME.fullmatch(cfg.api_key_env):  # a key pasted in by mistake: never echo it
                raise ValueError(
                    "api_key_env must be the NAME of an environment variable (it looks like a key "
                    "itself: put the key in the environment, never in the pipeline file)"
                )
            raise ValueError(f"environment variable {cfg.api_key_env} (api_key_env) is not set")
        self.cfg = cfg
        self.model = cfg.model
        self.revision = cfg.revision
        self.base_url = cfg.base_url.rstrip("/")
        self.usage: dict[str, int] = {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "requests": 0,
            "retries": 0,
            "failed": 0,
        }
        self._lock = threading.Lock()
        self._jitter = random.Random()

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={redact_text(self.base_url)!r}, "
            f"api_key_env={self.cfg.api_key_env!r})"
        )

    # ------------------------------------------------------------------------------------------ sync surface
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        """One response per request, in order. Runs its own event loop; callable from any thread, and from code
        that already runs a loop (then the work happens in a helper thread)."""
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests))
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests)).result()

    def close(self) -> None:
        """Nothing is held between calls: each ``generate`` opens and closes its own connection pool."""

    # ------------------------------------------------------------------------------------------ async core
    async def agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        """The async form of :meth:`generate`, for callers that already run an event loop."""
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(
            max_connections=self.cfg.max_concurrency, max_keepalive_connections=self.cfg.max_concurrency
        )
        gate = asyncio.Semaphore(self.cfg.max_concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.cfg.timeout), limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, gate, r, key) for r in requests)))

    async def _one(
        self, client: httpx.AsyncClient, gate: asyncio.Semaphore, request: GenerationRequest, key: str
    ) -> GenerationResponse:
        try:
            completions = await self._samples(client, gate, request, key)
        except Exception as exc:  # every failure of one request is data, never an exception
            self._count(failed=1)
            message = str(exc) if isinstance(exc, (_Retryable, _Fatal)) else describe_error(exc)
            resp = error_response(request, self.engine, self.model, redact(message, [key]))
            # an outage (no answer after every retry) is asked again by the next build; a refusal (4xx) is not
            return resp.model_copy(update={"retryable": isinstance(exc, _Retryable)})
        return ok_response(request, self.engine, self.model, completions)

    async def _samples(
        self, client: httpx.AsyncClient, gate: asyncio.Semaphore, request: GenerationRequest, key: str
    ) -> list[Completion]:
        n, seed = request.params.n, request.params.seed
        completions: list[Completion] = []
        while len(completions) < n:  # each call yields at least one choice, so at most n calls
            want = n - len(completions) if self.cfg.supports_n else 1
            call_seed = None if seed is None else seed + len(completions)
            got = await self._call(client, gate, self._body(request, want, call_seed), key)
            completions.extend(got[:want])
        return completions

    def _body(self, request: GenerationRequest, n: int, seed: int | None) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages_as_dicts(request),
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
        }
        if self.cfg.supports_n:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if p.stop:
            body["stop"] = list(p.stop)
        if request.continue_final_message:
            # vLLM's chat-template switches: leave the final assistant message open and continue it.
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if request.response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.response_schema},
            }
        body.update(self.cfg.extra_body)
        return body

    async def _call(
        self, client: httpx.AsyncClient, gate: asyncio.Semaphore, body: dict[str, Any], key: str
    ) -> list[Completion]:
        attempts = self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            retry_after = None
            try:
                async with gate:
                    response = await client.post(f"{self.base_url}/chat/completions", json=body)
                return self._parse(response, key)
            except _Fatal:
                raise
            except _Retryable as exc:
                last, retry_after = str(exc), exc.retry_after
            except (httpx.TimeoutException, httpx.TransportError, httpx.DecodingError) as exc:
                last = describe_error(exc, [key])
            if attempt + 1 < attempts:
                self._count(retries=1)
                await asyncio.sleep(self._delay(attempt, retry_after))  # outside the gate: waiting holds no slot
        raise _Retryable(f"gave up after {attempts} attempts; last: {last}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, at least what the server asked for, at most ``retry_max_backoff``."""
        ceiling = min(self.cfg.retry_max_backoff, self.cfg.retry_backoff * 2**attempt)
        with self._lock:
            wait = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.cfg.retry_max_backoff)

    def _parse(self, response: httpx.Response, key: str) -> list[Completion]:
        status = response.status_code
        if status != 200:
            text = redact(response.text, [key])[:_BODY_CHARS]
            message = f"HTTP {status}: {text}"
            if status in _RETRY_STATUS or status >= 500:
                raise _Retryable(message, parse_retry_after(response.headers))
            raise _Fatal(message)
        try:
            data = response.json()
        except ValueError:
            raise _Retryable(f"malformed JSON body: {redact(response.text, [key])[:80]!r}") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise _Retryable("response has no choices")
        try:
            choices = sorted(choices, key=lambda c: c.get("index", 0))
            texts = [(c["message"].get("content") or "", _finish_reason(c.get("finish_reason"))) for c in choices]
        except (AttributeError, KeyError, TypeError):
            raise _Retryable("response choices have no message") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        self._count(requests=1, prompt_tokens=prompt_tokens or 0, completion_tokens=completion_tokens or 0)
        per_choice = completion_tokens if len(choices) == 1 else None  # servers report only the sum over choices
        return [
            Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=per_choice)
            for text, finish in texts
        ]

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self.usage[name] += int(amount)
