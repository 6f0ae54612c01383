"""`amc selftrain` end to end on a tiny Llama (built offline) with the sim critic: the iteration folders, metrics,
training data and summary; the critic-off baseline at the same generation budget; a killed run resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from amc.config import load_config
from amc.loops.selftrain import run_selftrain


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from amc.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _pipeline(tmp_path: Path, tiny: Path, critic: str, iterations: int = 1, warmup: int = 4) -> Path:
    data = {
        "name": "st",
        "run_dir": str(tmp_path / "run"),
        "source": {"kind": "synthetic", "count": 12, "min_steps": 1, "max_steps": 3},
        "models": {
            "actor": {"engine": "transformers", "model": str(tiny), "batch_size": 32, "max_model_len": 400},
            "annotator": {"engine": "sim", "model": "sim-critic", "error_rate": 0.0},
        },
        "selftrain": {
            "iterations": iterations,
            "critic": critic,
            "samples": 2,
            "hard_samples": 3,
            "test_fraction": 0.3,
            "warmup_references": warmup,
            "sampling": {"temperature": 1.0, "max_tokens": 24},
            "refine_sampling": {"temperature": 1.0, "max_tokens": 24},
            "test_sampling": {"temperature": 0.0, "max_tokens": 24},
            "sft": {"max_steps": 2, "batch_size": 4, "max_length": 256, "learning_rate": 1e-3},
        },
    }
    path = tmp_path / "st.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_selftrain_writes_iterations_and_summary(tmp_path, tiny):
    folder, summary = run_selftrain(load_config(_pipeline(tmp_path, tiny, "model", iterations=2)))
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1, 2]
    assert summary["requests"]["made"] > 0  # engines released after each step still count
    it1 = folder / "iter-1"
    stats = json.loads((it1 / "data_stats.json").read_text())
    explore = pq.read_table(it1 / "explore.parquet").to_pylist()
    failures = [r for r in explore if not r["correct"]]
    assert stats["failures"] == len(failures) and stats["explore_samples"] == len(explore)
    # the failures were critiqued and refined, one transition row each
    trans = pq.read_table(it1 / "transitions.parquet").to_pylist()
    assert len(trans) == len(failures) and all(not t["correct_before"] for t in trans)
    assert stats["actor_generations"] == len(explore) + len(failures)
    train = pq.read_table(it1 / "train.parquet").to_pylist()
    assert len(train) == stats["train_examples"] >= 4  # at least the warm-up references
    assert train[0]["prompt"][-1]["role"] == "user" and train[0]["completion"][0]["role"] == "assistant"
    assert 0.0 <= stats["hard_share_by_difficulty"] <= 1.0
    # iteration 1 trained a model that iteration 2 explores with and tests
    assert (it1 / "model" / "amc_train.json").is_file()
    m2 = json.loads((folder / "iter-2" / "metrics.json").read_text())
    assert m2["model"].endswith("iter-2/model") and set(m2["test_accuracy_by_difficulty"]) <= {"1", "2", "3"}
    assert (folder / "summary.json").is_file() and (folder / "summary.png").is_file()
    # difficulty-aware: a problem no sample solved gets hard_samples in iteration 2
    e2 = pq.read_table(folder / "iter-2" / "explore.parquet").to_pylist()
    unsolved = {r["problem_id"] for r in explore} - {r["problem_id"] for r in explore if r["correct"]}
    counts = {pid: sum(r["problem_id"] == pid for r in e2) for pid in unsolved}
    assert counts and set(counts.values()) == {3}


def test_baseline_resamples_at_the_same_budget(tmp_path, tiny):
    # no warm-up: the random tiny model solves nothing, so there is nothing to train on and no SFT (fast)
    folder, summary = run_selftrain(load_config(_pipeline(tmp_path, tiny, "off", warmup=0)))
    assert folder.name == "selftrain-off"
    stats = json.loads((folder / "iter-1" / "data_stats.json").read_text())
    assert stats["actor_generations"] == stats["explore_samples"] + stats["failures"]
    assert pq.read_table(folder / "iter-1" / "transitions.parquet").num_rows == 0  # no critic, no refinement
    resampled = pq.read_table(folder / "iter-1" / "refinements.parquet").to_pylist()
    assert all(r["kind"] == "resample" and r["correct"] for r in resampled)
    assert stats["train_examples"] == stats["explore_samples"] - stats["failures"] + len(resampled)
    if not stats["train_examples"]:  # nothing to learn from: the actor stays the base model
        assert summary["iterations"][1]["model"] == summary["base_model"]


def test_killed_quick_pipeline_resumes(tmp_path):
    """pipelines/selftrain_quick.yaml as shipped (the named tiny-llama actor, the sim critic), killed after its first
    dataset is written, then run again: it goes on from there."""
    config = Path(__file__).resolve().parents[1] / "pipelines" / "selftrain_quick.yaml"
    sets = [f"run_dir={tmp_path / 'run'}"]
    folder = tmp_path / "run" / "selftrain-model"
    cmd = [sys.executable, "-m", "amc.cli", "selftrain", "--config", str(config), "--set", sets[0]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats = folder / "iter-1" / "data_stats.json"
    try:
        deadline = time.monotonic() + 300
        while not stats.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats.is_file(), "the first run never finished its dataset"
        proc.send_signal(signal.SIGKILL)  # killed while fine-tuning (or testing)
    finally:
        proc.wait()
    assert not (folder / "summary.json").is_file()
    made = (folder / "iter-1" / "explore.parquet").stat().st_mtime_ns
    cfg = load_config(config, sets)
    _, summary = run_selftrain(cfg)
    assert (folder / "iter-1" / "explore.parquet").stat().st_mtime_ns == made  # the dataset was not redone
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1]
    test_problems = summary["test_problems"]
    assert summary["requests"]["made"] <= test_problems  # at most the test set again: exploration came from disk
    assert (folder / "iter-1" / "model" / "amc_train.json").is_file()
    assert summary["iterations"][1]["train_examples"] >= cfg.selftrain.warmup_references
