"""Outages of an OpenAI-compatible server never become a finished dataset.

A local fault server on 127.0.0.1 (bounded: every fault ends after a fixed time or a fixed number of hits) answers
deterministically from the request's content, so a build against it can be compared byte for byte with an
uninterrupted build. It refuses connections (stopped), answers 500 / 429 with Retry-After, hangs past the client's
timeout, sends garbage JSON, or dies mid-stage; after it recovers, the finished dataset equals an uninterrupted
run's, and the recovery asks only for what was not answered before.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from amc.cli import app
from amc.config import load_config
from amc.engine.cache import RequestCache
from amc.engine.rundir import RunDir
from amc.engine.runner import Runner
from amc.engine.status import run_status

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def _answer(body: dict[str, Any], index: int) -> str:
    """A deterministic answer of the request's content (messages, seed, choice index)."""
    user = body["messages"][1]["content"] if len(body["messages"]) > 1 else body["messages"][0]["content"]
    digest = int(hashlib.sha256(json.dumps([body["messages"], body.get("seed"), index]).encode()).hexdigest(), 16)
    if "Student's solution:" in user:  # a critique: one Correct/Wrong block per step of the solution
        steps = user.split("Student's solution:\n", 1)[1].split("\nHint", 1)[0].strip().splitlines()
        blocks = [
            f"Step sentence: {s}\nCorrectness of the step: {'Wrong' if (digest >> i) % 3 == 0 else 'Correct'}\n"
            f"Explanation: checked."
            for i, s in enumerate(steps)
        ]
        return "\n".join([*blocks, "Correctness of the final answer: Wrong\nExplanation: checked."])
    nums = [int(n) for n in re.findall(r"\d+", user)[:2]] or [1, 2]
    a, b = nums[0], nums[-1]
    total = a + b + (digest % 3 == 0)  # a third of the answers are wrong
    return f"First, {a} + {b} = {total}.\nSo we have {total} in all.\nThe answer is {total}."


class FaultServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 with a switchable fault ``mode``:
    ok | 500 | 429 | hang | garbage; ``die_after`` stops serving (connections refused) after that many requests."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.die_after: int | None = None
        self.refuse_first = 0  # answer this many requests with a 400 (a refusal, not an outage)
        self.lock = threading.Lock()
        self.served: list[str] = []  # content hash of every request answered successfully
        self.received = 0
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    @staticmethod
    def key(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
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
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.received += 1
                    dying = server.die_after is not None and server.received > server.die_after
                    mode = server.mode
                if dying:  # as if the process had died: drop the connection, stop listening
                    self.close_connection = True
                    threading.Thread(target=server.stop, daemon=True).start()
                    return
                with server.lock:
                    refuse = server.refuse_first > 0
                    server.refuse_first -= refuse
                if refuse:
                    self._send(400, b'{"error": "prompt too long"}')
                elif mode == "500":
                    self._send(500, b'{"error": "internal"}')
                elif mode == "429":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                elif mode == "hang":
                    time.sleep(0.6)  # beyond the client's timeout; bounded
                    self._send(503, b'{"error": "late"}')
                elif mode == "garbage":
                    self._send(200, b'{"choices": [{"message": ')
                else:
                    n = body.get("n", 1)
                    choices = [
                        {
                            "index": i,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": _answer(body, i)},
                        }
                        for i in range(n)
                    ]
                    with server.lock:
                        server.served.append(server.key(body))
                    self._send(200, json.dumps({"choices": choices, "usage": {}}).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture
def server():
    s = FaultServer()
    s.start()
    yield s
    s.stop()


SOURCE: list[Path] = []  # the one source file of this module (its path is part of every row)


def _source() -> Path:
    """Questions the fault server can answer: 'What is a plus b?' (written once per test session)."""
    if not SOURCE:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="amc-outages-")) / "sums.jsonl"
        rows = [
            {"question": f"What is {a} plus {a * 7 % 10 + 2}?", "answer": str(a + a * 7 % 10 + 2)} for a in range(8)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        SOURCE.append(path)
    return SOURCE[0]


def _overrides(run_dir: Path, port: int) -> list[str]:
    model = (
        f"{{engine: openai, model: fake, base_url: 'http://127.0.0.1:{port}/v1', max_retries: 1, timeout: 0.25, "
        f"retry_backoff: 0.01, retry_max_backoff: 0.02, max_concurrency: 4}}"
    )
    return [
        f"run_dir={run_dir}", f"source={{kind: file, path: '{_source()}'}}", "shard_size=4", "stages.sample.n=2",
        "stages.filter.n=2", "stages.filter.k=1", "stages.inject.per_problem=0",
        "stages.critique.include_correct_paths=1.0",
        f"models.actor={model}", f"models.injector={model}", f"models.annotator={model}",
    ]  # fmt: skip


def _dataset(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.glob("*/*/*.parquet"))
        if not p.name.startswith(".")
    }


