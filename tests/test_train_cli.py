"""`amc train critic|actor`: the train: block with command-line overrides, the report, drops named, merged LoRA,
checkpoints and resume, and GRPO (CTRL) with the sim actor, on a tiny Llama built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from amc.cli import app
from amc.config import load_config
from amc.engine.runner import Runner
from amc.testing.tiny_model import build_tiny_llama
from amc.train.data import load_sft_data
from amc.train.grpo import balanced, path_rows, resolve_actor
from amc.train.sft import SFTSettings, train_sft

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("train-cli")
    cfg = load_config(QUICKSTART, [f"run_dir={tmp}/run", "source.count=12"])
    Runner(cfg, show_progress=False).build("filter")
    return tmp / "run"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("train-cli-model") / "tiny", max_position_embeddings=1024)


def _pipeline(tmp_path: Path, run: Path, train: dict) -> Path:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data.update({"run_dir": str(run), "train": train})
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _invoke(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_critic_from_the_train_block_with_overrides_merged_lora_and_report(run, tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    block = {
        "model": str(tiny),
        "lora": True,
        "lora_r": 4,
        "merge": True,
        "max_steps": 2,
        "batch_size": 2,
        "limit": 4,
        "max_length": 1024,
        "learning_rate": 0.5,
        "logging_steps": 1,
    }
    pipeline = _pipeline(tmp_path, run, block)
    out = tmp_path / "critic"
    result = _invoke("critic", "--config", str(pipeline), "--output", str(out), "--lr", "1e-3", "-q")
    assert result.exit_code == 0, result.output
    assert "%|" not in result.output  # -q: no progress bars (datasets, transformers)
    assert "saved merged model" in result.output
    record = json.loads((out / "amc_train.json").read_text(encoding="utf-8"))
    settings = record["settings"]
    assert settings["learning_rate"] == 1e-3  # the command line wins over the file
    assert settings["lora"] is True and settings["merge"] is True and settings["lora_r"] == 4  # from the file
    assert settings["config"] == "sft_critic" and settings["data"] == str(run)  # the pipeline's run directory
    assert record["dataset"]["kind"] == "run"
    model = AutoModelForCausalLM.from_pretrained(out)  # merged: a plain model, no adapter files needed
    assert not (out / "adapter_config.json").exists() and model.config.model_type == "llama"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["summary"]["steps"] == 2 and report["summary"]["tokens seen (no padding)"] > 0
    assert [s for s, _ in report["curves"]["train loss"]] == [1, 2]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loss.png" in (out / "report.md").read_text(encoding="utf-8")


def test_unknown_keys_fail_naming_the_file_and_key(run, tmp_path):
    pipeline = _pipeline(tmp_path, run, {"model": "x", "learning_rat": 0.1})
    result = _invoke("critic", "--config", str(pipeline), "--output", str(tmp_path / "o"))
    assert result.exit_code == 2 and "train.learning_rat" in result.output and "unknown key" in result.output
    result = _invoke(
        "critic", "--data", str(run), "--model", "x", "--output", str(tmp_path / "o"), "--set", "grpo.bta=1"
    )
    assert result.exit_code == 2 and "grpo.bta" in result.output
    result = _invoke("critic", "--data", str(run), "--output", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no model" in result.output
    result = _invoke("critic", "--data", str(run), "--model", "m", "--output", str(tmp_path / "o"), "--correct-paths")
    assert result.exit_code == 2 and "amc train actor" in result.output


def test_actor_trains_on_refinements_and_correct_paths_and_names_drops(run, tiny, tmp_path):
    refine = load_sft_data(run, "sft_refine", eval=False)
    both = load_sft_data(run, "sft_refine", eval=False, include_correct_paths=True)
    out = tmp_path / "actor"
    # 400 tokens: the long refine prompts fill it (dropped, and said so); most solve prompts do not
    result = _invoke(
        "actor",
        "--data",
        str(run),
        "--model",
        str(tiny),
        "--output",
        str(out),
        "--correct-paths",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "400",
        "--no-eval",
        "--full",
        "-q",
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "amc_train.json").read_text(encoding="utf-8"))
    assert record["settings"]["config"] == "sft_refine" and record["settings"]["include_correct_paths"] is True
    res = record["result"]
    assert res["examples"] == len(both.train) > len(refine.train)
    dropped = res["dropped"].get("prompt_fills_max_length", 0)
    assert dropped > 0 and res["trained_examples"] == res["examples"] - dropped
    assert f"dropped {dropped} example(s): prompt_fills_max_length" in result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["summary"]["dropped"] == {"prompt_fills_max_length": dropped}


def test_checkpoints_and_resume(run, tiny, tmp_path):
    out = tmp_path / "ckpt"
    base = dict(
        model=str(tiny),
        data=str(run),
        output_dir=out,
        max_length=1024,
        batch_size=2,
        limit=4,
        logging_steps=1,
        eval=False,
        show_progress=False,
        save_steps=2,
        learning_rate=1e-3,
        report=False,
    )
    first = train_sft(SFTSettings(**base, max_steps=2))
    assert (out / "checkpoint-2").is_dir() and first.steps == 2
    second = train_sft(SFTSettings(**base, max_steps=4, resume=True))
    assert second.steps == 4 and second.resumed_from == str(out / "checkpoint-2")
    assert second.losses[:2] == first.losses  # the first two steps come from the checkpoint's history
    assert [s for s, _ in second.losses] == [1, 2, 3, 4]


def test_resolve_actor_roles_and_specs():
    cfg = load_config(QUICKSTART)
    assert resolve_actor("actor", cfg.models).model == "sim-actor"
    assert resolve_actor("annotator", cfg.models).model == "sim-annotator"
    assert resolve_actor("sim", None).engine == "sim"
    spec = resolve_actor("vllm:some/model", None)
    assert (spec.engine, spec.model) == ("vllm", "some/model")
    assert resolve_actor({"engine": "openai", "model": "m", "base_url": "http://x"}, None).base_url == "http://x"
    with pytest.raises(Exception, match="--config"):
        resolve_actor("actor", None)
    with pytest.raises(Exception, match="no such role"):
        resolve_actor("actress", cfg.models)


def test_grpo_prompts_are_balanced(run):
    settings = SFTSettings(model="m", data=str(run), output_dir="o")
    paths = path_rows(str(run), settings)
    chosen = balanced(paths, seed=0, limit=None, balance=True)
    flawed = [p for p in chosen if not p["correct"]]
    assert len(flawed) * 2 == len(chosen) > 0
    assert [p["correct"] for p in chosen[:4]] == [False, True, False, True]
    assert balanced(paths, seed=1, limit=None, balance=True) != chosen  # the seed picks which
    assert len(balanced(paths, seed=0, limit=6, balance=True)) == 6


def test_grpo_with_the_sim_actor_writes_its_reward_log_and_a_loadable_model(run, tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "grpo"
    result = _invoke(
        "critic",
        "--method",
        "grpo",
        "--data",
        str(run),
        "--model",
        str(tiny),
        "--actor",
        "sim",
        "--output",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "1e-4",
        "-q",
        "--set",
        "grpo.num_generations=4",
        "--set",
        "grpo.max_completion_length=32",
        "--set",
        "grpo.beta=0.1",
        "--set",
        "logging_steps=1",
        "--lora",
        "--merge",
        "--set",
        "lora_r=4",
    )
    assert result.exit_code == 0, result.output
    assert "GRPO: 2 step(s)" in result.output and "saved merged model" in result.output
    rows = [json.loads(line) for line in (out / "rewards.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["component"] for r in rows} == {"correction", "verdict", "first_error", "format"}
    assert {r["step"] for r in rows} == {1, 2}
    assert sum(r["component"] == "correction" for r in rows) == 2 * 4  # one group of 4 critiques per step
    assert all(r["reward"] is None or 0.0 <= r["reward"] <= 1.0 for r in rows)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [s for s, _ in report["curves"]["correction reward"]] == [1, 2]
    assert (out / "rewards.png").is_file()
    record = json.loads((out / "amc_train.json").read_text(encoding="utf-8"))
    assert record["settings"]["method"] == "grpo" and record["settings"]["grpo"]["actor"] == "sim"
    assert record["result"]["actor_requests"]["made"] + record["result"]["actor_requests"]["cached"] == 8
    assert not (out / "adapter_config.json").exists()  # LoRA merged: a plain model folder
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"


def test_grpo_refuses_the_actor_and_a_bad_group(run, tmp_path):
    result = _invoke("actor", "--method", "grpo", "--data", str(run), "--model", "m", "--output", str(tmp_path / "o"))
    assert result.exit_code == 2 and "trains critics" in result.output
    result = _invoke(
        "critic",
        "--method",
        "grpo",
        "--data",
        str(run),
        "--model",
        "m",
        "--actor",
        "sim",
        "--output",
        str(tmp_path / "o"),
        "--batch-size",
        "6",
    )
    assert result.exit_code == 2 and "multiple of grpo.num_generations" in result.output


def test_max_length_is_capped_at_the_model_context(tiny):
    from amc.train.common import fit_max_length

    assert fit_max_length(str(tiny), 4096) == 1024 and fit_max_length(str(tiny), 100) == 100
    assert fit_max_length(str(tiny), None) == 1024


def test_quiet_hides_the_progress_bars_of_datasets_transformers_and_the_hub():
    import datasets
    import huggingface_hub.utils as hub
    import transformers

    from amc.train.common import quiet_libraries

    try:
        quiet_libraries(True)
        assert not datasets.is_progress_bar_enabled()
        assert not transformers.utils.logging.is_progress_bar_enabled() and hub.are_progress_bars_disabled()
    finally:
        quiet_libraries(False)
    assert datasets.is_progress_bar_enabled() and transformers.utils.logging.is_progress_bar_enabled()
