"""The openai engine against a real, scripted, misbehaving HTTP server on 127.0.0.1.

The server picks its behaviour from the first message of each request (the "scenario"), counts its hits and
records what it received; every misbehaviour is bounded (it turns good after a fixed number of hits, or the test's
``max_retries`` ends it).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from amc.backends import Backend, GenerationRequest, Message, SamplingParams, create  # noqa: E402
from amc.backends.openai import OpenAIBackend  # noqa: E402
from amc.config import ModelConfig  # noqa: E402

SECRET = "sk-test-0123456789abcdef"


class ScriptedServer:
    """State shared with the handler: hits and received bodies per scenario, concurrency high-water mark."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: dict[str, int] = defaultdict(int)
        self.times: dict[str, list[float]] = defaultdict(list)
        self.bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0


def _good(body: dict[str, Any], count: int | None = None, finish: str = "stop") -> dict[str, Any]:
    n = count if count is not None else body.get("n", 1)
    choices = [
        {
            "index": i,
            "finish_reason": finish,
            "message": {"role": "assistant", "content": f"sample {i} seed={body.get('seed')}"},
        }
        for i in range(n)
    ]
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": choices,
        "usage": {"prompt_tokens": 7, "completion_tokens": 5 * n, "total_tokens": 7 + 5 * n},
    }


def make_handler(state: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            scenario = body["messages"][0]["content"]
            with state.lock:
                state.hits[scenario] += 1
                hit = state.hits[scenario]
                state.times[scenario].append(time.monotonic())
                state.bodies[scenario].append(body)
                state.auth.append(self.headers.get("Authorization"))
                state.paths.append(self.path)
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._answer(scenario, hit, body)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, scenario: str, hit: int, body: dict[str, Any]) -> None:
            if scenario == "throttled" and hit == 1:
                self._json(429, {"error": "slow down"}, {"Retry-After": "1"})
            elif scenario == "flaky" and hit <= 2:
                self._json(500 if hit == 1 else 503, {"error": "oops"})
            elif scenario == "slow" and hit == 1:
                time.sleep(1.0)  # beyond the client's timeout
                self._json(200, _good(body))
            elif scenario == "garbage" and hit == 1:
                self._send(200, b"<html>not json</html>")
            elif scenario == "garbage" and hit == 2:
                self._json(200, {"choices": []})
            elif scenario == "garbage" and hit == 3:
                self._json(200, {"choices": [{"index": 0}]})
            elif scenario.startswith("status-") and hit == 1:  # e.g. "status-408": that status once, then good
                self._json(int(scenario.split("-")[1]), {"error": "try again"})
            elif scenario == "list-body" and hit == 1:
                self._json(200, [])
            elif scenario == "always-empty":
                self._json(200, {"choices": []})
            elif scenario == "always-no-message":
                self._json(200, {"choices": [{"index": 0}]})
            elif scenario == "always-html":
                self._send(200, ("<html>" + "x" * 200 + "</html>").encode())
            elif scenario == "usage-null":
                self._json(200, {**_good(body), "usage": None})
            elif scenario == "no-usage":
                self._json(200, {k: v for k, v in _good(body).items() if k != "usage"})
            elif scenario == "shuffled":  # choices out of index order, one with a null content
                choices = _good(body)["choices"][::-1]
                choices[0]["message"]["content"] = None
                self._json(200, {"choices": choices})
            elif scenario == "filtered":
                self._json(200, _good(body, finish="content_filter"))
            elif scenario == "down":
                self._json(502, {"error": "bad gateway"})
            elif scenario == "rejected":
                # a server that echoes the credentials it was given: the client must not pass them on
                self._json(400, {"error": f"bad request from {self.headers.get('Authorization')}"})
            elif scenario == "truncated":
                self._json(200, _good(body, finish="length"))
            elif scenario == "ignores-n":
                self._json(200, _good(body, count=1))
            elif scenario == "busy":
                time.sleep(0.2)
                self._json(200, _good(body))
            else:
                self._json(200, _good(body))

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[ScriptedServer, str]]:
    state = ScriptedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def backend_for(base_url: str, **overrides: Any) -> OpenAIBackend:
    settings: dict[str, Any] = dict(
        engine="openai",
        model="tiny",
        base_url=base_url,
        max_retries=3,
        retry_backoff=0.01,
        retry_max_backoff=5.0,
        timeout=5.0,
    )
    settings.update(overrides)
    return OpenAIBackend(ModelConfig(**settings))


