"""The filter stage (amc/stages/filter.py), decision by decision: each rule's boundaries, what a refinement needs to
count as correct, what is counted and rejected, and Math-Shepherd labels when rollouts fail, are cut off or are
undecided. Written for the mutants bench/mutation.sh found surviving (issue 16)."""

from __future__ import annotations

import pytest
from _scripted import Scripted, critique_of, inject_path

import amc.stages.filter as filter_module
from amc.config import FilterRules, config_from_dict
from amc.records import Critique, Problem, ReasoningPath
from amc.stages.base import StageContext
from amc.stages.filter import FilterStage, is_shortcut, rule_violation, step_labels

STEPS = ["3 * 4 = 12 pens.", "12 - 2 = 11 pens.", "The answer is 11."]
GOOD = "3 * 4 = 12\n12 - 2 = 10\nThe answer is 10."
BAD = "3 * 4 = 12\n12 - 2 = 11\nThe answer is 11."
PROBLEM = Problem(id="p0", question="Pens?", answer="10", source="t", solution=GOOD)


def _path(pid: str = "p0/inject/0", **kw) -> ReasoningPath:
    return inject_path(**{"steps": STEPS, "id": pid, **kw})


def _critique(cid: str = "p0/inject/0/c0", **kw) -> Critique:
    return critique_of(**{"path": _path(), "id": cid, **kw})


def _ctx(engine, **stage) -> StageContext:
    cfg = config_from_dict({"name": "t", "seed": 7, "stages": {"filter": stage}})
    return StageContext(cfg=cfg, get_backend=lambda role: engine, problems={"p0": PROBLEM})


def _run(critiques, answer=lambda r, j: GOOD, **stage):
    engine = Scripted(answer)
    return FilterStage().run(critiques, _ctx(engine, **stage)), engine


# ------------------------------------------------------------------------------------------------ rules
@pytest.mark.parametrize(
    ("known", "predicted", "tolerance", "why"),
    [
        (1, 1, 0, None),
        (1, 2, 0, "error_step_mismatch"),
        (1, 2, 1, None),
        (1, 3, 1, "error_step_mismatch"),
        (1, 0, 1, None),
        (0, 0, 0, None),
        (0, 1, 0, "error_step_mismatch"),  # a first-step error is a known error too
        (1, -1, 5, "error_step_mismatch"),  # "every step correct" never matches a known error
        (1, None, 5, "error_step_mismatch"),
        (None, 2, 0, None),  # unknown error location: the rule does not apply
        (-1, 2, 0, None),
    ],
)
def test_the_error_step_rule_and_its_tolerance(known, predicted, tolerance, why):
    rules = FilterRules(error_step_matches=True, error_step_tolerance=tolerance)
    c = _critique(first_error_step=predicted, path=_path(error_step=known))
    assert rule_violation(c, rules) == why
    assert rule_violation(c, FilterRules(error_step_matches=False, error_step_tolerance=tolerance)) is None


def test_the_verdict_rule_compares_with_the_paths_true_correctness():
    rules = FilterRules()
    assert rule_violation(_critique(final_verdict=False), rules) is None
    assert rule_violation(_critique(final_verdict=True), rules) == "verdict_mismatch"
    right = _path(correct=True, error_step=None, predicted_answer="10")
    assert rule_violation(_critique(final_verdict=True, path=right), rules) is None
    assert rule_violation(_critique(final_verdict=False, path=right), rules) == "verdict_mismatch"
    assert rule_violation(_critique(final_verdict=True), FilterRules(verdict_matches=False)) is None
    # an incomplete critique is named as such before any other rule
    assert rule_violation(_critique(parse_status="partial", final_verdict=True), rules) == "incomplete_critique"


def test_a_shortcut_is_fewer_steps_than_the_minimum():
    assert is_shortcut("The answer is 10.", FilterRules()) is True
    assert is_shortcut("12 - 2 = 10\nThe answer is 10.", FilterRules()) is False
    assert is_shortcut("12 - 2 = 10\nThe answer is 10.", FilterRules(min_refinement_steps=3)) is True
    assert is_shortcut("The answer is 10.", FilterRules(shortcut_guard=False)) is False


