"""Errors are rows, caches are honest, nothing stale or secret survives: checks of the failure paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amc.backends._common import describe_error
from amc.backends.base import Completion, GenerationRequest, GenerationResponse, Message, SamplingParams
from amc.config import ModelConfig, config_from_dict, load_config
from amc.engine.cache import CachedBackend, RequestCache, request_key
from amc.engine.runner import Runner, read_manifest
from amc.engine.store import read_records, shard_name, write_records
from amc.records import Critique, Problem, ReasoningPath, Reject, StepVerdict
from amc.stages.base import StageContext
from amc.stages.critique import CritiqueStage
from amc.stages.filter import FilterStage
from amc.stages.sample import SampleStage

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


class Scripted:
    engine, model, revision = "scripted", "scripted", None

    def __init__(self, answer):
        self.answer = answer

    def generate(self, requests):
        return [self.answer(r) for r in requests]

    def close(self):
        pass


def _ctx(backend, **stages) -> StageContext:
    return StageContext(cfg=config_from_dict({"name": "t", "stages": stages}), get_backend=lambda role: backend)


def _texts(req, *texts, reason="stop") -> GenerationResponse:
    return GenerationResponse(request_id=req.id, completions=[Completion(text=t, finish_reason=reason) for t in texts])


def test_model_settings_that_change_answers_are_in_the_cache_key():
    req = GenerationRequest(id="r", role="actor", messages=[Message(role="user", content="q")])
    keys = {
        request_key("sim", "m", None, req, ModelConfig(engine="sim", model="m", error_rate=e).identity())
        for e in (0.1, 0.9)
    }
    assert len(keys) == 2
    a = ModelConfig(engine="openai", model="m", base_url="http://a/v1").identity()
    b = ModelConfig(engine="openai", model="m", base_url="http://b/v1").identity()
    assert request_key("openai", "m", None, req, a) != request_key("openai", "m", None, req, b)
    # how a model is run (concurrency, retries, memory) is not what it answers
    c = ModelConfig(engine="openai", model="m", base_url="http://a/v1", max_concurrency=64, timeout=5).identity()
    assert c == a


def test_changing_the_sims_error_rate_asks_again(tmp_path):
    base = [f"run_dir={tmp_path}", "source.count=8"]
    Runner(load_config(QUICKSTART, base), show_progress=False).build("sample")
    runner = Runner(load_config(QUICKSTART, [*base, "models.actor.error_rate=0.0"]), show_progress=False)
    (_, sample) = runner.build("sample")
    assert sample.action == "built" and sample.made > 0 and sample.cached == 0
    files = sorted((tmp_path / "sample" / "data").glob("*.parquet"))
    paths = [p for f in files for p in read_records(f, ReasoningPath)]
    assert paths and all(p.correct for p in paths)


def test_an_engine_is_started_only_when_a_request_misses_the_cache(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    started = []

    def factory():
        started.append(1)
        return Scripted(lambda r: _texts(r, "x"))

    req = GenerationRequest(id="r", role="actor", messages=[Message(role="user", content="q")])
    first = CachedBackend(None, cache, factory=factory, engine="scripted", model="m")
    first.generate([req])
    second = CachedBackend(None, cache, factory=factory, engine="scripted", model="m")
    assert second.generate([req])[0].cached and not second.started and len(started) == 1
    second.close()  # closing an engine never started starts nothing


def test_an_answer_without_a_final_answer_or_any_step_is_a_reject():
    problem = Problem(id="p", question="q", answer="3", source="s")
    backend = Scripted(lambda r: _texts(r, "1 + 2 = 3\nThe answer is 3.", "I am not sure.", "   \n"))
    res = SampleStage().run([problem], _ctx(backend, sample={"n": 3}))
    assert [p.id for p in res.rows] == ["p/sample/0"]
    assert sorted(r.reason for r in res.rejects) == ["empty_response", "no_answer"]


STEPS = ["1 + 2 = 3", "3 * 2 = 7", "The answer is 7."]


def _path(**kw) -> ReasoningPath:
    return ReasoningPath(
        **{
            "id": "p/sample/0",
            "problem_id": "p",
            "question": "q",
            "reference_answer": "6",
            "steps": STEPS,
            "predicted_answer": "7",
            "correct": False,
            "strategy": "sample",
            "generator": "g",
            **kw,
        }
    )


def test_missing_critique_samples_are_asked_again_not_copied():
    def answer(req):
        verdicts = "\n".join(
            f"Step sentence: {s}\nCorrectness of the step: {'Wrong' if i == 1 else 'Correct'}\nExplanation: e{i}"
            for i, s in enumerate(STEPS)
        )
        text = verdicts + "\nCorrectness of the final answer: Wrong\nExplanation: no"
        return _texts(req, text)  # one sample, whatever n

    res = CritiqueStage().run([_path()], _ctx(Scripted(answer), critique={"n": 2, "max_parse_retries": 1}))
    assert [c.id for c in res.rows] == ["p/sample/0/c0"]
    assert [(r.row_id, r.reason) for r in res.rejects] == [("p/sample/0/c1", "unparsable")]
    assert "1 of 2 samples" in res.rejects[0].detail


def test_failed_rollouts_give_no_step_labels_but_a_reject():
    crit = Critique(
        id="p/sample/0/c0",
        path=_path(),
        annotator="a",
        raw="r",
        parse_status="ok",
        step_verdicts=[StepVerdict(index=i, step=s, correct=i != 1) for i, s in enumerate(STEPS)],
        first_error_step=1,
        final_verdict=False,
    )

    def answer(req):
        if "/rollout/1" in req.id:
            return GenerationResponse(request_id=req.id, error="HTTP 503")
        return _texts(req, "The answer is 6.", "The answer is 6.")

    res = FilterStage().run([crit], _ctx(Scripted(answer), filter={"step_labels": {"enabled": True, "rollouts": 2}}))
    assert res.extra["step_labels"] == []
    assert [(r.row_id, r.reason) for r in res.rejects] == [("p/sample/0/rollout/1", "engine_error")]


def test_a_redone_shard_leaves_no_stale_file(tmp_path):
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path}", "source.count=8", "shard_size=4"])
    Runner(cfg, show_progress=False).build("sample")
    # as if a killed run had written a reject for shard 1 that the resumed run will not produce
    manifest = read_manifest(tmp_path / "sample")
    del manifest["shards"]["1"]
    manifest["status"] = "partial"
    (tmp_path / "sample" / "manifest.json").write_text(json.dumps(manifest))
    stale = tmp_path / "sample" / "rejects" / shard_name(1, 2)
    write_records(stale, [Reject(stage="sample", row_id="x", reason="engine_error")], Reject)
    Runner(cfg, show_progress=False).build("sample")
    assert not stale.exists()
    assert read_manifest(tmp_path / "sample")["rejects_by_reason"] == {}


def test_a_secret_cut_in_half_is_still_redacted():
    key = "sk-" + "A1b2" * 10
    message = describe_error(RuntimeError("x" * 480 + key), secrets=[key])
    assert "A1b2" not in message and len(message) <= 500


def test_manifests_hold_no_credentials(tmp_path):
    cfg = load_config(
        QUICKSTART,
        [
            f"run_dir={tmp_path}",
            "source.count=4",
            "models.annotator.extra_body={api_key: sk-abcdefghijklmnopqrstuvwxyz}",
        ],
    )
    Runner(cfg, show_progress=False).build("critique")
    text = (tmp_path / "critique" / "manifest.json").read_text()
    assert "sk-abcdefghijklmnopqrstuvwxyz" not in text


def test_sampling_params_do_not_leak_between_requests():
    # a guard for the cache: two requests differing only in sampling are two keys
    a = GenerationRequest(id="a", role="actor", messages=[], params=SamplingParams(temperature=0.1))
    b = a.model_copy(update={"params": SamplingParams(temperature=0.2)})
    assert request_key("e", "m", None, a) != request_key("e", "m", None, b)


def test_two_builds_never_share_a_run_directory(tmp_path):
    import subprocess
    import sys

    import pytest

    from amc.errors import AmcError

    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path}", "source.count=4"])
    from amc.engine.status import run_status

    # another process holds the directory's build lock, as a running build does
    code = (
        f"from amc.engine.rundir import RunDir\nwith RunDir({str(tmp_path)!r}).lock():\n"
        "    print(flush=True)\n    input()\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        other.stdout.readline()  # locked
        with pytest.raises(AmcError, match="another build is running"):
            Runner(cfg, show_progress=False).build("sample")
        assert run_status(cfg)["building"] is True
    finally:
        other.communicate("\n", timeout=60)
    Runner(cfg, show_progress=False).build("sample")  # released: builds
    assert read_manifest(tmp_path / "sample")["status"] == "done"
    assert run_status(cfg)["building"] is False


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_users_umask_not_mkstemps_0600(tmp_path, monkeypatch, umask, mode):
    """Files are readable by others exactly as far as the user's umask allows, whatever umask runs the tests."""
    import os
    import stat

    from amc.engine import store

    now = os.umask(0o022)
    os.umask(now)
    assert now == store._UMASK  # read once, at import, from the process
    monkeypatch.setattr(store, "_UMASK", umask)
    write_records(tmp_path / "x.parquet", [], Reject)
    store.atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "x.parquet").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == mode


def test_loading_a_missing_folder_says_so_without_the_network(tmp_path):
    import pytest

    import amc
    from amc.publish import PublishError

    with pytest.raises(PublishError, match="no such folder"):
        amc.load(str(tmp_path / "nope"), "filtered")
    with pytest.raises(PublishError, match="no such folder"):
        amc.load("./out/nope", "filtered")
