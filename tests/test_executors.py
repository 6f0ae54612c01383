"""The stage registry, the plan, and executors: the same dataset, byte for byte, whoever runs the shards."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from amc.config import ModelConfig, load_config
from amc.engine.executors import LocalExecutor, WorkerCache
from amc.engine.plan import expected_fingerprints, is_stale, plan, shards_to_run, stages_until
from amc.engine.runner import Runner
from amc.stages import STAGE_NAMES, STAGE_ORDER, get_stage

ROOT = Path(__file__).resolve().parents[1]


def _cfg(run_dir: Path, *extra: str, problems: int = 12):
    return load_config(
        ROOT / "pipelines" / "quickstart.yaml",
        [
            f"source.count={problems}",
            "shard_size=3",
            f"run_dir={run_dir}",
            "stages.filter.n=2",
            "stages.filter.k=1",
            *extra,
        ],
    )


def _files(run_dir: Path) -> dict[str, str]:
    """sha256 of every Parquet file a build wrote, by path inside the run directory."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.rglob("*.parquet")}


def _made(run_dir: Path) -> int:
    return json.loads((run_dir / "build.json").read_text())["requests"]["made"]


# ------------------------------------------------------------------------------------------ registry and plan
def test_one_registry_orders_the_stages_by_what_each_reads():
    from amc import config

    assert config.STAGES == STAGE_NAMES == ("problems", "sample", "inject", "critique", "filter")
    for before, stage in zip(STAGE_ORDER, STAGE_ORDER[1:], strict=False):
        assert stage.input_stage == before.name
    with pytest.raises(ValueError, match="stages are problems, sample"):
        stages_until("sampel")
    with pytest.raises(ValueError, match="unknown stage 'x'"):
        get_stage("x")


def test_stages_declare_what_they_need(tmp_path: Path):
    cfg = _cfg(tmp_path)
    assert all(s.resources(cfg).light for s in STAGE_ORDER)  # sim everywhere: shards may run in many processes
    assert get_stage("problems").resources(cfg).engines == {}
    assert "grading" in get_stage("filter").resources(cfg).cpu_work
    vllm = {"engine": "vllm", "model": "m", "tensor_parallel_size": 2}
    big = _cfg(tmp_path, f"models.annotator={json.dumps(vllm)}")
    critique = get_stage("critique").resources(big)
    assert (critique.gpus_per_replica, critique.light) == (2, False)
    assert get_stage("sample").resources(big).gpus_per_replica == 0  # the actor is still sim
    two = _cfg(tmp_path, 'stages.sample.actors=[{"model": "a"}, {"model": "b"}]')
    actors = get_stage("sample").resources(two).engines["actor"]
    assert [m.model for m in actors] == ["a", "b"] and all(isinstance(m, ModelConfig) for m in actors)


def test_the_plan_chains_fingerprints_and_names_what_is_left(tmp_path: Path):
    cfg = _cfg(tmp_path)
    steps = plan(cfg, "critique")
    assert [p.stage.name for p in steps] == ["problems", "sample", "inject", "critique"]
    fps = expected_fingerprints(cfg)
    assert [p.fingerprint for p in steps] == [fps[n] for n in ("problems", "sample", "inject", "critique")]
    changed = expected_fingerprints(_cfg(tmp_path, "stages.inject.per_problem=2"))
    assert [changed[n] == fps[n] for n in STAGE_NAMES] == [True, True, False, False, False]
    manifest = {"fingerprint": fps["sample"], "input_data": "abc", "num_shards": 3, "shards": {"1": {}}}
    assert not is_stale(manifest, fps["sample"], "abc") and not is_stale(None, fps["sample"], "abc")
    assert is_stale(manifest, fps["sample"], "other data") and is_stale(manifest, fps["inject"], "abc")
    assert shards_to_run(manifest) == [0, 2] and shards_to_run(manifest, {1}) == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ executors