def req(scenario: str, rid: str | None = None, **params: Any) -> GenerationRequest:
    return GenerationRequest(
        id=rid or scenario,
        role="annotator",
        params=SamplingParams(**params),
        messages=[Message(role="user", content=scenario)],
    )


def test_factory_builds_it_and_it_speaks_the_protocol(server):
    _, url = server
    b = create(ModelConfig(engine="openai", model="tiny", base_url=url))
    assert isinstance(b, OpenAIBackend) and isinstance(b, Backend)
    assert (b.engine, b.model, b.revision) == ("openai", "tiny", None)
    with pytest.raises(ValueError, match="base_url"):
        OpenAIBackend(ModelConfig(engine="openai", model="tiny"))


def test_429_is_retried_after_the_servers_retry_after(server):
    state, url = server
    b = backend_for(url)
    [r] = b.generate([req("throttled")])
    assert r.ok and r.completions[0].text.startswith("sample 0")
    assert state.hits["throttled"] == 2
    first, second = state.times["throttled"]
    # Retry-After: 1 was honoured although the backoff alone would have waited ~0.01 s (a lower bound only).
    assert second - first >= 0.9
    assert b.usage["retries"] == 1


def test_5xx_timeouts_and_garbage_are_retried_until_a_good_answer(server):
    state, url = server
    b = backend_for(url, timeout=0.3)
    out = b.generate([req("flaky"), req("slow"), req("garbage")])
    assert [r.request_id for r in out] == ["flaky", "slow", "garbage"]
    assert all(r.ok for r in out), [r.error for r in out]
    assert (state.hits["flaky"], state.hits["slow"], state.hits["garbage"]) == (3, 2, 4)
    assert b.usage["retries"] == 2 + 1 + 3
    assert b.usage["requests"] == 3 and b.usage["failed"] == 0


def test_a_request_failing_every_retry_becomes_an_error_not_an_exception(server):
    state, url = server
    b = backend_for(url, max_retries=2)
    out = b.generate([req("down"), req("fine")])
    assert not out[0].ok and out[0].completions == []
    assert "502" in out[0].error and "3 attempts" in out[0].error
    assert state.hits["down"] == 3
    assert out[1].ok
    assert b.usage["failed"] == 1


def test_a_client_error_is_not_retried(server):
    state, url = server
    out = backend_for(url).generate([req("rejected")])
    assert not out[0].ok and "400" in out[0].error
    assert state.hits["rejected"] == 1


def test_n_as_one_call_when_the_server_supports_it(server):
    state, url = server
    b = backend_for(url)
    [r] = b.generate([req("n-native", n=3, seed=5)])
    assert [c.text for c in r.completions] == [f"sample {i} seed=5" for i in range(3)]
    assert state.hits["n-native"] == 1 and state.bodies["n-native"][0]["n"] == 3
    assert all(c.prompt_tokens == 7 and c.completion_tokens is None for c in r.completions)
    assert b.usage == {"prompt_tokens": 7, "completion_tokens": 15, "requests": 1, "retries": 0, "failed": 0}


def test_n_as_separate_calls_merged_when_it_does_not(server):
    state, url = server
    b = backend_for(url, supports_n=False)
    [r] = b.generate([req("n-split", n=3, seed=5)])
    assert len(r.completions) == 3
    assert state.hits["n-split"] == 3
    assert all("n" not in body for body in state.bodies["n-split"])
    assert sorted(body["seed"] for body in state.bodies["n-split"]) == [5, 6, 7]  # distinct samples
    assert all(c.completion_tokens == 5 for c in r.completions)
    assert b.usage["requests"] == 3 and b.usage["completion_tokens"] == 15


def test_a_server_ignoring_n_is_topped_up(server):
    state, url = server
    [r] = backend_for(url).generate([req("ignores-n", n=3)])
    assert len(r.completions) == 3
    assert [body["n"] for body in state.bodies["ignores-n"]] == [3, 2, 1]


def test_length_finish_reason_is_preserved(server):
    _, url = server
    [r] = backend_for(url).generate([req("truncated", n=2)])
    assert [c.finish_reason for c in r.completions] == ["length", "length"]