# ------------------------------------------------------------------------------------------------ the stage
def test_refinement_requests_carry_the_critique_and_their_own_seed():
    res, engine = _run([_critique(), _critique("p0/inject/0/c1", raw="other text")], n=3)
    a, b = engine.seen
    assert (a.id, a.role, a.params.n) == ("p0/inject/0/c0/refine", "refiner", 3)
    assert a.params.seed != b.params.seed and a.template.startswith("refine@")
    assert "critique text" in a.messages[-1].content and "other text" in b.messages[-1].content
    assert a.context == {
        "task": "refine",
        "question": "Pens?",
        "steps": STEPS,
        "first_error_step": 1,
        "answer": "10",
        "path_correct": False,
    }
    assert res.counts == {"in": 2, "kept": 2}
    assert [d.n for d in res.rows] == [3, 3] and res.rows[0].k == 1


def test_a_cut_off_refinement_never_counts_even_with_the_right_answer():
    answer = lambda r, j: (GOOD, "length") if j == 0 else BAD  # noqa: E731
    res, _ = _run([_critique()], answer, n=2, k=1)
    (d,) = res.dropped
    assert d.reason == "too_few_correct_refinements" and d.n_correct == 0
    assert [(r.finish_reason, r.predicted_answer, r.correct) for r in d.refinements] == [
        ("length", "10", False),
        ("stop", "11", False),
    ]
    assert res.counts == {"in": 1, "kept": 0, "dropped:too_few_correct_refinements": 1}


def test_exactly_k_correct_refinements_keep_a_critique():
    answer = lambda r, j: GOOD if j < 2 else BAD  # noqa: E731
    kept, _ = _run([_critique()], answer, n=3, k=2)
    assert [(d.n_correct, d.kept, d.reason) for d in kept.rows] == [(2, True, None)]
    assert [r.correct for r in kept.rows[0].refinements] == [True, True, False]
    dropped, _ = _run([_critique()], answer, n=3, k=3)
    assert [(d.n_correct, d.kept, d.k) for d in dropped.dropped] == [(2, False, 3)]


def test_dropped_rows_say_why_and_ask_nothing():
    res, engine = _run([_critique(final_verdict=True), _critique("p0/inject/0/c1", raw="Critique   TEXT")], n=2)
    first, twin = res.dropped
    assert (first.id, first.reason, first.kept, first.n, first.n_correct, first.refinements) == (
        "p0/inject/0/c0",
        "verdict_mismatch",
        False,
        2,
        0,
        [],
    )
    # the dropped critique's text still counts as seen: its twin (same path, same text) is a duplicate
    assert (twin.id, twin.reason) == ("p0/inject/0/c1", "duplicate_critique")
    assert res.rows == [] and engine.seen == []
    assert res.counts == {"in": 2, "kept": 0, "dropped:verdict_mismatch": 1, "dropped:duplicate_critique": 1}


def test_the_same_text_on_another_path_is_no_duplicate():
    twins = [_critique(), _critique("p0/inject/1/c0", path=_path("p0/inject/1"))]
    res, _ = _run(twins)
    assert len(res.rows) == 2 and res.counts["kept"] == 2


def test_a_failed_refinement_request_is_a_reject_and_counted():
    res, _ = _run([_critique(), _critique("p0/inject/0/c1", raw="b")], lambda r, j: None if "c1" in r.id else GOOD)
    assert [r.row_id for r in res.rejects] == ["p0/inject/0/c1"] and res.rejects[0].reason == "engine_error"
    assert res.counts["dropped:engine_error"] == 1 and res.counts["kept"] == 1


def test_an_undecided_refinement_is_neither_kept_nor_dropped(monkeypatch):
    monkeypatch.setattr(filter_module, "verify_many", lambda pairs: [True, None] + [True] * (len(pairs) - 2))
    res, _ = _run([_critique(), _critique("p0/inject/0/c1", raw="b")], n=2)
    assert [r.reason for r in res.rejects] == ["grading_undecided"] and res.rejects[0].row_id == "p0/inject/0/c0"
    assert res.counts["grading_undecided"] == 1 and [d.id for d in res.rows] == ["p0/inject/0/c1"]
    assert res.dropped == []


# ------------------------------------------------------------------------------------------------ step labels
def _labels(answer, paths, rollouts=2):
    engine = Scripted(answer)
    ctx = _ctx(engine, step_labels={"enabled": True, "rollouts": rollouts})
    return step_labels(paths, ctx), engine


