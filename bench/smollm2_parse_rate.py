"""Critique parse rates of SmolLM2-135M-Instruct as annotator: text and JSON, each with and without
``stop_at_first_error``, on the paths of a finished build (its ``inject`` stage), with amc's own prompts, schema
and parser. One engine serves all four variants, so the engine starts once.

Every path the critique stage would critique is critiqued once per variant (temperature 0, as the pipeline does).
Reported per variant: outputs, parsed "ok" / "partial" / "failed", cut off by max_tokens, the ok rate, completion
tokens and tokens per second of that batch.

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/smollm2_parse_rate.py --run RUN_DIR
        [--config pipelines/smollm2_cpu.yaml] [--engine vllm] [--max-tokens 1024] [--limit 32] [--json out.json]

RUN_DIR: a run directory of pipelines/smollm2_cpu.yaml built at least to ``inject``. Results: bench/RESULTS_smollm2.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

VARIANTS = [("text", False), ("text", True), ("json", False), ("json", True)]


def load_paths(config: str, run: Path, limit: int | None) -> tuple[Any, list[Any], dict[str, Any]]:
    from amc.config import load_config
    from amc.engine.store import read_records
    from amc.records import Problem, ReasoningPath
    from amc.stages.critique import wants_critique

    cfg = load_config(config, [f"run_dir={run}"])
    paths = [p for f in sorted((run / "inject" / "data").glob("*.parquet")) for p in read_records(f, ReasoningPath)]
    problems = {
        p.id: p for f in sorted((run / "problems" / "data").glob("*.parquet")) for p in read_records(f, Problem)
    }
    todo = [p for p in paths if wants_critique(p, cfg.stages.critique.include_correct_paths, cfg.seed)]
    return cfg, todo[:limit] if limit else todo, problems


def requests_for(cfg: Any, paths: list[Any], problems: dict[str, Any], fmt: str, stop: bool, max_tokens: int):
    from amc.backends.base import GenerationRequest, SamplingParams
    from amc.critique_format import critique_json_schema
    from amc.prompts import load_template
    from amc.stages.critique import hints_for

    c = cfg.stages.critique
    tmpl = load_template("critique_json" if fmt == "json" else "critique")
    out = []
    for p in paths:
        hints = {**hints_for(p, cfg, problems.get(p.problem_id)), "stop_at_first_error": stop}
        out.append(
            GenerationRequest(
                id=f"{p.id}/{fmt}/{stop}",
                role="annotator",
                messages=tmpl.render(question=p.question, steps=p.steps, hints=hints, budget=c.explanation_chars),
                params=SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, seed=0),
                template=tmpl.ref,
                response_schema=critique_json_schema(len(p.steps), c.explanation_chars) if fmt == "json" else None,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", default="pipelines/smollm2_cpu.yaml", help="The pipeline file RUN_DIR was built with.")
    ap.add_argument("--engine", default="vllm", choices=["vllm", "transformers"])
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from amc.backends import create
    from amc.config import ModelConfig
    from amc.critique_format import parse

    cfg, paths, problems = load_paths(args.config, args.run, args.limit)
    block: dict[str, Any] = {"engine": args.engine, "model": "smollm2-135m-instruct", "dtype": "float32",
                             "max_model_len": 2048}  # fmt: skip
    block |= {"enforce_eager": True} if args.engine == "vllm" else {"batch_size": 16}
    started = time.perf_counter()
    backend = create(ModelConfig(**block))
    engine_start = time.perf_counter() - started
    results = []
    try:
        for fmt, stop in VARIANTS:
            reqs = requests_for(cfg, paths, problems, fmt, stop, args.max_tokens)
            t = time.perf_counter()
            responses = backend.generate(reqs)
            seconds = time.perf_counter() - t
            counts: Counter[str] = Counter()
            tokens = 0
            for p, resp in zip(paths, responses, strict=True):
                if not resp.ok:
                    counts["engine_error"] += 1
                    continue
                comp = resp.completions[0]
                tokens += comp.completion_tokens or 0
                parsed = parse(comp.text, fmt, p.steps, truncated=comp.finish_reason == "length")  # type: ignore[arg-type]
                counts["outputs"] += 1
                counts[parsed.status] += 1
                counts["truncated"] += parsed.truncated
            row = {"format": fmt, "stop_at_first_error": stop, **counts, "ok_rate": counts["ok"] / max(1, len(paths)),
                   "seconds": round(seconds, 1), "completion_tokens": tokens,
                   "tokens_per_s": round(tokens / seconds, 1) if seconds else None}  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        backend.close()
    report = {"machine": f"{platform.node()} {platform.machine()}", "date": time.strftime("%Y-%m-%d %H:%M"),
              "engine": args.engine, "paths": len(paths), "engine_start_s": round(engine_start, 1),
              "max_tokens": args.max_tokens, "results": results}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
