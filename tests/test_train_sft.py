"""Slim SFT on a published quickstart dataset with a tiny Llama built offline: loss, labels, LoRA, record, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from amc.cli import app
from amc.config import load_config
from amc.engine.runner import Runner
from amc.publish import ExportOptions, PublishError, build_publication, publish_local
from amc.testing.tiny_model import build_tiny_llama
from amc.train.sft import SFTSettings, TrainError, build_trainer, train_sft

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sft-data")
    cfg = load_config(QUICKSTART, [f"run_dir={tmp}/run", "source.count=16"])
    Runner(cfg, show_progress=False).build("filter")
    out = tmp / "published"
    publish_local(build_publication(cfg, ExportOptions(test_fraction=0.3)), out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Critic prompts plus critiques run to ~1000 tokens with this 512-word vocabulary.
    return build_tiny_llama(tmp_path_factory.mktemp("sft-model") / "tiny", max_position_embeddings=1024)


def _settings(published: Path, tiny: Path, out: Path, **overrides) -> SFTSettings:
    base = dict(
        model=str(tiny),
        data=str(published),
        output_dir=out,
        max_length=1024,
        batch_size=4,
        limit=8,
        logging_steps=1,
        show_progress=False,
    )
    return SFTSettings(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(published: Path, tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    """30 steps on the same 8 examples at a high learning rate: the loss must fall."""
    out = tmp_path_factory.mktemp("sft-full") / "critic"
    settings = _settings(published, tiny, out, max_steps=30, learning_rate=3e-3)
    return settings, train_sft(settings)


def _version(published: Path) -> dict:
    return json.loads((published / "amc_version.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------- training
def test_loss_is_finite_and_falls_on_a_repeated_small_dataset(trained):
    _, result = trained
    assert result.steps == 30 and result.examples == 8 and result.trained_examples == 8
    steps = [s for s, _ in result.losses]
    losses = [v for _, v in result.losses]
    assert steps == list(range(1, 31))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses
    assert math.isfinite(result.train_loss)


def test_evaluates_on_the_test_split(trained, published):
    _, result = trained
    assert result.eval_examples == _version(published)["configs"]["sft_critic"]["test"] > 0
    assert result.eval_loss is not None and math.isfinite(result.eval_loss)
    assert result.evaluated_examples + sum(result.eval_dropped.values()) == result.eval_examples


def test_test_rows_whose_prompt_fills_max_length_are_reported_as_dropped(published, tiny, tmp_path):
    """TRL drops eval rows truncation leaves without a label, as it does training rows: both are reported."""
    from transformers import AutoTokenizer

    from amc.publish import load

    tok = AutoTokenizer.from_pretrained(tiny)

    def prompt_tokens(split: str) -> list[int]:
        rows = load(published, "sft_critic", split=split)
        texts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in rows]
        return [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]

    test_lengths, train_lengths = prompt_tokens("test"), prompt_tokens("train")
    longest = max(test_lengths)
    assert min(train_lengths) < longest  # some training row keeps a completion token
    result = train_sft(_settings(published, tiny, tmp_path / "drop", max_length=longest, max_steps=1, limit=None))
    fills = sum(n >= longest for n in test_lengths)
    assert result.eval_dropped == {"prompt_fills_max_length": fills}
    assert result.evaluated_examples == result.eval_examples - fills


def test_saved_model_loads_and_differs_from_the_base(trained, tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings, result = trained
    model = AutoModelForCausalLM.from_pretrained(result.output_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny)
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    assert tok.chat_template and len(tok) == model.config.vocab_size
    name = "model.layers.0.self_attn.q_proj.weight"
    trained_w, base_w = model.state_dict()[name], base.state_dict()[name]
    assert trained_w.shape == base_w.shape and not torch.equal(trained_w, base_w)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Step 1: 2 + 2 = 4"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    logits = model(**ids).logits
    assert torch.isfinite(logits).all()


def test_the_seed_decides_the_data_order(trained, published, tiny, tmp_path):
    """Another seed, another order of the same examples, other weights (the seed reaches the trainer)."""
    import torch
    from safetensors.torch import load_file

    settings, result = trained
    other = train_sft(settings.model_copy(update={"output_dir": tmp_path / "seed1", "seed": 1}))
    mine, theirs = load_file(result.output_dir / "model.safetensors"), load_file(other.output_dir / "model.safetensors")
    assert mine.keys() == theirs.keys()
    assert not all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert other.examples == result.examples


def test_the_seed_reaches_model_init_and_data_order(published, tiny, tmp_path):
    args = build_trainer(_settings(published, tiny, tmp_path / "x", seed=7, max_steps=1)).args
    assert (args.seed, args.data_seed) == (7, 7)


def test_record_ties_the_model_to_the_dataset_version(trained, published):
    settings, result = trained
    record = json.loads((result.output_dir / "amc_train.json").read_text(encoding="utf-8"))
    version = _version(published)
    assert record["dataset"]["fingerprint"] == version["fingerprint"] == result.dataset["fingerprint"]
    assert record["dataset"]["version"] == version["version"]
    assert record["dataset"]["config"] == "sft_critic" and record["dataset"]["source"] == str(published)
    assert SFTSettings.model_validate(record["settings"]) == settings
    for pkg in ("amc", "trl", "transformers", "torch"):
        assert record["versions"][pkg]
    assert record["result"]["losses"] == [[s, v] for s, v in result.losses]
    assert record["result"]["eval_loss"] == result.eval_loss


def test_only_completion_tokens_carry_labels(published, tiny, tmp_path):
    trainer = build_trainer(_settings(published, tiny, tmp_path / "labels", max_steps=1))
    assert trainer.args.completion_only_loss is True
    assert trainer.args.gradient_checkpointing is False  # SFTConfig's default is on; ours is off unless asked
    tok = trainer.processing_class
    rows = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    assert len({len(r["input_ids"]) for r in rows}) > 1  # padding is exercised
    for row, ids, labels, mask in zip(rows, batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        kept = (labels != -100).nonzero().flatten().tolist()
        assert kept == list(range(kept[0], kept[-1] + 1))  # one block: the completion
        assert (labels[kept] == ids[kept]).all()
        prompt_text = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert tok.decode(ids[: kept[0]]) == prompt_text  # every prompt position is -100
        target = row["completion"][0]["content"] + tok.eos_token
        assert tok.decode(labels[kept]).rstrip("\n") == target
        assert (labels[mask == 0] == -100).all()  # padding is never a target


def test_lora_saves_an_adapter_that_changed(published, tiny, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    result = train_sft(
        _settings(published, tiny, out, lora=True, lora_r=4, lora_alpha=8, max_steps=3, learning_rate=1e-2, eval=False)
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # lora_B starts at zero: nonzero means trained
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), out)
    assert torch.isfinite(model(input_ids=torch.tensor([[1, 5, 9]])).logits).all()
    assert result.eval_loss is None and result.eval_examples == 0
    record = json.loads((out / "amc_train.json").read_text(encoding="utf-8"))
    assert record["settings"]["lora"] is True and record["dataset"]["fingerprint"] == _version(published)["fingerprint"]


# ----------------------------------------------------------------------------------------------- errors
def test_settings_refuse_unknown_keys(published, tiny, tmp_path):
    with pytest.raises(ValidationError, match="lr"):
        SFTSettings(model=str(tiny), data=str(published), output_dir=tmp_path, lr=1e-3)


def test_a_config_without_prompt_completion_is_refused(published, tiny, tmp_path):
    with pytest.raises(TrainError, match="prompt"):
        build_trainer(_settings(published, tiny, tmp_path / "x", config="filtered"))


def test_a_folder_refuses_another_revision(published, tiny, tmp_path):
    with pytest.raises(PublishError, match="v9.9.9"):
        build_trainer(_settings(published, tiny, tmp_path / "x", revision="v9.9.9"))


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_trains_the_refiner_end_to_end(published, tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "refiner"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "sft",
            "--data",
            str(published),
            "--model",
            str(tiny),
            "--output",
            str(out),
            "--config",
            "sft_refine",
            "--max-steps",
            "2",
            "--limit",
            "4",
            "--batch-size",
            "2",
            "--max-length",
            "1024",
            "--lr",
            "1e-3",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained 2 step(s) on 4 example(s)" in result.output and "eval loss" in result.output
    record = json.loads((out / "amc_train.json").read_text(encoding="utf-8"))
    assert record["settings"]["config"] == "sft_refine" and record["settings"]["learning_rate"] == 1e-3
    assert record["dataset"]["fingerprint"] == _version(published)["fingerprint"]
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"


def test_cli_reports_a_bad_config_without_a_traceback(published, tiny, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "sft",
            "--data",
            str(published),
            "--model",
            str(tiny),
            "--output",
            str(tmp_path / "x"),
            "--config",
            "paths",
            "-q",
        ],
    )
    assert result.exit_code == 2 and "prompt" in result.output and result.exception is not None
    assert not isinstance(result.exception, TrainError)  # handled: typer.Exit, not the error itself


def test_a_missing_model_folder_is_named(tmp_path):
    from amc.errors import AmcError
    from amc.train.sft import SFTSettings, train_sft

    with pytest.raises(AmcError, match="no such model folder"):
        train_sft(SFTSettings(model=str(tmp_path / "nomodel"), data=str(tmp_path), output_dir=str(tmp_path / "o")))


def test_cli_trains_on_a_run_directory(published, tiny, tmp_path):
    """`amc train sft --data runs/quickstart` used to die with "BuilderConfig 'sft_critic' not found"."""
    from transformers import AutoModelForCausalLM

    run = published.parent / "run"
    out = tmp_path / "from-run"
    result = CliRunner().invoke(app, [
        "train", "sft", "--data", str(run), "--model", str(tiny), "--output", str(out), "--max-steps", "1",
        "--limit", "2", "--batch-size", "2", "--max-length", "1024", "--no-eval", "-q",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained 1 step(s) on 2 example(s)" in result.output
    record = json.loads((out / "amc_train.json").read_text(encoding="utf-8"))
    assert record["dataset"]["kind"] == "run" and record["dataset"]["source"] == str(run)
    assert record["dataset"]["fingerprint"] == json.loads((run / "filter" / "manifest.json").read_text())["fingerprint"]
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
