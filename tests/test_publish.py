"""Exports, splits by problem, dataset cards, versions and the local publisher, on a quickstart run built once."""

from __future__ import annotations

import io
import json
import shutil
from collections import defaultdict
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from typer.testing import CliRunner

import amc
from amc.cli import app
from amc.config import load_config
from amc.engine.runner import Runner, read_manifest
from amc.engine.store import read_records, write_records
from amc.prompts import load_template
from amc.publish import ExportOptions, PublishError, build_publication, publish_local, split_of
from amc.publish.card import public_config
from amc.publish.exports import read_run
from amc.records import FilterDecision, Reject
from amc.redact import redact

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"
OVERRIDES = ["source.count=24"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("publish-run")
    config = load_config(QUICKSTART, [f"run_dir={tmp}/run", *OVERRIDES])
    Runner(config, show_progress=False).build("filter")
    return config


@pytest.fixture(scope="module")
def pub(cfg):
    return build_publication(cfg, ExportOptions(test_fraction=0.3))


def _tables(pub) -> dict[str, dict[str, pa.Table]]:
    """config -> split -> table, read back from the publication's Parquet bytes."""
    out: dict[str, dict[str, list[pa.Table]]] = defaultdict(lambda: defaultdict(list))
    for path, data in pub.operations():
        if path.endswith(".parquet"):
            config, name = path.split("/")
            out[config][name.split("-")[0]].append(pq.read_table(io.BytesIO(data)))
    return {c: {s: pa.concat_tables(ts) for s, ts in splits.items()} for c, splits in out.items()}


def _kept(cfg) -> list[FilterDecision]:
    files = sorted((cfg.run_path / "filter" / "data").glob("*.parquet"))
    return [d for f in files for d in read_records(f, FilterDecision)]


# ----------------------------------------------------------------------------------------------- layout, splits
def test_layout_has_every_config_in_hub_form(pub):
    assert set(pub.splits) == {"filtered", "paths", "critiques", "sft_critic", "sft_refine"}
    for path in pub.files:
        if path.endswith(".parquet"):
            config, name = path.split("/")
            assert name.split("-", 1)[0] in ("train", "test")
            assert name.endswith("-00000-of-00001.parquet")
    assert {"README.md", "amc_version.json"} <= set(pub.files)
    assert any(p.startswith("plots/") and p.endswith(".png") for p in pub.files)
    version = json.loads(pub.files["amc_version.json"])
    assert version["version"] == "0.1.0" and version["fingerprint"] == pub.fingerprint
    assert version["files"]["README.md"] == pub.hashes()["README.md"]


def test_no_problem_is_in_both_train_and_test(pub):
    tables = _tables(pub)
    problems: dict[str, set[str]] = {"train": set(), "test": set()}
    for config, splits in tables.items():
        assert set(splits) == {"train", "test"}, config  # 24 problems at 30%: both splits hold rows
        for split, table in splits.items():
            problems[split] |= set(table.column("problem_id").to_pylist())
    assert problems["train"] and problems["test"]
    assert not problems["train"] & problems["test"]
    assert all(split_of(p, 0.3) == "test" for p in problems["test"])


def test_split_of_is_stable_and_near_the_fraction():
    ids = [f"gsm8k-train-{i:05d}" for i in range(5000)]
    share = sum(split_of(i, 0.1) == "test" for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [split_of(i, 0.1) for i in ids[:50]] == [split_of(i, 0.1) for i in ids[:50]]
    assert all(split_of(i, 0.0) == "train" for i in ids)
    # A larger fraction only moves problems from train to test, never back: versions stay comparable.
    assert {i for i in ids if split_of(i, 0.1) == "test"} <= {i for i in ids if split_of(i, 0.2) == "test"}


def test_shards_split_large_tables(cfg):
    small = build_publication(cfg, ExportOptions(test_fraction=0.0, shard_rows=10))
    shards = sorted(p for p in small.files if p.startswith("paths/"))
    rows = small.splits["paths"]["train"]
    assert len(shards) == -(-rows // 10) and shards[0] == f"paths/train-00000-of-{len(shards):05d}.parquet"
    assert "test" not in small.splits["paths"]


# ----------------------------------------------------------------------------------------------- config contents
def test_filtered_is_the_kept_filter_rows_flattened(cfg, pub):
    kept = {d.id: d for d in _kept(cfg)}
    rows = [r for t in _tables(pub)["filtered"].values() for r in t.to_pylist()]
    assert sorted(r["id"] for r in rows) == sorted(kept)
    for row in rows:
        d = kept[row["id"]]
        c, p = d.critique, d.critique.path
        assert row["question"] == p.question and row["steps"] == p.steps and row["path_correct"] == p.correct
        assert row["strategy"] == p.strategy and row["error_step"] == p.error_step
        assert row["first_error_step"] == c.first_error_step and row["final_verdict"] == c.final_verdict
        assert [v["correct"] for v in row["step_verdicts"]] == [v.correct for v in c.step_verdicts]
        assert row["critique"] == c.raw and (row["n"], row["k"], row["n_correct"]) == (d.n, d.k, d.n_correct)
        assert [r["correct"] for r in row["refinements"]] == [r.correct for r in d.refinements]


def test_sft_critic_is_the_critic_prompt_without_hints(cfg, pub):
    kept = {d.id: d for d in _kept(cfg)}
    critic = load_template("critic")
    rows = [r for t in _tables(pub)["sft_critic"].values() for r in t.to_pylist()]
    assert len(rows) == len(kept)
    for row in rows:
        d = kept[row["id"]]
        (user,) = row["prompt"]
        expected = critic.render(question=d.critique.path.question, steps=d.critique.path.steps)
        assert user == {"role": "user", "content": expected[0].content}
        assert "Step 1: " + d.critique.path.steps[0] in user["content"]
        assert "hint" not in user["content"].lower() and "reference answer" not in user["content"].lower()
        assert row["completion"] == [{"role": "assistant", "content": d.critique.raw.strip()}]


def test_a_json_critique_becomes_a_text_target_for_the_critic(cfg):
    from amc.critique_format import render_json
    from amc.publish.exports import critic_target

    c = _kept(cfg)[0].critique
    as_json = c.model_copy(
        update={"format": "json", "raw": render_json(c.step_verdicts, bool(c.final_verdict), c.final_explanation)}
    )
    target = critic_target(as_json)
    assert target.startswith("Step sentence: " + c.step_verdicts[0].step)
    assert f"Correctness of the final answer: {'Correct' if c.final_verdict else 'Wrong'}" in target
    assert critic_target(c) == c.raw.strip()


def test_sft_refine_targets_a_correct_refinement_of_a_flawed_path(cfg, pub):
    kept = {d.id: d for d in _kept(cfg)}
    rows = [r for t in _tables(pub)["sft_refine"].values() for r in t.to_pylist()]
    assert rows
    for row in rows:
        decision_id, _, index = row["id"].rpartition("/r")
        d = kept[decision_id]
        target = d.refinements[int(index)]
        assert not d.critique.path.correct and target.correct and not target.shortcut
        assert row["completion"] == [{"role": "assistant", "content": target.text.strip()}]
        assert d.critique.raw.strip() in row["prompt"][-1]["content"]
    # Every kept critique of a flawed path with a good refinement gives exactly one example.
    eligible = [
        d
        for d in kept.values()
        if not d.critique.path.correct and any(r.correct and not r.shortcut for r in d.refinements)
    ]
    assert len(rows) == len(eligible)


def test_step_labels_and_rejects_configs(cfg, tmp_path: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(cfg.run_path, run_dir)
    copy = load_config(
        QUICKSTART,
        [
            f"run_dir={run_dir}",
            *OVERRIDES,
            "stages.filter.step_labels.enabled=true",
            "stages.filter.step_labels.rollouts=2",
        ],
    )
    Runner(copy, show_progress=False).build("filter")  # only the filter is rebuilt, now with labels
    labelled = [
        r for f in sorted((run_dir / "filter" / "step_labels").glob("*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    assert labelled
    write_records(
        run_dir / "sample" / "rejects" / "00009-of-00009.parquet",
        [Reject(stage="sample", row_id="synthetic-00001/sample", reason="engine_error", detail="boom")],
        Reject,
    )
    out = build_publication(copy, ExportOptions(test_fraction=0.3, include_rejects=True))
    tables = _tables(out)
    got = [r for t in tables["step_labels"].values() for r in t.to_pylist()]
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in labelled)
    assert all(len(r["soft_labels"]) == len(r["steps"]) for r in got)
    for split, t in tables["step_labels"].items():
        assert all(split_of(pid, 0.3) == split for pid in t.column("problem_id").to_pylist())
    for split, t in tables["rejects"].items():
        assert all(split_of(row["row_id"].split("/")[0], 0.3) == split for row in t.to_pylist())
    rejects = [row for t in tables["rejects"].values() for row in t.to_pylist()]
    boom = {"stage": "sample", "row_id": "synthetic-00001/sample", "reason": "engine_error", "detail": "boom"}
    assert boom in rejects
    counted = {name: read_manifest(cfg.run_path / name)["rejects"] for name in ("sample", "inject", "critique")}
    for stage, n in counted.items():
        assert sum(r["stage"] == stage for r in rejects) == n + (stage == "sample")
    assert "`step_labels`" in out.files["README.md"].decode()


def test_a_stale_run_is_refused(cfg):
    changed = cfg.model_copy(
        update={"stages": cfg.stages.model_copy(update={"filter": cfg.stages.filter.model_copy(update={"k": 1})})}
    )
    with pytest.raises(PublishError, match="stale"):
        build_publication(changed)


# ----------------------------------------------------------------------------------------------- the card
def test_card_metadata_parses_and_validates(pub):
    card = DatasetCard(pub.files["README.md"].decode())
    data = card.data.to_dict()
    DatasetCardData(**data)  # validates field types
    assert [c["config_name"] for c in data["configs"]] == list(pub.splits)
    assert data["configs"][0]["default"] is True and data["configs"][0]["config_name"] == "filtered"
    for c in data["configs"]:
        assert {f["split"] for f in c["data_files"]} == set(pub.splits[c["config_name"]])
    assert data["license"] == "mit" and data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"] and data["source_datasets"] == ["original"]
    assert data["pretty_name"] == "quickstart" and "critique" in data["tags"]


def test_card_has_provenance_funnel_distributions_sample_and_config(cfg, pub):
    text = pub.files["README.md"].decode()
    for path in [p for p in pub.files if p.startswith("plots/")]:
        assert f"]({path})" in text
        assert pub.files[path].startswith(b"\x89PNG")
    for name in ("problems", "sample", "inject", "critique", "filter"):
        manifest = read_manifest(cfg.run_path / name)
        assert f"| `{name}` | {manifest['rows']} |" in text
        for rule in (k.removeprefix("dropped:") for k in manifest["funnel"] if k.startswith("dropped:")):
            assert f"dropped by `{rule}`" in text
    for ref in read_manifest(cfg.run_path / "critique")["templates"]:
        assert f"`{ref}`" in text
    assert "math-verify (verifier) `" in text and "`sim-annotator`" in text and "`critic@1`" in text
    assert "Position of the first error" in text and "| step |" in text
    assert f"content fingerprint | `{pub.fingerprint}`" in text
    sample = json.loads(text.split("## A sample row of `filtered`\n\n```json\n")[1].split("```")[0])
    assert sample["id"] and sample["steps"]
    config_yaml = text.split("## Pipeline config")[1].split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(config_yaml) == public_config(cfg)


def test_secrets_never_reach_the_card(cfg):
    token = "hf_" + "A1b2C3d4E5f6G7h8I9j0" * 2
    annotator = cfg.models.annotator.model_copy(
        update={
            "api_key_env": "MY_SECRET_KEY_VAR",
            "base_url": "https://alice:pa55w0rd@api.example.com/v1?api_key=sk-liveabcdefghijklmnop",
            "extra_body": {"token": token, "max_tokens": 77, "note": f"Bearer {token}", "x": "Zq8" * 12},
        }
    )
    secret = cfg.model_copy(update={"models": cfg.models.model_copy(update={"annotator": annotator})})
    out = build_publication(secret, run=read_run(secret))
    blob = b"".join(out.files.values())
    for leaked in (token, "MY_SECRET_KEY_VAR", "pa55w0rd", "sk-liveabcdefghijklmnop", "Zq8" * 12):
        assert leaked.encode() not in blob, leaked
    public = public_config(secret)["models"]["annotator"]
    assert "api_key_env" not in public and public["extra_body"]["max_tokens"] == 77
    assert public["base_url"] == "https://api.example.com/v1?api_key=<redacted>"
    assert redact({"revision": "0123456789abcdef0123456789abcdef01234567"})["revision"].startswith("0123")


# ----------------------------------------------------------------------------------------------- local publisher
def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_local_publish_reads_back_and_republish_is_a_no_op(cfg, pub, tmp_path: Path):
    out = tmp_path / "release"
    first = publish_local(pub, out)
    assert sorted(first.written) == sorted(pub.files) and not first.no_op
    loaded = datasets.load_dataset(str(out), "filtered")
    assert {s: loaded[s].num_rows for s in loaded} == pub.splits["filtered"]
    critic = amc.load(out, "sft_critic", split="test")
    assert critic.num_rows == pub.splits["sft_critic"]["test"] and critic[0]["prompt"][0]["role"] == "user"
    assert amc.load(out, "paths", revision="v0.1.0").num_rows == pub.splits["paths"]["train"]
    with pytest.raises(PublishError, match="holds version 0.1.0"):
        amc.load(out, "paths", revision="v0.2.0")

    before = _mtimes(out)
    again = publish_local(build_publication(cfg, ExportOptions(test_fraction=0.3)), out)
    assert again.no_op and again.previous_fingerprint == pub.fingerprint
    assert _mtimes(out) == before  # nothing rewritten


def test_local_publish_removes_stale_files_only_where_amc_owns_them(cfg, pub, tmp_path: Path):
    out = tmp_path / "release"
    publish_local(pub, out)
    (out / "rejects").mkdir()
    (out / "rejects" / "train-00000-of-00001.parquet").write_bytes(b"old")
    (out / "NOTES.md").write_text("kept")
    unsplit = build_publication(cfg, ExportOptions(test_fraction=0.0))
    with pytest.raises(PublishError, match="same version"):  # other data under the version the folder holds
        publish_local(unsplit, out)
    assert (out / "rejects" / "train-00000-of-00001.parquet").read_bytes() == b"old"  # nothing touched
    result = publish_local(unsplit, out, force=True)
    assert "rejects/train-00000-of-00001.parquet" in result.deleted and not (out / "rejects").exists()
    assert not list(out.glob("*/test-*.parquet")) and (out / "NOTES.md").read_text() == "kept"
    assert set(datasets.load_dataset(str(out), "filtered")) == {"train"}


def test_local_publish_refuses_a_folder_that_is_not_a_publication(pub, tmp_path: Path):
    foreign = tmp_path / "project"
    (foreign / "plots").mkdir(parents=True)
    (foreign / "plots" / "verdicts.png").write_bytes(b"mine")
    (foreign / "README.md").write_text("my project")
    with pytest.raises(PublishError, match="not empty"):
        publish_local(pub, foreign)
    assert (foreign / "README.md").read_text() == "my project" and (foreign / "plots" / "verdicts.png").exists()


# ----------------------------------------------------------------------------------------------- the CLI
def test_cli_export_and_publish_to_a_folder(cfg, tmp_path: Path):
    runner = CliRunner()
    base = ["-c", str(QUICKSTART), "--set", f"run_dir={cfg.run_dir}", *[a for o in OVERRIDES for a in ("--set", o)]]
    exported = runner.invoke(app, ["export", *base, "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    published = runner.invoke(app, ["publish", *base, "--to", str(tmp_path / "folder")])
    assert published.exit_code == 0, published.output
    files = {p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*") if p.is_file()}
    assert files == {
        p.relative_to(tmp_path / "folder").as_posix() for p in (tmp_path / "folder").rglob("*") if p.is_file()
    }
    again = runner.invoke(app, ["publish", *base, "--to", str(tmp_path / "folder")])
    assert again.exit_code == 0 and "up to date" in again.output
    neither = runner.invoke(app, ["publish", *base])
    assert neither.exit_code == 2 and "exactly one of" in neither.output
    tag_local = runner.invoke(app, ["publish", *base, "--to", str(tmp_path / "f2"), "--tag", "v0.1.0"])
    assert tag_local.exit_code == 2 and not (tmp_path / "f2").exists()


def test_a_version_whose_filter_kept_nothing_says_so(tmp_path: Path):
    # an annotator whose every final verdict is wrong: the verdict rule drops every critique
    careless = [*OVERRIDES, "models.annotator.error_rate=1.0"]
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path / 'run'}", *careless])
    Runner(cfg, show_progress=False).build("filter")
    assert read_manifest(cfg.run_path / "filter")["rows"] == 0
    out = build_publication(cfg, ExportOptions(test_fraction=0.3))
    assert "filtered" not in out.splits and "paths" in out.splits
    card = out.files["README.md"].decode()
    assert "The filter kept no critique" in card and "Fields of `filtered`" not in card
    res = CliRunner().invoke(
        app,
        [
            "export",
            "-c",
            str(QUICKSTART),
            "--set",
            f"run_dir={tmp_path / 'run'}",
            *[x for o in careless for x in ("--set", o)],
        ],
    )
    assert res.exit_code == 0 and "kept no critique" in res.output