def test_soft_labels_are_the_share_and_hard_labels_any_correct_rollout():
    # rollout j of prefix i: right when j < 2 - i (prefix 0: both, prefix 1: one, prefix 2: none)
    def answer(r, j):
        i = int(r.id.rsplit("/", 1)[1])
        return "The answer is 10." if j < 2 - i else "The answer is 11."

    (labels, failures), engine = _labels(answer, [_path()])
    assert failures == []
    (lab,) = labels
    assert lab.soft_labels == [1.0, 0.5, 0.0] and lab.hard_labels == [True, True, False]
    assert (lab.rollouts, lab.id, lab.error_step, lab.steps) == (2, "p0/inject/0", 1, STEPS)
    assert [r.id for r in engine.seen] == [f"p0/inject/0/rollout/{i}" for i in range(3)]


def test_a_path_with_a_prefix_of_cut_off_rollouts_gets_no_labels_but_a_reject():
    other = _path("p0/inject/1")

    def answer(r, j):
        if r.id == "p0/inject/0/rollout/1":
            return ("The answer is 10", "length")
        return "The answer is 10."

    (labels, failures), _ = _labels(answer, [_path(), other])
    assert [lab.id for lab in labels] == ["p0/inject/1"] and labels[0].soft_labels == [1.0, 1.0, 1.0]
    (rej,) = failures
    assert (rej.row_id, rej.reason, rej.detail) == (
        "p0/inject/0/rollout/1",
        "no_graded_rollout",
        "every rollout was cut off",
    )


def test_only_cut_off_rollouts_are_left_out_of_a_label():
    def answer(r, j):
        return ("The answer is 10.", "length") if j == 0 else "The answer is 11."

    (labels, failures), _ = _labels(answer, [_path()])
    assert failures == [] and labels[0].soft_labels == [0.0, 0.0, 0.0]  # the cut-off right answers do not count


def test_a_failed_rollout_request_or_an_undecided_rollout_costs_its_path_the_labels(monkeypatch):
    (labels, failures), _ = _labels(lambda r, j: None if r.id.endswith("/2") else "The answer is 10.", [_path()])
    assert labels == [] and [(f.row_id, f.reason) for f in failures] == [("p0/inject/0/rollout/2", "engine_error")]
    monkeypatch.setattr(filter_module, "verify_many", lambda pairs: [True] * (len(pairs) - 1) + [None])
    (labels, failures), _ = _labels(lambda r, j: "The answer is 10.", [_path()])
    assert labels == [] and [(f.row_id, f.reason) for f in failures] == [("p0/inject/0/rollout/2", "grading_undecided")]


def test_the_stage_labels_each_critiqued_path_once_and_counts_them():
    twins = [_critique(), _critique("p0/inject/0/c1", raw="b")]
    engine = Scripted(lambda r, j: GOOD if r.id.endswith("/refine") else "The answer is 10.")
    res = FilterStage().run(twins, _ctx(engine, step_labels={"enabled": True, "rollouts": 1}))
    assert [lab.id for lab in res.extra["step_labels"]] == ["p0/inject/0"] and res.counts["step_labels"] == 1
    assert sum(r.id.count("/rollout/") for r in engine.seen) == 3


# ------------------------------------------------------------------ found by the full mutmut run (third session)
def test_the_refinement_prompt_holds_the_question_and_the_requests_carry_the_configured_sampling():
    _, engine = _run([_critique()], sampling={"temperature": 0.3, "top_p": 0.9, "max_tokens": 77})
    (req,) = engine.seen
    assert "Pens?" in "\n".join(m.content for m in req.messages)
    assert (req.params.temperature, req.params.top_p, req.params.max_tokens) == (0.3, 0.9, 77)