def test_request_body_carries_sampling_continuation_and_schema(server):
    state, url = server
    schema = {"type": "object", "properties": {"verdict": {"enum": ["Correct", "Wrong"]}}}
    request = GenerationRequest(
        id="body",
        role="actor",
        continue_final_message=True,
        response_schema=schema,
        params=SamplingParams(temperature=0.3, top_p=0.9, max_tokens=17, stop=["\n\n"], seed=11),
        messages=[Message(role="user", content="shape"), Message(role="assistant", content="Step 1:")],
    )
    [r] = backend_for(url, extra_body={"top_k": 20}).generate([request])
    assert r.ok
    body = state.bodies["shape"][0]
    assert body["model"] == "tiny"
    assert body["messages"][-1] == {"role": "assistant", "content": "Step 1:"}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"], body["seed"]) == (
        0.3,
        0.9,
        17,
        ["\n\n"],
        11,
    )
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert body["top_k"] == 20


def test_concurrency_is_bounded(server):
    state, url = server
    out = backend_for(url, max_concurrency=2).generate([req("busy", f"b{i}") for i in range(6)])
    assert all(r.ok for r in out)
    assert state.hits["busy"] == 6
    assert state.max_in_flight == 2


def test_the_api_key_reaches_the_server_and_nowhere_else(server, monkeypatch):
    state, url = server
    monkeypatch.setenv("AMC_TEST_API_KEY", SECRET)
    b = backend_for(url, api_key_env="AMC_TEST_API_KEY")
    out = b.generate([req("fine"), req("rejected")])
    assert state.auth == [f"Bearer {SECRET}"] * 2
    assert out[0].ok and not out[1].ok
    assert "Bearer ***" in out[1].error  # the server echoed it; the client masked it
    for text in (repr(b), str(vars(b)), out[1].error, out[1].model_dump_json(), out[0].model_dump_json()):
        assert SECRET not in text
    monkeypatch.delenv("AMC_TEST_API_KEY")
    with pytest.raises(ValueError, match="AMC_TEST_API_KEY") as err:
        backend_for(url, api_key_env="AMC_TEST_API_KEY")
    assert SECRET not in str(err.value)


def test_no_server_at_all_is_an_error_after_retries():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = backend_for(f"http://127.0.0.1:{port}/v1", max_retries=1)
    [r] = b.generate([req("anyone")])
    assert not r.ok and "ConnectError" in r.error


def test_generate_works_from_a_thread_and_inside_a_running_loop(server):
    _, url = server
    b = backend_for(url)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(b.generate([req("fine", n=2)])))
    worker.start()
    worker.join(timeout=60)
    assert results and results[0][0].ok and len(results[0][0].completions) == 2

    async def inside_a_loop() -> list[Any]:
        return b.generate([req("fine")])

    assert asyncio.run(inside_a_loop())[0].ok
    assert asyncio.run(b.agenerate([req("fine")]))[0].ok


# ------------------------------------------------------------------------------------------------ retry policy
@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_timeouts_conflicts_and_too_early_are_retried(server, status):
    state, url = server
    b = backend_for(url)
    [r] = b.generate([req(f"status-{status}")])
    assert r.ok, r.error
    assert state.hits[f"status-{status}"] == 2 and b.usage["retries"] == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_at_once(server, status):
    state, url = server
    [r] = backend_for(url).generate([req(f"status-{status}")])
    assert not r.ok and f"HTTP {status}" in r.error and state.hits[f"status-{status}"] == 1


def test_a_content_filtered_choice_is_an_error_completion_not_a_success(server):
    _, url = server
    [r] = backend_for(url).generate([req("filtered")])
    assert [c.finish_reason for c in r.completions] == ["error"]


def test_retry_after_in_milliseconds_seconds_or_a_date():
    import email.utils

    import httpx

    from amc.backends.openai import parse_retry_after

    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "soon", "retry-after": "9"})) == 9.0
    assert parse_retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "200"})) == 0.2  # under a second stays so
    assert parse_retry_after(httpx.Headers({"retry-after": "0.5"})) == 0.5
    assert parse_retry_after(httpx.Headers({"retry-after": "-5"})) == 0.0  # never a negative wait
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "-5"})) == 0.0
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "whenever"})) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= parse_retry_after(httpx.Headers({"retry-after": later})) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": past})) == 0.0


