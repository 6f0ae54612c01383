"""The last-resort wall-clock guards give a reject, never an answer; `--retry-rejects` asks cached rejects again.

Issue 9: the grading guard of math-verify and the step checks' guard report *undecided* (``None`` /
:class:`~amc.steps.CheckTimeout`), and the stages turn that into ``grading_undecided`` reject rows. The guards are
forced by tiny budgets (module settings), so every test here is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import amc.answers as answers
import amc.backends.sim as sim
import amc.steps as steps
from amc.config import load_config
from amc.engine.rundir import RunDir
from amc.engine.runner import Runner
from amc.engine.store import read_records
from amc.records import ReasoningPath, Reject
from amc.stages.sample import grade_paths

QUICKSTART = Path(__file__).resolve().parents[1] / "pipelines" / "quickstart.yaml"


def _cfg(run_dir: Path, *extra: str):
    return load_config(QUICKSTART, [f"run_dir={run_dir}", "source.count=8", "shard_size=4", *extra])


def _build(cfg, until: str = "filter", **kw) -> dict:
    return {r.name: r for r in Runner(cfg, show_progress=False, **kw).build(until=until)}


def _data(run_dir: Path, *stages: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for s in stages
        for p in sorted((run_dir / s / "data").glob("*.parquet"))
        if not p.name.startswith(".")
    }


def _paths(run_dir: Path, stage: str) -> list[ReasoningPath]:
    return [p for f in sorted((run_dir / stage / "data").glob("*.parquet")) for p in read_records(f, ReasoningPath)]


def _ids(run_dir: Path, stage: str) -> list[str]:
    files = (run_dir / stage / "data").glob("*.parquet")
    return sorted(i for f in files for i in pq.read_table(f, columns=["id"])["id"].to_pylist())


def _rejects(run_dir: Path, stage: str) -> list[Reject]:
    return [r for p in sorted((run_dir / stage / "rejects").glob("*.parquet")) for r in read_records(p, Reject)]


# --------------------------------------------------------------------------------------------- the guards


def test_the_math_verify_guard_leaves_a_pair_undecided_not_false(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [("x^2", "x \\cdot x"), ("7", "7"), ("3", "4"), ("\\sqrt{2}", "1.5")]
    assert answers.verify_many(pairs) == [True, True, False, False]
    monkeypatch.setattr(answers, "GUARD_S", 1e-6)  # every math-verify comparison outlives its guard
    # decided in-process (identical, plain numbers) as before; what math-verify would decide is undecided
    assert answers.verify_many(pairs) == [None, True, False, None]
    assert answers.verify("x^2", "x \\cdot x") is None


def test_the_step_check_guard_is_read_at_call_time_and_raises_undecided(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [c.true for c in steps.claims("3 * 4 = 13")] == [False]
    monkeypatch.setattr(steps, "LAST_RESORT_S", 0.0)
    with pytest.raises(steps.CheckTimeout, match="undecided"):
        steps.first_false_arithmetic(["3 * 4 = 13"])


def test_grade_paths_rejects_an_undecided_path(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ReasoningPath(
        id="p/sample/0",
        problem_id="p",
        question="q",
        reference_answer="x^2",
        steps=["The answer is $x \\cdot x$."],
        strategy="sample",
        generator="g",
    )
    assert [p.correct for p in grade_paths([path], [])] == [True]
    monkeypatch.setattr(answers, "GUARD_S", 1e-6)
    rejects: list[Reject] = []
    assert grade_paths([path], rejects) == []
    assert [(r.row_id, r.reason) for r in rejects] == [("p/sample/0", "grading_undecided")]
    with pytest.raises(Exception, match="last-resort guard"):
        grade_paths([path])  # no list to put the reject in: an error, never a guessed verdict


# --------------------------------------------------------------------------------------------- stages


def test_a_stopped_grading_is_a_reject_row_and_retry_rejects_grades_it_again(tmp_path, monkeypatch) -> None:
    clean = tmp_path / "clean"
    _build(_cfg(clean), until="sample")
    expected = _data(clean, "sample")
    wrong = sum(
        not p.correct
        for f in sorted((clean / "sample" / "data").glob("*.parquet"))
        for p in read_records(f, ReasoningPath)
    )
    assert wrong > 0

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        # every answer that is not the reference's text goes to math-verify, whose guard always fires
        m.setattr(answers, "_fast_verdict", lambda gold, pred: None)
        m.setattr(answers, "GUARD_S", 1e-6)
        _build(_cfg(run), until="sample")
    manifest = RunDir(run).read_manifest("sample")
    assert manifest["status"] == "done" and manifest["rejects_by_reason"] == {"grading_undecided": wrong}
    rows = _paths(run, "sample")
    assert rows and all(p.correct for p in rows)  # no wrong answer was guessed from a stopped grading
    assert {r.reason for r in _rejects(run, "sample")} == {"grading_undecided"}
    # the guard back to normal: --retry-rejects grades those paths again, from the cached answers
    reports = _build(_cfg(run), until="sample", retry_rejects=True)
    assert reports["sample"].action == "resumed" and reports["sample"].made == 0
    assert _data(run, "sample") == expected


def test_an_undecided_step_check_is_a_reject_row_in_inject_and_critique(tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    _build(_cfg(run), until="sample")
    with monkeypatch.context() as m:
        m.setattr(steps, "LAST_RESORT_S", 0.0)  # the symbolic strategy's step checks are all stopped
        _build(_cfg(run), until="inject")
    undecided = [r for r in _rejects(run, "inject") if r.reason == "grading_undecided"]
    assert undecided and all("/symbolic/" in r.row_id for r in undecided)
    paths = _paths(run, "inject")
    assert paths and not [p for p in paths if p.strategy == "symbolic"]

    import amc.stages.critique as critique

    def stopped(steps_: list[str], timeout_per_step: float | None = None) -> int | None:
        raise steps.CheckTimeout("the arithmetic check of a step outlived its last-resort guard (undecided)")

    hint = "stages.critique.hints.verifier_feedback=true"
    monkeypatch.setattr(critique, "first_false_arithmetic", stopped)
    report = _build(_cfg(run, hint), until="critique")["critique"]
    assert report.rows == 0 and report.rejects > 0
    assert {r.reason for r in _rejects(run, "critique")} == {"grading_undecided"}


# --------------------------------------------------------------------------------------------- --retry-rejects

FAULTS = ("models.actor.malformed={solve: 0.3}", "models.annotator.malformed={critique: 0.5}")


def test_retry_rejects_asks_the_engine_again_for_rejects_made_by_cached_answers(tmp_path, monkeypatch) -> None:
    clean = tmp_path / "clean"
    _build(_cfg(clean), until="critique")

    run, log = tmp_path / "run", tmp_path / "requests.jsonl"
    monkeypatch.setenv("AMC_SIM_REQUEST_LOG", str(log))
    cfg = _cfg(run, *FAULTS)
    _build(cfg)
    before = {s: RunDir(run).read_manifest(s)["rejects_by_reason"] for s in ("sample", "critique")}
    assert before["sample"].get("no_answer") and before["critique"].get("unparsable")
    no_answer = {r.row_id for r in _rejects(run, "sample") if r.reason == "no_answer"}
    # a plain rerun and a rerun of the cached answers change nothing: the faulty answers are in the cache
    assert {r.action for r in _build(cfg).values()} == {"skipped"}

    # the engine now answers well (same config, so same cache keys): --retry-rejects must ask it again
    init = sim.SimBackend.__init__

    def healed(self, model_cfg) -> None:
        init(self, model_cfg)
        self.malformed = {}

    log.write_text("")
    with monkeypatch.context() as m:
        m.setattr(sim.SimBackend, "__init__", healed)
        reports = _build(cfg, retry_rejects=True)
    asked = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    # exactly the sample requests of the answerless paths went to the engine again, once each
    sampled = sorted(a for a in asked if a.endswith("/sample"))
    assert sampled == sorted({r.rsplit("/", 1)[0] for r in no_answer})
    assert reports["sample"].action == "resumed" and reports["sample"].made == len(sampled)
    assert any("/critique/" in a for a in asked)
    for s in ("sample", "critique"):
        assert not RunDir(run).read_manifest(s)["rejects_by_reason"], s
    assert _data(run, "sample", "inject") == _data(clean, "sample", "inject")
    # a critique that failed to parse at its first attempt but parsed at a later one was no reject: it keeps its
    # later attempt, so critiques match the clean build row for row, not byte for byte
    assert _ids(run, "critique") == _ids(clean, "critique")

    # the new answers replaced the faulty ones in the cache: rebuilt with the faulty engine, nothing is asked
    after = _data(run, "sample", "inject", "critique", "filter")
    RunDir(run).remove_stage("sample")
    log.write_text("")
    reports = _build(cfg)
    assert reports["sample"].made == 0 and log.read_text() == ""
    assert _data(run, "sample", "inject", "critique", "filter") == after