def test_counts_add_up_when_a_reason_drops_several_critiques_and_an_engine_error_stops_nothing_after_it(
    monkeypatch,
):
    """The funnel counts every drop (not 'at least one'), and a failed refinement request is skipped, not the end
    of the shard: the critiques after it are still decided."""
    graded = []

    def verify(pairs):  # a refinement answering 99 is one the grading guard stopped
        graded.extend(pairs)
        return [None if p == "99" else p == r for r, p in pairs]

    monkeypatch.setattr(filter_module, "verify_many", verify)
    crit = [
        _critique("p0/inject/1/c0", path=_path("p0/inject/1"), final_verdict=True, raw="v1"),
        _critique("p0/inject/2/c0", path=_path("p0/inject/2"), final_verdict=True, raw="v2"),
        _critique("p0/inject/0/e1", raw="e1"),
        _critique("p0/inject/0/e2", raw="e2"),
        _critique("p0/inject/0/u1", raw="u1"),
        _critique("p0/inject/0/u2", raw="u2"),
        _critique("p0/inject/0/t1", raw="t1"),
        _critique("p0/inject/0/t2", raw="t2"),
        _critique("p0/inject/0/k", raw="k"),
    ]

    def answer(r, j):
        kind = r.id.split("/")[3]
        return {"e": None, "u": "12 - 2 = 99\nThe answer is 99.", "t": BAD}.get(kind[0], GOOD)

    res, _ = _run(crit, answer, n=1, k=1)
    assert res.counts == {
        "in": 9,
        "kept": 1,
        "dropped:verdict_mismatch": 2,
        "dropped:engine_error": 2,
        "grading_undecided": 2,
        "dropped:too_few_correct_refinements": 2,
    }
    assert [d.id for d in res.rows] == ["p0/inject/0/k"]
    undecided = [r for r in res.rejects if r.reason == "grading_undecided"]
    assert [r.row_id for r in undecided] == ["p0/inject/0/u1", "p0/inject/0/u2"]
    assert all("grading a refinement's answer;" in r.detail for r in undecided)


def test_the_filter_is_rebuilt_when_the_actor_that_refines_changes():
    def cfg(model):
        return config_from_dict({"name": "t", "models": {"actor": {"engine": "sim", "model": model}}})

    stage = FilterStage()
    assert stage.config_slice(cfg("a1")) != stage.config_slice(cfg("a2"))
    assert stage.config_slice(cfg("a1")) == stage.config_slice(cfg("a1"))


def test_rollout_rejects_belong_to_the_filter_stage_and_say_what_was_undecided(monkeypatch):
    def answer(r, j):
        if r.id.startswith("p0/inject/0/"):
            return None  # a failed request
        if r.id.startswith("p0/inject/1/"):
            return ("The answer is 10", "length")  # cut off
        return "The answer is 10."

    paths = [_path("p0/inject/0"), _path("p0/inject/1"), _path("p0/inject/2")]
    monkeypatch.setattr(filter_module, "verify_many", lambda pairs: [None] * len(pairs))
    (labels, failures), _ = _labels(answer, paths)
    assert labels == []
    assert [(f.stage, f.row_id, f.reason) for f in failures] == [
        ("filter", "p0/inject/0/rollout/0", "engine_error"),
        ("filter", "p0/inject/1/rollout/0", "no_graded_rollout"),
        ("filter", "p0/inject/2/rollout/0", "grading_undecided"),
    ]
    assert "grading a rollout's answer;" in failures[2].detail


def test_a_rollout_is_graded_with_its_prefix_so_an_empty_continuation_of_a_finished_prefix_counts():
    """The text graded for prefix i is the path's first i+1 steps followed by the continuation: a model that
    continues a prefix which already states the answer with nothing still reaches that answer; the prefixes
    before it (no answer stated) do not."""
    steps = ["3 * 4 = 12 pens.", "12 - 2 = 10 pens.", "The answer is 10."]
    (labels, failures), _ = _labels(lambda r, j: "", [_path(steps=steps, correct=True, error_step=None)])
    assert failures == []
    assert labels[0].soft_labels == [0.0, 0.0, 1.0]


def test_labels_of_paths_of_different_lengths_are_their_own():
    paths = [
        _path("p0/inject/0", steps=["3 * 4 = 12 pens.", "12 - 2 = 10 pens.", "The answer is 10."]),
        _path("p0/inject/1", steps=["12 - 2 = 10 pens.", "The answer is 10."]),
        _path("p0/inject/2", steps=["The answer is 11."]),
    ]

    def answer(r, j):
        return "The answer is 11." if r.id.startswith("p0/inject/2/") else "The answer is 10."

    (labels, failures), _ = _labels(answer, paths)
    assert failures == []
    assert [(lab.id, lab.soft_labels) for lab in labels] == [
        ("p0/inject/0", [1.0, 1.0, 1.0]),
        ("p0/inject/1", [1.0, 1.0]),
        ("p0/inject/2", [0.0]),
    ]
