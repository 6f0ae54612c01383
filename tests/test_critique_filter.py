"""The critique and filter stages, each hint, each output format and each rule, on scripted and sim engines."""

from __future__ import annotations

import pytest
from _scripted import Scripted, critique_of, inject_path

from amc.backends.base import GenerationRequest
from amc.backends.sim import SimBackend
from amc.config import ModelConfig, config_from_dict
from amc.critique_format import render_json, render_text
from amc.engine.cache import CachedBackend, RequestCache
from amc.records import Critique, Problem, ReasoningPath, StepVerdict
from amc.stages.base import StageContext
from amc.stages.critique import CritiqueStage
from amc.stages.filter import FilterStage

STEPS = [
    "She buys 3 packs of 4 pens, so 3 * 4 = 12 pens.",
    "She gives away 2, so 12 - 2 = 11 pens.",
    "The answer is 11.",
]
PROBLEM = Problem(
    id="p0", question="Pens?", answer="10", source="t", solution="3 * 4 = 12\n12 - 2 = 10\nThe answer is 10."
)


def _path(**kw) -> ReasoningPath:
    return inject_path(**{"steps": STEPS, **kw})


def _ctx(backend, **overrides) -> StageContext:
    data: dict = {"name": "t", "stages": {}}
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    cfg = config_from_dict(data)
    return StageContext(cfg=cfg, get_backend=lambda role: backend, problems={"p0": PROBLEM})


def _good_critique(req: GenerationRequest, j: int) -> str:
    verdicts = [StepVerdict(index=i, step=s, correct=i != 1, explanation="x") for i, s in enumerate(STEPS)]
    return render_text(verdicts, False, "wrong")


def _user_prompt(req: GenerationRequest) -> str:
    return "\n".join(m.content for m in req.messages if m.role == "user")


# ------------------------------------------------------------------------------------------------ hints
@pytest.mark.parametrize(
    ("hint", "needle", "name"),
    [
        ("reference_answer", "the reference answer is 10", "reference_answer"),
        ("reference_solution", "12 - 2 = 10", "reference_solution"),
        ("error_location", "the first mistake is in step 2 (calculation)", "error_location"),
        ("verifier_feedback", "step 2 states a false arithmetic equation", "verifier_feedback"),
        ("stop_at_first_error", "Stop critiquing after the first wrong step", "stop_at_first_error"),
    ],
)
def test_each_hint_reaches_the_prompt_and_the_record(hint, needle, name):
    off = {
        f"stages.critique.hints.{h}": False
        for h in (
            "reference_answer",
            "reference_solution",
            "error_location",
            "verifier_feedback",
            "stop_at_first_error",
        )
    }
    backend = Scripted(_good_critique)
    res = CritiqueStage().run([_path()], _ctx(backend, **{**off, f"stages.critique.hints.{hint}": True}))
    assert needle in _user_prompt(backend.seen[0])
    assert res.rows[0].hints == [name]

    backend = Scripted(_good_critique)
    res = CritiqueStage().run([_path()], _ctx(backend, **off))
    assert needle not in _user_prompt(backend.seen[0])
    assert res.rows[0].hints == []


def test_error_location_hint_only_for_known_errors():
    backend = Scripted(_good_critique)
    CritiqueStage().run([_path(error_step=None, error_type=None, strategy="sample", id="p0/sample/0")], _ctx(backend))
    assert "first mistake" not in _user_prompt(backend.seen[0])


# ------------------------------------------------------------------------------------------------ formats
def test_text_format_is_parsed_into_columns():
    res = CritiqueStage().run([_path()], _ctx(Scripted(_good_critique)))
    c = res.rows[0]
    assert c.format == "text" and c.parse_status == "ok"
    assert [v.correct for v in c.step_verdicts] == [True, False, True]
    assert c.first_error_step == 1 and c.final_verdict is False


