"""Tests named for the bugs a mutation review found uncaught: each fails when its one-line mutation is applied.

Mutation (where) -> test:
- cache key without the messages / the response schema -> test_a_changed_question_or_schema_is_asked_again
- resume redoing every finished shard (runner) -> test_resume_leaves_finished_shards_untouched
- a local source file's hash dropped from the fingerprint -> test_editing_a_source_file_in_place_makes_problems_stale
- cut-off refinements counted correct, cut-off step-label rollouts kept, cut-off critiques accepted
  -> test_cut_off_refinements_rollouts_and_critiques_never_count
- Math-Shepherd hard labels ``any`` -> ``all`` (filter) -> test_hard_step_label_is_any_rollout_correct
- filter dedup ignoring the path id -> test_dedup_drops_repeats_within_a_path_only
- percent flags ignored in answers.verify -> test_percent_means_hundredths_only_when_written
- source_datasets of Hub sources (card) -> test_card_names_hub_sources_as_extended
The openai retry mutants are caught in tests/test_backends_openai.py (retry policy section), the trainer's seed
in tests/test_train_sft.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amc.backends.base import Completion, GenerationRequest, GenerationResponse, Message
from amc.backends.sim import SimBackend
from amc.config import config_from_dict, load_config
from amc.engine.cache import CachedBackend, RequestCache
from amc.engine.runner import Runner, expected_fingerprints
from amc.engine.store import read_records
from amc.records import Critique, FilterDecision, Reject, StepLabels
from amc.stages.base import StageContext
from amc.stages.filter import FilterStage

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def _rows(folder: Path, model):
    return [r for f in sorted(folder.glob("*.parquet")) for r in read_records(f, model)]


def _build(run_dir: Path, *sets: str, until: str = "filter"):
    cfg = load_config(QUICKSTART, [f"run_dir={run_dir}", "source.count=8", "shard_size=4", *sets])
    Runner(cfg, show_progress=False).build(until)
    return cfg


# ------------------------------------------------------------------------------------------- request cache
class Echo:
    """An engine that answers with the question it was asked (and the schema's title, when there is one)."""

    engine, model, revision = "echo", "m", None

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        out = []
        for r in requests:
            text = r.messages[-1].content + "|" + str((r.response_schema or {}).get("title"))
            self.asked.append(text)
            out.append(GenerationResponse(request_id=r.id, completions=[Completion(text=text)]))
        return out

    def close(self) -> None:
        pass


def test_a_changed_question_or_schema_is_asked_again(tmp_path):
    engine = Echo()
    cached = CachedBackend(engine, RequestCache(tmp_path / "c.sqlite"))

    def ask(question: str, schema: dict | None = None) -> str:
        req = GenerationRequest(
            id="p-1/critique/0", role="annotator", messages=[Message(role="user", content=question)]
        )
        return cached.generate([req.model_copy(update={"response_schema": schema})])[0].completions[0].text

    assert ask("2+2?") == "2+2?|None"
    assert ask("2+3?") == "2+3?|None"  # same id, another question: never the old answer
    assert ask("2+3?", {"title": "A"}) == "2+3?|A"  # same messages, another schema
    assert ask("2+3?", {"title": "B"}) == "2+3?|B"
    assert ask("2+2?") == "2+2?|None" and len(engine.asked) == 4  # a true repeat is served from the cache


# ------------------------------------------------------------------------------------------- resume
def test_resume_leaves_finished_shards_untouched(tmp_path, monkeypatch):
    """A build that dies in the critique stage resumes there: the shards it finished are neither recomputed nor
    rewritten. The request cache is deleted before resuming, so redone work would have to reach the engine."""
    run = tmp_path / "run"
    real = SimBackend.generate
    critique_calls = {"n": 0}

    def dies_on_the_third_critique_shard(self, requests):
        if requests and requests[0].context.get("task") == "critique":
            critique_calls["n"] += 1
            if critique_calls["n"] == 3:
                raise RuntimeError("the machine went away")
        return real(self, requests)

    monkeypatch.setattr(SimBackend, "generate", dies_on_the_third_critique_shard)
    cfg = load_config(QUICKSTART, [f"run_dir={run}", "source.count=16", "shard_size=4"])
    with pytest.raises(RuntimeError, match="went away"):
        Runner(cfg, show_progress=False).build("critique")
    finished = sorted((run / "critique" / "data").glob("*.parquet"))
    assert len(finished) == 2  # shards 0 and 1 (the sim's critiques of them all parse: each shard has rows)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in finished}
    (run / "cache.sqlite").unlink()

    asked: list[str] = []

    def counting(self, requests):
        asked.extend(r.id for r in requests if r.context.get("task") == "critique")
        return real(self, requests)

    monkeypatch.setattr(SimBackend, "generate", counting)
    reports = {r.name: r for r in Runner(cfg, show_progress=False).build("critique")}
    assert reports["critique"].action == "resumed"
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in finished}
    assert after == before
    assert len(list((run / "critique" / "data").glob("*.parquet"))) == 4
    # only problems of shards 2 and 3 (synthetic-00008 .. -00015) were critiqued again
    assert asked and all(8 <= int(rid.split("/")[0].rsplit("-", 1)[1]) < 16 for rid in asked), asked