def _build(run_dir: Path, port: int, *extra: str, retry_rejects: bool = False):
    cfg = load_config(QUICKSTART, [*_overrides(run_dir, port), *extra])
    return Runner(cfg, show_progress=False, retry_rejects=retry_rejects).build()


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict[str, bytes]:
    """The dataset of an uninterrupted build (on a server of its own: the port is not part of any row)."""
    ref = FaultServer()
    ref.start()
    try:
        run_dir = tmp_path_factory.mktemp("ref") / "run"
        reports = _build(run_dir, ref.port)
    finally:
        ref.stop()
    assert all(r.retryable == 0 for r in reports) and reports[-1].name == "filter"
    data = _dataset(run_dir)
    assert all(any(k.startswith(f"{s}/data/") for k in data) for s in ("sample", "inject", "critique", "filter"))
    return data


@pytest.mark.parametrize("mode", ["refused", "500", "429", "hang", "garbage", "dies"])
def test_an_outage_is_incomplete_and_a_rerun_after_recovery_equals_an_uninterrupted_run(
    tmp_path, server, mode, expected
):

    run_dir = tmp_path / "run"
    server.served.clear()
    if mode == "refused":
        server.stop()
    elif mode == "dies":
        server.die_after = server.received + 5  # some rows of the sample stage are answered, then it dies
    else:
        server.mode = mode
    # a fresh run directory, and the reference's answers are not in its cache: every request goes to the server
    reports = _build(run_dir, server.port)
    first = reports[-1]
    assert first.retryable > 0 and first.name == "sample", reports  # the build stops at the incomplete stage
    assert not (run_dir / "inject").exists()
    cfg = load_config(QUICKSTART, _overrides(run_dir, server.port))
    status = run_status(cfg)
    assert status["stages"]["sample"]["state"] == "incomplete"
    assert status["stages"]["sample"]["retryable"] == first.retryable
    # failures are never cached: only what the server answered is
    cache = RequestCache(run_dir / "cache.sqlite")
    assert len(cache) == len(server.served)
    cache.close()
    answered_before = set(server.served)

    # the CLI says so and exits non-zero
    args = ["build", "-q", "--config", str(QUICKSTART)]
    for s in _overrides(run_dir, server.port):
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "incomplete" in res.output and "sample" in res.output

    # recovery: the same server answers again; a plain rerun finishes, asking only for what was not answered
    server.stop()
    server.mode, server.die_after, server.received = "ok", None, 0
    server.start()
    server.served.clear()
    reports = _build(run_dir, server.port)
    assert [r.retryable for r in reports] == [0] * 5
    assert not answered_before & set(server.served)
    assert _dataset(run_dir) == expected
    assert all(s["state"] == "done" for s in run_status(cfg)["stages"].values())


def test_retry_rejects_changes_a_stage_and_every_later_stage_is_rebuilt(tmp_path, server, expected):
    """Content chaining: a 400 is a refusal (not an outage), so the stage is done with rejects; --retry-rejects
    asks those rows again, the stage's content changes under the same config, and every later stage is rebuilt."""
    run_dir = tmp_path / "run"
    server.refuse_first = 3  # the first sample requests are refused
    reports = {r.name: r for r in _build(run_dir, server.port)}
    assert all(r.retryable == 0 for r in reports.values()) and reports["filter"].action == "built"
    sample = RunDir(run_dir).read_manifest("sample")
    assert sample["status"] == "done" and sample["rejects_by_reason"] == {"engine_error": 3}
    assert _dataset(run_dir) != expected
    # a plain rerun changes nothing: a refusal is not asked again
    assert {r.action for r in _build(run_dir, server.port)} == {"skipped"}
    before = RunDir(run_dir).read_manifest("critique")["input_data"]
    reports = {r.name: r for r in _build(run_dir, server.port, retry_rejects=True)}
    assert reports["sample"].action == "resumed" and reports["sample"].made == 3
    assert [reports[s].action for s in ("inject", "critique", "filter")] == ["built"] * 3  # stale: input changed
    assert RunDir(run_dir).read_manifest("critique")["input_data"] != before
    assert _dataset(run_dir) == expected
    cfg = load_config(QUICKSTART, _overrides(run_dir, server.port))
    assert all(s["state"] == "done" for s in run_status(cfg)["stages"].values())
