"""The real model on the transformers engine, in the main environment: a build of one problem through every stage
(pipelines/smollm2_cpu_transformers.yaml, shrunk), then a few LoRA steps of `amc train sft`'s library entry point on
critic data made from that build's critiques, with the loss recorded.

Needs the converted SmolLM2 folder (tests/test_models.py converts it; CI shares AMC_CACHE_DIR so it happens once).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _smollm2_build import REFINE_EVERY_CRITIQUE, ROOT, build, check_every_stage, parse_rate, rows  # noqa: E402

from amc.config import load_config  # noqa: E402
from amc.publish.exports import sft_critic_rows  # noqa: E402
from amc.records import FilterDecision  # noqa: E402

pytestmark = pytest.mark.slow

ONE_PROBLEM = (
    "source=[{kind: file, path: ../shared/data/gsm8k/test.jsonl, answer_format: gsm8k, limit: 1}]",
    "stages.sample.n=2",
    "stages.sample.sampling.max_tokens=128",
    "stages.inject.sampling.max_tokens=128",
    "stages.inject.resample.sampling.max_tokens=128",
    "stages.critique.sampling.max_tokens=512",
    "stages.filter.n=1",
    "stages.filter.sampling.max_tokens=128",
    *REFINE_EVERY_CRITIQUE,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data) -> Path:
    folder = tmp_path_factory.mktemp("smollm2-tf") / "run"
    summary = build("pipelines/smollm2_cpu_transformers.yaml", folder, *ONE_PROBLEM)
    print("build seconds", summary["seconds"], "parse", parse_rate(folder))
    return folder


def test_one_problem_through_every_stage_on_transformers(run):
    check_every_stage(run)
    rate, counts = parse_rate(run)
    assert counts["outputs"] >= 1 and 0.0 <= rate <= 1.0


def test_lora_sft_on_critiques_of_the_real_model_records_its_loss(run, tmp_path):
    from amc.train.sft import SFTSettings, train_sft

    cfg = load_config(ROOT / "pipelines/smollm2_cpu_transformers.yaml", [f"run_dir={run}"])
    decisions = rows(run, "filter", "data", FilterDecision) + rows(run, "filter", "dropped", FilterDecision)
    assert decisions, "the build made no critique to learn from"
    data = tmp_path / "critic.jsonl"
    with data.open("w", encoding="utf-8") as out:
        for _, row in sft_critic_rows(decisions, cfg):
            out.write(json.dumps({"prompt": row["prompt"], "completion": row["completion"]}) + "\n")
    result = train_sft(
        SFTSettings(
            model="smollm2-135m-instruct", data=str(data), output_dir=tmp_path / "critic", lora=True,
            max_steps=2, batch_size=2, max_length=768, learning_rate=1e-4, logging_steps=1, dtype="float32",
            eval=False, report=False, show_progress=False,
        )
    )  # fmt: skip
    assert result.steps == 2 and len(result.losses) == 2
    assert all(math.isfinite(loss) and loss > 0 for _, loss in result.losses)
    assert (tmp_path / "critic" / "amc_train.json").is_file()
    print("LoRA SFT losses", result.losses)