def test_forked_workers_build_the_same_bytes_and_hand_their_answers_to_the_cache(tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    Runner(_cfg(one), show_progress=False).build()
    Runner(_cfg(two), show_progress=False, executor=LocalExecutor(workers=2)).build()
    assert _files(one) == _files(two) and len(_files(one)) > 10
    # The workers' answers reached the driver's cache: a filter rebuilt with another k asks no engine again.
    reports = Runner(_cfg(two, "stages.filter.k=2"), show_progress=False, executor=LocalExecutor(workers=2)).build()
    assert [r.action for r in reports] == ["skipped"] * 4 + ["built"]
    assert reports[-1].made == 0 and reports[-1].cached > 0


def test_a_worker_cache_reads_the_run_cache_and_keeps_its_own_answers(tmp_path: Path):
    from amc.engine.cache import RequestCache

    cache = RequestCache(tmp_path / "cache.sqlite")
    cache.put_many([("k1", "one")])
    view = WorkerCache(tmp_path / "cache.sqlite")
    view.put_many([("k2", "two")])
    assert view.get_many(["k1", "k2", "k3"]) == {"k1": "one", "k2": "two"}
    assert view.drain() == [("k2", "two")] and view.drain() == []
    with pytest.raises(Exception):  # noqa: B017 - read-only: a worker never writes the run's cache file
        view._db.execute("INSERT INTO responses VALUES ('k4', 'x')")  # type: ignore[union-attr]
    assert WorkerCache(tmp_path / "elsewhere.sqlite").get_many(["k1"]) == {}  # unreachable file: ask engines
    view.close()
    cache.close()


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    import ray

    # Ray's socket paths must stay under 107 bytes: a short folder in /tmp, not under pytest's (long) TMPDIR
    temp = tempfile.mkdtemp(prefix="amc-ray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_executor_builds_the_same_dataset_byte_for_byte(tmp_path: Path, ray_local):
    from amc.engine.executors.ray import RayExecutor

    local, on_ray = tmp_path / "local", tmp_path / "ray"
    Runner(_cfg(local), show_progress=False).build()
    reports = Runner(_cfg(on_ray), show_progress=False, executor=RayExecutor()).build()
    assert [r.action for r in reports] == ["built"] * 5
    assert _files(local) == _files(on_ray) and len(_files(local)) > 10
    assert {k: v for k, v in json.loads((on_ray / "filter" / "manifest.json").read_text())["funnel"].items()} == (
        json.loads((local / "filter" / "manifest.json").read_text())["funnel"]
    )
    # The workers' answers came back to the driver's cache: a rebuilt filter asks no engine, on Ray too; and the
    # actor pool (what a stage on GPUs gets: one engine replica per actor) builds the same bytes as plain tasks.
    again = Runner(_cfg(on_ray, "stages.filter.k=2"), show_progress=False, executor=RayExecutor(actors=True)).build()
    assert again[-1].action == "built" and again[-1].made == 0 and _made(on_ray) == 0
    Runner(_cfg(local, "stages.filter.k=2"), show_progress=False).build()
    assert _files(local) == _files(on_ray)


def test_a_shard_reaches_the_engine_in_large_batches(tmp_path: Path, monkeypatch):
    from amc.backends.sim import SimBackend

    batches: list[int] = []
    real = SimBackend.generate

    def counting(self, requests):
        batches.append(len(requests))
        return real(self, requests)

    monkeypatch.setattr(SimBackend, "generate", counting)
    Runner(_cfg(tmp_path / "run", "shard_size=200", problems=200), show_progress=False).build("sample")
    assert batches == [200]  # one shard's 200 requests in one call (the cache once sent chunks of 64)


def test_a_rerun_of_a_finished_build_loads_no_problem_and_asks_no_engine(tmp_path: Path, monkeypatch):
    from amc.stages.problems import ProblemsStage

    Runner(_cfg(tmp_path / "run"), show_progress=False).build()

    def no_loading(self, cfg):
        raise AssertionError("a finished build was loaded again")

    monkeypatch.setattr(ProblemsStage, "load", no_loading)
    reports = Runner(_cfg(tmp_path / "run"), show_progress=False).build()
    assert [r.action for r in reports] == ["skipped"] * 5 and _made(tmp_path / "run") == 0
    # a stage that must run loads them (and fails there on bad input, before any engine starts)
    with pytest.raises(AssertionError, match="loaded again"):
        Runner(_cfg(tmp_path / "run", "stages.filter.k=2"), show_progress=False).build()


def test_build_names_a_ray_cluster_it_cannot_reach(tmp_path: Path):
    # not "auto": it finds any Ray instance running on this machine (another test's local one, say)
    import os
    import subprocess
    import sys

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "amc.cli",
            "build",
            "--config",
            str(ROOT / "pipelines" / "quickstart.yaml"),
            "-q",
            "--set",
            f"run_dir={tmp_path / 'run'}",
            "--executor",
            "ray",
            "--address",
            "ray://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
        timeout=300,
    )
    message = " ".join((res.stderr + res.stdout).split())
    assert res.returncode == 2, message
    assert "could not start or reach the Ray cluster at 'ray://127.0.0.1:1'" in message and "Traceback" not in message
    assert not (tmp_path / "run" / "sample").exists()