def test_json_format_sends_a_schema_and_parses():
    def answer(req, j):
        verdicts = [StepVerdict(index=i, step=s, correct=i != 1, explanation="x") for i, s in enumerate(STEPS)]
        return "```json\n" + render_json(verdicts, False, "wrong") + "\n```"

    backend = Scripted(answer)
    res = CritiqueStage().run([_path()], _ctx(backend, **{"stages.critique.format": "json"}))
    assert backend.seen[0].response_schema is not None
    assert backend.seen[0].response_schema["required"]
    assert "JSON" in backend.seen[0].messages[0].content
    c = res.rows[0]
    assert c.format == "json" and c.first_error_step == 1 and c.final_verdict is False


def test_unparsable_critique_is_resampled_then_rejected():
    calls = {"n": 0}

    def answer(req, j):
        calls["n"] += 1
        return "I think it is fine." if req.id.endswith("/0") else _good_critique(req, j)

    backend = Scripted(answer)
    res = CritiqueStage().run([_path()], _ctx(backend, **{"stages.critique.max_parse_retries": 1}))
    assert len(res.rows) == 1 and calls["n"] == 2
    assert backend.seen[0].params.seed != backend.seen[1].params.seed

    backend = Scripted(lambda req, j: "no verdicts here")
    res = CritiqueStage().run([_path()], _ctx(backend, **{"stages.critique.max_parse_retries": 2}))
    assert res.rows == [] and len(backend.seen) == 3
    assert [r.reason for r in res.rejects] == ["unparsable"]


def test_share_of_correct_paths_is_critiqued():
    paths = [_path(id=f"p0/sample/{i}", correct=True, strategy="sample", error_step=None) for i in range(200)]
    none = CritiqueStage().run(paths, _ctx(Scripted(_good_critique), **{"stages.critique.include_correct_paths": 0.0}))
    some = CritiqueStage().run(paths, _ctx(Scripted(_good_critique), **{"stages.critique.include_correct_paths": 0.3}))
    every = CritiqueStage().run(paths, _ctx(Scripted(_good_critique), **{"stages.critique.include_correct_paths": 1}))
    assert len(none.rows) == 0 and len(every.rows) == 200
    assert 30 <= len(some.rows) <= 90


# ------------------------------------------------------------------------------------------------ filter rules
def _critique(**kw) -> Critique:
    return critique_of(**{"path": _path(), **kw})


GOOD = "3 * 4 = 12\n12 - 2 = 10\nThe answer is 10."


def _filter(critiques, answer=lambda req, j: GOOD, **overrides):
    backend = Scripted(answer)
    return FilterStage().run(critiques, _ctx(backend, **overrides)), backend


def test_keep_when_at_least_k_refinements_are_correct():
    answer = lambda req, j: GOOD if j < 2 else "3 * 4 = 12\n12 - 2 = 11\nThe answer is 11."  # noqa: E731
    kept, backend = _filter([_critique()], answer, **{"stages.filter.n": 4, "stages.filter.k": 2})
    assert [d.n_correct for d in kept.rows] == [2] and kept.rows[0].kept
    assert backend.seen[0].params.n == 4 and len(backend.seen) == 1  # N refinements in one request
    dropped, _ = _filter([_critique()], answer, **{"stages.filter.n": 4, "stages.filter.k": 3})
    assert dropped.rows == [] and dropped.dropped[0].reason == "too_few_correct_refinements"
    assert dropped.counts["dropped:too_few_correct_refinements"] == 1


def test_verdict_rule():
    res, backend = _filter([_critique(final_verdict=True)])
    assert res.dropped[0].reason == "verdict_mismatch" and backend.seen == []  # no refinement asked for
    res, _ = _filter([_critique(final_verdict=True)], **{"stages.filter.rules.verdict_matches": False})
    assert res.rows and res.rows[0].kept


def test_error_step_rule_with_tolerance():
    rule = {"stages.filter.rules.error_step_matches": True}
    res, _ = _filter([_critique(first_error_step=2)], **rule)
    assert res.dropped[0].reason == "error_step_mismatch"
    res, _ = _filter([_critique(first_error_step=2)], **rule, **{"stages.filter.rules.error_step_tolerance": 1})
    assert res.rows
    # unknown error location (a sampled path): the rule does not apply
    res, _ = _filter([_critique(first_error_step=2, path=_path(error_step=None, strategy="sample"))], **rule)
    assert res.rows