# ------------------------------------------------------------------------------------------- staleness
def test_editing_a_source_file_in_place_makes_problems_stale(tmp_path):
    data = tmp_path / "problems.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    cfg = config_from_dict({"name": "x", "source": {"kind": "file", "path": str(data)}})
    before = expected_fingerprints(cfg)
    data.write_text('{"question": "1+1?", "answer": "3"}\n')  # same path, same size, another answer
    after = expected_fingerprints(cfg)
    assert all(before[s] != after[s] for s in before)


# ------------------------------------------------------------------------------------------- truncation
@pytest.fixture(scope="module")
def cut_off(tmp_path_factory) -> Path:
    """The quickstart with every refinement and step-label rollout cut off by max_tokens, and half the critiques:
    a cut-off text runs on past a complete answer, so only its finish reason says not to trust it."""
    run = tmp_path_factory.mktemp("cut") / "run"
    _build(
        run,
        "models.actor.truncate={refine: 1.0, rollout: 1.0}",
        "models.annotator.truncate={critique: 0.5}",
        "stages.filter.step_labels={enabled: true, rollouts: 2}",
    )
    return run


def test_cut_off_refinements_rollouts_and_critiques_never_count(cut_off):
    decisions = _rows(cut_off / "filter" / "data", FilterDecision) + _rows(
        cut_off / "filter" / "dropped", FilterDecision
    )
    refinements = [r for d in decisions for r in d.refinements]
    assert refinements and all(r.finish_reason == "length" for r in refinements)
    # the text of many reaches the reference answer, but a cut-off refinement is never a success
    reached = [r for d in decisions for r in d.refinements if r.predicted_answer == d.critique.path.reference_answer]
    assert reached
    assert not any(r.correct for r in refinements) and not any(d.kept for d in decisions)
    assert not _rows(cut_off / "filter" / "data", FilterDecision)
    # a path whose prefixes' rollouts were all cut off gets no label, but a reject saying so
    assert not _rows(cut_off / "filter" / "step_labels", StepLabels)
    no_label = [r for r in _rows(cut_off / "filter" / "rejects", Reject) if r.reason == "no_graded_rollout"]
    assert len(no_label) == len({d.critique.path.id for d in decisions})
    # cut-off critiques are asked again; one cut off at every attempt keeps the verdicts it completed as a
    # "partial" row whose problems say it was cut off (issue 10), never as an "ok" one
    critiques = _rows(cut_off / "critique" / "data", Critique)
    cut = [c for c in critiques if "Let me check this again." in c.raw]
    assert critiques and cut
    assert all(c.parse_status == "partial" and c.parse_problems[0].startswith("truncated") for c in cut)


# ------------------------------------------------------------------------------------------- step labels
@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("labels") / "run"
    _build(run, "models.actor.error_rate=0.5", "stages.filter.step_labels={enabled: true, rollouts: 4}")
    return run


def test_hard_step_label_is_any_rollout_correct(labelled):
    labels = _rows(labelled / "filter" / "step_labels", StepLabels)
    assert labels
    soft = [s for lab in labels for s in lab.soft_labels]
    hard = [h for lab in labels for h in lab.hard_labels]
    assert any(0 < s < 1 for s in soft), "no prefix with mixed rollouts: the test could not tell any from all"
    assert hard == [s > 0 for s in soft]
    assert all(s in {i / 4 for i in range(5)} for s in soft)


# ------------------------------------------------------------------------------------------- dedup
def test_dedup_drops_repeats_within_a_path_only(labelled):
    cfg = load_config(QUICKSTART, [f"run_dir={labelled}", "source.count=8", "shard_size=4"])
    critiques = _rows(labelled / "critique" / "data", Critique)
    one = critiques[0]
    other = next(c for c in critiques if c.path.id != one.path.id)
    same_text_other_path = other.model_copy(update={"raw": one.raw, "id": other.id + "x"})
    repeat = one.model_copy(update={"id": one.id + "x"})
    ctx = StageContext(cfg=cfg, get_backend=lambda role: SimBackend(cfg.models.for_role(role)))
    result = FilterStage().run([one, same_text_other_path, repeat], ctx)
    dups = [d.id for d in result.dropped if d.reason == "duplicate_critique"]
    assert dups == [repeat.id]
    assert result.counts["dropped:duplicate_critique"] == 1


# ------------------------------------------------------------------------------------------- answers
@pytest.mark.parametrize(
    ("gold", "pred", "same"),
    [
        ("5", "0.05", False),
        ("0.05", "5", False),
        ("5%", "0.05", True),
        ("0.05", "5%", True),
        ("5", "5%", True),
        ("5\\%", "5", True),
        ("50", "0.5", False),
        ("50 percent", "0.5", True),
        ("5%", "500", False),  # hundredths of the number written with %, not of the other one
        ("500", "5%", False),
    ],
)
def test_percent_means_hundredths_only_when_written(gold, pred, same):
    from amc.answers import verify

    assert verify(gold, pred) is same


# ------------------------------------------------------------------------------------------- card
def test_card_names_hub_sources_as_extended(tmp_path):
    from amc.publish.card import source_datasets

    def names(source: dict) -> list[str]:
        return source_datasets(config_from_dict({"name": "x", "source": source}))

    assert names({"kind": "hub", "preset": "gsm8k"}) == ["extended|openai/gsm8k"]
    assert names({"kind": "hub", "preset": "math"}) == ["extended|DigitalLearningGmbH/MATH-lighteval"]
    assert names({"kind": "synthetic"}) == ["original"]
    local = tmp_path / "ds"
    local.mkdir()
    assert names({"kind": "hub", "dataset": str(local)}) == ["original"]  # a local copy is no Hub dataset