def test_backoff_grows_with_jitter_and_never_passes_the_cap():
    b = backend_for("http://127.0.0.1:9/v1", retry_backoff=0.5, retry_max_backoff=4.0)
    for attempt in range(40):
        ceiling = min(4.0, 0.5 * 2**attempt)
        waits = [b._delay(attempt, None) for _ in range(20)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (attempt, waits)
    for attempt in (3, 30):  # jitter, at the cap too: clients that failed together do not retry in step
        assert len({round(b._delay(attempt, None), 6) for _ in range(20)}) > 1
    assert b._delay(0, 2.0) >= 2.0  # the server's wish is a lower bound ...
    assert b._delay(0, 3600.0) == 4.0  # ... up to the cap: a server asking for an hour does not stall a build


# ------------------------------------------------------------------ found by the full mutmut run (third session)
def test_an_outage_is_retryable_and_a_refusal_is_not(server):
    """What decides whether the next build asks again: an answer missing after every retry is an outage (the
    stage stays incomplete), a 4xx refusal is a finished reject."""
    _, url = server
    down, refused = backend_for(url, max_retries=1).generate([req("down"), req("rejected")])
    assert (down.ok, down.retryable) == (False, True)
    assert (refused.ok, refused.retryable) == (False, False)


def test_retries_are_counted_once_per_wait_between_attempts(server):
    _, url = server
    b = backend_for(url, max_retries=2)
    b.generate([req("down")])
    assert b.usage["retries"] == 2  # three attempts, two waits
    b = backend_for(url, max_retries=0)
    b.generate([req("down", "again")])
    assert b.usage["retries"] == 0


def test_a_json_body_that_is_not_an_object_is_retried_like_garbage(server):
    state, url = server
    [r] = backend_for(url).generate([req("list-body")])
    assert r.ok and state.hits["list-body"] == 2


def test_usage_null_or_absent_counts_no_tokens(server):
    _, url = server
    b = backend_for(url)
    out = b.generate([req("usage-null"), req("no-usage")])
    assert all(r.ok for r in out)
    assert all(c.prompt_tokens is None and c.completion_tokens is None for r in out for c in r.completions)
    assert b.usage == {"prompt_tokens": 0, "completion_tokens": 0, "requests": 2, "retries": 0, "failed": 0}


def test_choices_come_back_in_index_order_and_a_null_content_is_an_empty_text(server):
    _, url = server
    [r] = backend_for(url).generate([req("shuffled", n=3, seed=1)])
    assert [c.text for c in r.completions] == ["sample 0 seed=1", "sample 1 seed=1", ""]


def test_no_key_configured_sends_no_authorization_header(server):
    state, url = server
    [r] = backend_for(url).generate([req("fine")])
    assert r.ok and state.auth == [None]


def test_a_base_url_with_a_trailing_slash_reaches_the_same_endpoint(server):
    state, url = server
    for base in (url, url + "/"):
        [r] = backend_for(base).generate([req("fine", base)])
        assert r.ok
    assert state.paths == ["/v1/chat/completions"] * 2


def test_a_transport_error_that_quotes_the_key_is_masked(server, monkeypatch):
    """Whatever a failing connection says (a proxy may echo the request's headers) is masked before it becomes
    a reject row's detail on disk."""
    import httpx

    _, url = server
    monkeypatch.setenv("AMC_TEST_API_KEY", SECRET)

    async def refuse(self, *args, **kwargs):
        raise httpx.ConnectError(f"proxy refused Authorization: Bearer {SECRET}")

    monkeypatch.setattr(httpx.AsyncClient, "post", refuse)
    [r] = backend_for(url, api_key_env="AMC_TEST_API_KEY", max_retries=0).generate([req("fine")])
    assert not r.ok and "proxy refused" in r.error and SECRET not in r.error


def test_answers_of_another_revision_of_the_served_model_are_not_reused(server, tmp_path):
    from amc.engine.cache import CachedBackend, RequestCache

    state, url = server
    cache = RequestCache(tmp_path / "c.sqlite")
    CachedBackend(backend_for(url, revision="r1"), cache).generate([req("fine")])
    again = CachedBackend(backend_for(url, revision="r1"), cache)
    again.generate([req("fine")])
    other = CachedBackend(backend_for(url, revision="r2"), cache)
    other.generate([req("fine")])
    assert (again.made, other.made, state.hits["fine"]) == (0, 1, 2)


def test_what_a_misbehaving_server_sent_is_named_in_the_error(server):
    _, url = server
    empty, no_message, html = backend_for(url, max_retries=0).generate(
        [req("always-empty"), req("always-no-message"), req("always-html")]
    )
    assert empty.error.endswith("last: response has no choices")
    assert no_message.error.endswith("last: response choices have no message")
    body = "<html>" + "x" * 200 + "</html>"
    assert html.error.endswith(f"last: malformed JSON body: {body[:80]!r}")


def test_an_openai_engine_without_base_url_is_refused_with_an_example():
    with pytest.raises(ValueError, match=r"^the openai engine needs base_url, e\.g\. http://127\.0\.0\.1:8000/v1$"):
        OpenAIBackend(ModelConfig(engine="openai", model="m"))
