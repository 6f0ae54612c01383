"""What the dataset card says plainly (sim roles, class skew, the sft_refine gap, source datasets, the config as
written) and how its plots are drawn (no clipped title, no legend over a bar, no chart that repeats another)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg

from amc.config import FileSource, HubSource, load_config
from amc.engine.runner import Runner, expected_fingerprints
from amc.publish import ExportOptions, build_publication
from amc.publish.card_notes import (
    kept_skew,
    named_dataset,
    public_config,
    public_location,
    refine_gap,
    resolved_values,
    sim_roles,
    skew_text,
    source_datasets,
)
from amc.publish.exports import read_run
from amc.publish.plots import Distribution, distributions, draw, steps_follow_difficulty

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("card-notes")
    overrides = ["source.count=24", "stages.filter.k=1", "stages.critique.include_correct_paths=0.5"]
    config = load_config(QUICKSTART, [f"run_dir={tmp}/run", *overrides])
    Runner(config, show_progress=False).build("filter")
    return config


@pytest.fixture(scope="module")
def run(cfg):
    return read_run(cfg, expected_fingerprints(cfg))


@pytest.fixture(scope="module")
def card(cfg) -> str:
    return build_publication(cfg, ExportOptions(test_fraction=0.0)).files["README.md"].decode()


def _first_paragraph(card: str) -> str:
    body = card.split("\n---\n", 1)[1].split("\n# ", 1)[1].split("\n", 1)[1]
    return body.strip().split("\n\n", 1)[0]


def test_a_sim_run_says_so_in_the_first_paragraph(cfg, run, card):
    assert sim_roles(cfg) == ["actor", "annotator", "injector"]
    first = _first_paragraph(card)
    assert "the actor, the annotator and the injector ran on amc's offline `sim` engine" in first
    assert "not a language model" in first


def test_a_card_without_sim_roles_has_no_sim_paragraph(cfg, run):
    from amc.publish.card import render_card

    models = cfg.models.model_copy(
        update={
            role: getattr(cfg.models, role).model_copy(update={"engine": "vllm", "model": "Qwen/Qwen2.5-7B"})
            for role in ("actor", "injector", "annotator")
        }
    )
    real = dataclasses.replace(run, cfg=cfg.model_copy(update={"models": models}))
    assert sim_roles(real.cfg) == []
    text = render_card(
        run=real,
        options=ExportOptions(),
        splits={"paths": {"train": 1}},
        columns={},
        dists=[],
        sample=None,
        fingerprint="f",
    )
    assert "`sim` engine" not in text and "annotator (`vllm` Qwen/Qwen2.5-7B)" in text


def test_class_skew_is_pointed_out(run, card):
    assert "Wrong 154 times and Correct 4 times" in skew_text(154, 4)
    assert skew_text(12, 9) == "" and skew_text(3, 0) == ""  # balanced, or too few to matter
    verdicts = [d.critique.final_verdict for d in run.kept]
    wrong, right = verdicts.count(False), verdicts.count(True)
    expected = skew_text(wrong, right)
    assert kept_skew(run) == expected
    assert ("Class skew" in card) == bool(expected)
    from amc.publish.card import render_card

    only_wrong = [d for d in run.kept if d.critique.final_verdict is False]
    assert len(only_wrong) >= 20
    skewed = dataclasses.replace(run, kept=only_wrong)
    text = render_card(
        run=skewed,
        options=ExportOptions(),
        splits={"filtered": {"train": len(only_wrong)}},
        columns={},
        dists=[],
        sample=None,
        fingerprint="f",
    )
    assert f"Wrong {len(only_wrong)} times and Correct 0 times" in text


def test_the_card_explains_why_sft_refine_is_smaller(cfg, run, card):
    pub = build_publication(cfg, ExportOptions(test_fraction=0.0))
    refine, kept = pub.splits["sft_refine"]["train"], pub.splits["filtered"]["train"]
    on_correct = sum(d.critique.path.correct for d in run.kept)
    assert kept > refine and on_correct > 0
    text = refine_gap(run, refine)
    assert f"`sft_refine` has {refine} rows, {kept - refine} fewer than `filtered`" in text
    assert f"{on_correct} kept critiques judge a path that was already correct" in text
    assert text in card


def test_local_copies_name_their_dataset_and_never_a_path(cfg, shared_data):
    gsm8k = str(shared_data / "gsm8k")
    assert named_dataset(gsm8k, "gsm8k") == "openai/gsm8k"
    assert named_dataset(str(shared_data / "math500" / "test.jsonl")) == "HuggingFaceH4/MATH-500"
    assert named_dataset("../data/gsm8k/test.jsonl") == "openai/gsm8k"
    assert named_dataset("my-org/my-data") == "my-org/my-data" and named_dataset("/tmp/mine.jsonl") is None
    sources = [
        HubSource(preset="gsm8k", dataset=gsm8k, split="test"),
        FileSource(path=str(shared_data / "math500" / "test.jsonl")),
        FileSource(path="/somewhere/private/mine.jsonl"),
        HubSource(preset="custom", dataset="my-org/my-data"),
    ]
    local = cfg.model_copy(update={"source": sources})
    assert source_datasets(local) == [
        "extended|openai/gsm8k",
        "extended|HuggingFaceH4/MATH-500",
        "original",  # a local file amc cannot name: made here from unknown problems, never its path
        "extended|my-org/my-data",
    ]
    written = yaml.safe_dump([public_config(local), resolved_values(local)])
    assert str(shared_data) not in written and "/somewhere/private" not in written
    assert "local copy of openai/gsm8k (gsm8k)" in written and "local file (mine.jsonl)" in written
    assert public_location("my-org/my-data") == "my-org/my-data"


def test_the_sample_row_never_shows_a_local_path(cfg, run, shared_data):
    from amc.publish.card import render_card

    local = str(shared_data / "gsm8k" / "test.jsonl")
    text = render_card(
        run=run,
        options=ExportOptions(),
        splits={"paths": {"train": 1}},
        columns={},
        dists=[],
        sample={"id": "gsm8k-test-00000", "source": local, "steps": ["1+1=2"]},
        fingerprint="f",
    )
    assert local not in text and str(shared_data) not in text
    assert '"source": "local copy of openai/gsm8k (test.jsonl)"' in text


def test_the_config_is_shown_as_written(cfg, card):
    shown = public_config(cfg)
    assert shown["stages"]["filter"]["k"] == 1 and shown["source"]["count"] == 24  # --set overrides
    assert "prompts_dir" not in shown and "gpu_memory_utilization" not in shown["models"]["actor"]  # defaults
    assert "run_dir" not in shown
    resolved = resolved_values(cfg)
    assert resolved["models"]["annotator"] == "sim: sim-annotator" and resolved["filter"]["k"] == 1
    assert "gpu_memory_utilization" not in card


def _renderer(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_plots_keep_titles_inside_and_legends_off_the_bars(run):
    dists = distributions(run)
    assert dists
    tall = Distribution("difficulty", "Difficulty", "difficulty", {"paths": {"2": 80, "5": 79}, "filtered": {"5": 78}})
    for d in [*dists, tall]:
        fig = draw(d)
        r = _renderer(fig)
        title = fig.axes[0].title.get_window_extent(r)
        assert title.x0 >= 0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1, d.key
        legend = fig.legends[0].get_window_extent(r)
        assert legend.x1 <= fig.bbox.x1, d.key
        for bar in fig.axes[0].patches:
            assert not legend.overlaps(bar.get_window_extent(r)), d.key


def test_steps_per_path_is_left_out_when_it_repeats_difficulty(run):
    assert steps_follow_difficulty([(2, 3), (4, 5), (None, 9)]) == 1
    assert steps_follow_difficulty([(2, 3), (4, 6)]) is None
    keys = {d.key: d for d in distributions(run)}
    assert all(len(p.steps) - p.difficulty == 1 for p in run.paths)  # synthetic: one line per operation + answer
    assert "steps_per_path" not in keys and "difficulty + 1 steps" in keys["difficulty"].note