def test_shortcut_guard():
    res, _ = _filter([_critique()], lambda req, j: "The answer is 10.")
    assert res.dropped[0].reason == "too_few_correct_refinements"
    assert all(r.shortcut and not r.correct for r in res.dropped[0].refinements)
    res, _ = _filter([_critique()], lambda req, j: "The answer is 10.", **{"stages.filter.rules.shortcut_guard": False})
    assert res.rows and res.rows[0].n_correct == res.rows[0].n


def test_duplicate_rule():
    twins = [_critique(), _critique(id="p0/inject/0/c1", raw="Critique   TEXT")]
    res, _ = _filter(twins)
    assert len(res.rows) == 1 and res.dropped[0].reason == "duplicate_critique"
    res, _ = _filter(twins, **{"stages.filter.rules.deduplicate": False})
    assert len(res.rows) == 2


def test_incomplete_critique_is_dropped():
    res, _ = _filter([_critique(parse_status="partial", final_verdict=None)])
    assert res.dropped[0].reason == "incomplete_critique"


def test_math_shepherd_step_labels_on_sim(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    sim = CachedBackend(SimBackend(ModelConfig(engine="sim", model="sim", error_rate=0.0)), cache)
    path = _path(steps=["3 * 4 = 12", "12 - 2 = 11", "The answer is 11."])
    res = FilterStage().run(
        [_critique(path=path)],
        _ctx(sim, **{"stages.filter.step_labels.enabled": True, "stages.filter.step_labels.rollouts": 3}),
    )
    (labels,) = res.extra["step_labels"]
    # before the wrong step every rollout recomputes the rest correctly; from the wrong step on, none can
    assert labels.soft_labels == [1.0, 0.0, 0.0]
    assert labels.hard_labels == [True, False, False]
    assert labels.rollouts == 3 and labels.error_step == 1


ALL_ON = [
    "stages.critique.hints.reference_answer=true",
    "stages.critique.hints.reference_solution=true",
    "stages.critique.hints.error_location=true",
    "stages.critique.hints.verifier_feedback=true",
    "stages.critique.hints.stop_at_first_error=true",
    "stages.critique.include_correct_paths=0.5",
    "stages.filter.rules.verdict_matches=true",
    "stages.filter.rules.error_step_matches=true",
    "stages.filter.rules.error_step_tolerance=0",
    "stages.filter.rules.shortcut_guard=true",
    "stages.filter.rules.deduplicate=true",
    "stages.filter.step_labels.enabled=true",
]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_hint_and_rule_on_the_sim_engine(tmp_path, fmt):
    from amc.config import load_config
    from amc.engine.runner import Runner
    from amc.engine.store import read_records
    from amc.records import FilterDecision
    from amc.records import StepLabels as StepLabelRecord

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    cfg = load_config(
        root / "pipelines" / "quickstart.yaml",
        [f"run_dir={tmp_path / 'run'}", "source.count=16", f"stages.critique.format={fmt}", *ALL_ON],
    )
    Runner(cfg, show_progress=False).build("filter")
    kept = [
        r
        for f in sorted((tmp_path / "run" / "filter" / "data").glob("*.parquet"))
        for r in read_records(f, FilterDecision)
    ]
    assert kept
    for d in kept:
        c = d.critique
        assert c.format == fmt and c.parse_status == "ok"
        assert {"reference_answer", "verifier_feedback", "stop_at_first_error"} <= set(c.hints)
        assert ("error_location" in c.hints) == (c.path.error_step is not None and c.path.error_step >= 0)
        assert c.final_verdict == c.path.correct
        if c.path.error_step is not None and c.path.error_step >= 0:
            assert c.first_error_step == c.path.error_step
            # stop at the first error: no verdict after it
            assert max(v.index for v in c.step_verdicts) == c.first_error_step
        assert d.n_correct >= d.k and not any(r.correct and r.shortcut for r in d.refinements)
    labels = [
        r
        for f in sorted((tmp_path / "run" / "filter" / "step_labels").glob("*.parquet"))
        for r in read_records(f, StepLabelRecord)
    ]
    assert labels and all(len(x.soft_labels) == len(x.steps) for x in labels)
