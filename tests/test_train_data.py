"""Training data from every source: a run directory, a published folder, a prompt/completion file; bad rows named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amc.config import load_config
from amc.engine.runner import Runner
from amc.publish import ExportOptions, build_publication, publish_local
from amc.train.data import TrainDataError, load_sft_data, source_kind

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished quickstart run and its publication with the same test fraction."""
    tmp = tmp_path_factory.mktemp("train-data")
    cfg = load_config(QUICKSTART, [f"run_dir={tmp}/run", "source.count=12"])
    Runner(cfg, show_progress=False).build("filter")
    publish_local(build_publication(cfg, ExportOptions(test_fraction=0.3)), tmp / "published")
    return tmp / "run", tmp / "published"


def _rows(ds) -> list[tuple]:
    return sorted((json.dumps(r["prompt"]), json.dumps(r["completion"])) for r in ds)


@pytest.mark.parametrize("config", ["sft_critic", "sft_refine"])
def test_a_run_directory_gives_the_rows_of_its_publication(built, config):
    run, published = built
    from_run = load_sft_data(run, config, test_fraction=0.3)
    from_folder = load_sft_data(published, config)
    assert (from_run.kind, from_folder.kind) == ("run", "folder")
    assert len(from_run.train) > 0 and from_run.test is not None
    assert _rows(from_run.train) == _rows(from_folder.train)  # same rows, same split by problem
    assert _rows(from_run.test) == _rows(from_folder.test)
    assert from_run.identity["fingerprint"] == json.loads((run / "filter" / "manifest.json").read_text())["fingerprint"]


def test_actor_data_can_add_the_correct_paths(built):
    run, published = built
    refine = load_sft_data(run, "sft_refine", eval=False)
    actor = load_sft_data(run, "sft_refine", eval=False, include_correct_paths=True)
    added = len(actor.train) - len(refine.train)
    assert added > 0 and actor.test is None
    solve = actor.train[len(actor.train) - 1]
    assert "Solve the problem step by step" in solve["prompt"][0]["content"]
    assert solve["completion"][0]["content"].strip().endswith(".")
    from_folder = load_sft_data(published, "sft_refine", eval=False, include_correct_paths=True)
    assert len(from_folder.train) > len(load_sft_data(published, "sft_refine", eval=False).train)


def test_an_unfinished_run_is_refused_with_the_command_to_finish_it(tmp_path):
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path}/run", "source.count=4"])
    Runner(cfg, show_progress=False).build("sample")
    with pytest.raises(TrainDataError, match="amc build --stage filter"):
        load_sft_data(tmp_path / "run", "sft_critic")


def test_prompt_completion_files_parquet_and_jsonl(built, tmp_path):
    run, _ = built
    rows = load_sft_data(run, "sft_critic", eval=False).train
    rows.to_parquet(str(tmp_path / "train.parquet"))
    rows.to_json(str(tmp_path / "train.jsonl"), lines=True)
    for name in ("train.parquet", "train.jsonl"):
        data = load_sft_data(tmp_path / name)
        assert data.kind == "file" and data.test is None
        assert _rows(data.train) == _rows(rows)
        assert data.identity["fingerprint"]


@pytest.mark.parametrize(
    ("row", "field", "what"),
    [
        ({"prompt": "hi", "completion": [{"role": "assistant", "content": "x"}]}, "prompt", "non-empty list"),
        ({"prompt": [{"role": "user", "content": "q"}], "completion": []}, "completion", "non-empty list"),
        ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "x"}]},
         "completion", "assistant messages only"),
        ({"prompt": [{"role": "boss", "content": "q"}], "completion": [{"role": "assistant", "content": "x"}]},
         "prompt", "message 0"),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_by_file_row_and_field(tmp_path, row, field, what):
    good = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(TrainDataError, match=rf"bad\.jsonl: row 1: field '{field}': .*{what}"):
        load_sft_data(path)


def test_a_file_without_the_columns_is_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"messages": []}) + "\n", encoding="utf-8")
    with pytest.raises(TrainDataError, match="no completion, prompt column"):
        load_sft_data(path)


def test_source_kinds(built, tmp_path):
    run, published = built
    assert source_kind(run) == "run" and source_kind(published) == "folder" and source_kind("org/name") == "hub"
    with pytest.raises(TrainDataError, match="no such file"):
        source_kind(tmp_path / "missing.parquet")
    with pytest.raises(TrainDataError, match="not a Hub dataset id"):
        source_kind("./nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainDataError, match="neither a run directory"):
        source_kind(tmp_path / "empty")


def test_the_report_shows_a_small_learning_rate_as_it_is():
    """A learning rate of 5e-05 was printed as 0.0001 (four decimals): the report must not misstate settings."""
    from amc.train.report import _markdown

    text = _markdown("SFT", {}, {"learning rate": [(1, 5e-05), (60, 8.3e-07)], "train loss": [(1, 1.0277)]}, [])
    assert "learning rate: 5e-05 (step 1) -> 8.3e-07 (step 60)" in text
    assert "train loss: 1.028 (step 1) -> 1.028 (step 1)" in text
