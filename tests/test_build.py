"""End-to-end builds of the quickstart on the offline sim engine: resume, caching, staleness, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_dataset
from typer.testing import CliRunner

from amc.cli import app
from amc.engine.rundir import RunDir
from amc.engine.store import shard_name

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"
SMALL = ["source.count=24", "shard_size=4"]


def _build(run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "amc.cli", "build", "-q", "--config", str(QUICKSTART), "--set", f"run_dir={run_dir}"]
    for s in [*SMALL, *extra]:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def _status(run_dir: Path, *extra: str) -> dict:
    args = ["status", "--json", "--config", str(QUICKSTART), "--set", f"run_dir={run_dir}"]
    for s in [*SMALL, *extra]:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("qs") / "run"
    res = _build(run_dir)
    assert res.returncode == 0, res.stderr + res.stdout
    return run_dir


def test_quickstart_builds_a_filtered_dataset(built):
    ds = load_dataset("parquet", data_files=str(built / "filter" / "data" / "*.parquet"), split="train")
    assert len(ds) > 0
    row = ds[0]
    crit = row["critique"]
    assert crit["step_verdicts"] and {"index", "step", "correct", "explanation"} <= set(crit["step_verdicts"][0])
    assert crit["final_verdict"] is not None
    assert row["n"] == 4 and row["k"] == 2
    assert all(r["n_correct"] >= r["k"] for r in ds)
    assert all(r["n_correct"] == sum(x["correct"] for x in r["refinements"]) for r in ds)
    # every kept critique of a flawed path says so in its final verdict (the verdict rule is on)
    assert all(r["critique"]["final_verdict"] == r["critique"]["path"]["correct"] for r in ds)


def test_every_stage_has_a_manifest_and_readable_shards(built):
    for stage in ("problems", "sample", "inject", "critique", "filter"):
        manifest = json.loads((built / stage / "manifest.json").read_text())
        assert manifest["status"] == "done"
        assert manifest["rows"] == sum(s["rows"] for s in manifest["shards"].values())
        ds = load_dataset("parquet", data_files=str(built / stage / "data" / "*.parquet"), split="train")
        assert len(ds) == manifest["rows"]
    funnel = json.loads((built / "filter" / "manifest.json").read_text())["funnel"]
    dropped = sum(v for k, v in funnel.items() if k.startswith("dropped:"))
    assert funnel["in"] == funnel["kept"] + dropped


def test_second_build_makes_no_request_and_changes_nothing(built):
    before = _files(built / "filter" / "data")
    res = _build(built)
    assert res.returncode == 0, res.stderr
    status = _status(built)
    assert status["last_build"]["requests"] == {"made": 0, "cached": 0}
    assert all(s["state"] == "done" for s in status["stages"].values())
    assert _files(built / "filter" / "data") == before


def test_changing_k_rebuilds_only_the_filter(built, tmp_path):
    # on a copy: the module's build stays as it is for the other tests, whatever order they run in
    built = shutil.copytree(built, tmp_path / "copy")
    status = _status(built, "stages.filter.k=3")
    assert status["stages"]["filter"]["state"] == "stale"
    assert all(status["stages"][s]["state"] == "done" for s in ("problems", "sample", "inject", "critique"))
    log = tmp_path / "requests.jsonl"
    res = _build(built, "stages.filter.k=3", env={"AMC_SIM_REQUEST_LOG": str(log)})
    assert res.returncode == 0, res.stderr
    last = _status(built, "stages.filter.k=3")["last_build"]
    actions = {s["name"]: s["action"] for s in last["stages"]}
    assert actions == {
        "problems": "skipped",
        "sample": "skipped",
        "inject": "skipped",
        "critique": "skipped",
        "filter": "built",
    }
    # the refinements were asked before with the same prompts and seeds: all come from the cache
    assert last["requests"]["made"] == 0 and last["requests"]["cached"] > 0
    assert not log.exists()
    ds = load_dataset("parquet", data_files=str(built / "filter" / "data" / "*.parquet"), split="train")
    assert all(r["k"] == 3 and r["n_correct"] >= 3 for r in ds)


def test_sigkill_during_critique_then_resume(tmp_path):
    reference = tmp_path / "reference"
    assert _build(reference).returncode == 0

    run_dir = tmp_path / "killed"
    log1, log2 = tmp_path / "log1.jsonl", tmp_path / "log2.jsonl"
    args = [sys.executable, "-m", "amc.cli", "build", "-q", "--config", str(QUICKSTART), "--set", f"run_dir={run_dir}"]
    for s in SMALL:
        args += ["--set", s]
    env = {**os.environ, "AMC_SIM_DELAY": "0.02", "AMC_SIM_REQUEST_LOG": str(log1)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rundir = RunDir(run_dir)  # the manifest with its journal: shards are recorded as journal lines
    deadline = time.time() + 300
    done_shards = 0
    while time.time() < deadline and proc.poll() is None:
        state = rundir.read_manifest("critique")
        done_shards = len(state["shards"]) if state else 0
        if done_shards >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = rundir.read_manifest("critique")
    assert state["status"] == "partial" and 2 <= len(state["shards"]) < state["num_shards"], "killed too late"
    assert not (run_dir / "filter").exists()
    # (a shard written just before the kill but not yet in the manifest is redone: only the listed ones count)
    listed = [run_dir / "critique" / "data" / shard_name(int(i), state["num_shards"]) for i in state["shards"]]
    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in listed if p.is_file()}
    assert finished

    res = _build(run_dir, env={"AMC_SIM_REQUEST_LOG": str(log2)})
    assert res.returncode == 0, res.stderr
    # the shards finished before the kill are kept as they were: not redone, not rewritten
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished} == finished
    assert _files(run_dir / "filter" / "data") == _files(reference / "filter" / "data")
    ds = load_dataset("parquet", data_files=str(run_dir / "critique" / "data" / "*.parquet"), split="train")
    assert len(ds["id"]) == len(set(ds["id"]))

    first = [json.loads(line) for line in log1.read_text().splitlines()]
    second = [json.loads(line) for line in log2.read_text().splitlines()]
    key = lambda r: (r["id"], r["model"], r["seed"])  # noqa: E731
    # no request of the resumed build repeats one of the shards finished before the kill
    problem_ids = sorted({r["id"].split("/")[0] for r in first})
    finished = {pid for pid in problem_ids if int(pid.split("-")[1]) // 4 < len(state["shards"])}
    repeated = {key(r) for r in second} & {key(r) for r in first if r["id"].split("/")[0] in finished}
    assert repeated == set()
    # and nothing earlier than the critique stage is asked again
    assert not [r for r in second if not r["id"].endswith(("/critique/0", "/critique/1", "/refine"))]


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('{"question": "1+1?", "answer": "2"}\n{"answer": "3"}\n', ["row 2", "question"]),
        ('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": ""}\n', ["row 2", "answer"]),
    ],
)
def test_bad_source_rows_stop_before_any_engine(tmp_path, content, needles):
    data = tmp_path / "problems.jsonl"
    data.write_text(content)
    log = tmp_path / "requests.jsonl"
    res = _build(
        tmp_path / "run", "source={kind: file, path: " + str(data) + "}", env={"AMC_SIM_REQUEST_LOG": str(log)}
    )
    assert res.returncode == 2
    message = " ".join((res.stderr + res.stdout).split())
    assert str(data) in message.replace(" ", "") or data.name in message
    for needle in needles:
        assert needle in message
    assert not log.exists()
    assert not (tmp_path / "run" / "sample").exists()


def test_unknown_key_stops_before_any_engine(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(QUICKSTART.read_text().replace("  inject:", "  inject:\n    per_problme: 2", 1))
    log = tmp_path / "requests.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "amc.cli", "build", "--config", str(cfg), "--set", f"run_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        env={**os.environ, "AMC_SIM_REQUEST_LOG": str(log)},
    )
    assert res.returncode == 2
    message = " ".join(res.stderr.split())
    assert "stages.inject.per_problme" in message and "unknown key" in message
    assert not log.exists() and not (tmp_path / "run").exists()


def test_a_build_hides_its_problems_from_the_cyclic_collector_while_it_runs_and_only_then(tmp_path, monkeypatch):
    """The problems live for the whole build: they are frozen out of the garbage collector's full collections
    (which would otherwise walk a heap that grows with the problem count), and a build leaves the process's
    collector as it found it, also when it fails."""
    import gc

    from amc.config import load_config
    from amc.engine.runner import Runner
    from amc.stages.sample import SampleStage

    seen: list[int] = []
    real_run = SampleStage.run

    def run(self, rows, ctx):
        seen.append(gc.get_freeze_count())
        return real_run(self, rows, ctx)

    monkeypatch.setattr(SampleStage, "run", run)
    before = gc.get_freeze_count()
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path / 'run'}", "source.count=8", "shard_size=4"])
    Runner(cfg, show_progress=False).build("sample")
    assert seen and all(n > before for n in seen)  # the problems (and more) were frozen during the stage
    assert gc.get_freeze_count() == before

    def boom(self, rows, ctx):
        raise RuntimeError("stage crashed")

    monkeypatch.setattr(SampleStage, "run", boom)
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path / 'run2'}", "source.count=8", "shard_size=4"])
    with pytest.raises(RuntimeError, match="stage crashed"):
        Runner(cfg, show_progress=False).build("sample")
    assert gc.get_freeze_count() == before
