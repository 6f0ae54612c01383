"""Engine cost of a build: tokens per kept critique, amc's requests against a naive run of the same work.

Builds the quickstart (sim engine) in this process, recording every request the stages send (after the cache: a
fresh run directory, so every request reaches the engine) and every completion. Tokens are counted with a simple
word/punctuation split (``\\w+|[^\\w\\s]``), the same for every column, since the sim engine has no tokenizer: the
ratios between columns are the point, not the absolute counts.

Columns, per stage and in total, divided by the kept critiques (the filter stage's rows):

- ``amc``: what amc asks for: each request's prompt once plus every completion (``n`` samples in one request);
- ``naive``: the same samples asked one per request (no n-sampling): the prompt repeated for every sample;
- ``computed``: tokens an engine with a prefix cache still computes for amc's requests, when a batch's prompts are
  sent together in prefix order (amc's vLLM engine sorts each batch by prompt): the size of the batch's prompt
  token trie (each shared prefix computed once) plus every completion.

    nice -n 10 python bench/engine_cost.py --problems 320
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TOKEN = re.compile(r"\w+|[^\w\s]")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _trie_size(prompts: list[list[str]]) -> int:
    """Distinct prefixes over the prompts: the tokens a perfect prefix cache computes for the batch."""
    seen: set[tuple[str, ...]] = set()
    for toks in prompts:
        for i in range(1, len(toks) + 1):
            seen.add(tuple(toks[:i]))
    return len(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=320)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from amc.config import load_config
    from amc.engine import cache as cache_mod
    from amc.engine.runner import Runner

    amc: Counter[str] = Counter()
    naive: Counter[str] = Counter()
    computed: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    real_generate = cache_mod.CachedBackend.generate
    stage_of = {
        "solve": "sample",
        "inject": "inject",
        "continue": "inject",
        "critique": "critique",
        "refine": "filter",
        "rollout": "filter",
    }

    def recording(self, reqs):
        answers = real_generate(self, reqs)
        batch_prompts: dict[str, list[list[str]]] = {}
        for req, resp in zip(reqs, answers, strict=True):
            stage = stage_of.get(str((req.context or {}).get("task")), "other")
            prompt = _tokens("\n".join(m.content for m in req.messages))
            completion = sum(len(_tokens(c.text)) for c in resp.completions)
            computed[stage] += completion
            amc[stage] += len(prompt) + completion
            naive[stage] += req.params.n * len(prompt) + completion
            requests[stage] += 1
            batch_prompts.setdefault(stage, []).append(prompt)
        for stage, prompts in batch_prompts.items():
            computed[stage] += _trie_size(prompts)
        return answers

    cache_mod.CachedBackend.generate = recording  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            ROOT / "pipelines" / "quickstart.yaml", [f"source.count={args.problems}", f"run_dir={Path(tmp) / 'run'}"]
        )
        reports = Runner(cfg, show_progress=False).build()
    kept = reports[-1].rows
    rows = []
    for stage in [*sorted(amc, key=list(stage_of.values()).index), "total"]:
        a = sum(amc.values()) if stage == "total" else amc[stage]
        n = sum(naive.values()) if stage == "total" else naive[stage]
        c = sum(computed.values()) if stage == "total" else computed[stage]
        r = sum(requests.values()) if stage == "total" else requests[stage]
        rows.append(
            {
                "stage": stage,
                "requests": r,
                "amc_per_kept": round(a / kept, 1),
                "naive_per_kept": round(n / kept, 1),
                "naive_over_amc": round(n / a, 2),
                "computed_per_kept": round(c / kept, 1),
            }
        )
    print(f"kept critiques: {kept}")
    print("| stage | requests | amc tokens/kept | naive tokens/kept | naive/amc | computed/kept (prefix cache) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['stage']} | {r['requests']} | {r['amc_per_kept']} | {r['naive_per_kept']} | "
            f"{r['naive_over_amc']} | {r['computed_per_kept']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"kept": kept, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
