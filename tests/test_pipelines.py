"""The ready pipelines for real engines, dry-run offline: sources pointed at local copies, engines swapped for sim.

Only the model blocks and the data location change, which is the promise of a pipeline file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from amc.config import load_config
from amc.engine.runner import Runner
from amc.engine.store import read_records
from amc.records import FilterDecision

ROOT = Path(__file__).resolve().parents[1]


def _local_sources(cfg_path: Path, shared: Path) -> list[dict]:
    raw = yaml.safe_load(cfg_path.read_text())["source"]
    out = []
    for src in raw if isinstance(raw, list) else [raw]:
        local = {"gsm8k": shared / "gsm8k" / "train.jsonl", "math": shared / "math500" / "test.jsonl"}[src["preset"]]
        out.append({**src, "dataset": str(local), "split": "train", "limit": 6})
    return out


@pytest.mark.parametrize("name", ["gsm8k", "gsm8k_math_vllm", "hosted_annotator"])
def test_real_pipeline_dry_run_on_sim(name, shared_data, tmp_path):
    path = ROOT / "pipelines" / f"{name}.yaml"
    real = load_config(path)
    assert {real.models.actor.engine, real.models.annotator.engine} <= {"vllm", "openai"}
    sources = yaml.safe_dump(_local_sources(path, shared_data), default_flow_style=True).strip()
    cfg = load_config(
        path,
        [
            f"run_dir={tmp_path / 'run'}",
            f"source={sources}",
            "models.actor.engine=sim",
            "models.annotator.engine=sim",
            "models.annotator.api_key_env=null",
        ],
    )
    # everything but the engines and the data is the pipeline as shipped
    assert cfg.stages == real.stages
    Runner(cfg, show_progress=False).build("filter")
    kept = [
        r
        for f in sorted((tmp_path / "run" / "filter" / "data").glob("*.parquet"))
        for r in read_records(f, FilterDecision)
    ]
    assert kept and all(r.n == real.stages.filter.n and r.k == real.stages.filter.k for r in kept)
    assert {r.critique.path.source for r in kept} <= {s["dataset"] for s in _local_sources(path, shared_data)}
