"""Critiques that survive real models (issue 10): bounded JSON, cut-off outputs keep their completed verdicts (as
"partial", with the reason), and the prompts state the length budget."""

from __future__ import annotations

import json

import jsonschema
import pytest

from amc.critique_format import critique_json_schema, parse, parse_json, parse_text, render_json, render_text
from amc.prompts import load_template
from amc.records import StepVerdict

STEPS = ["Tom has 3 + 4 = 7 apples.", "He eats 2, so 7 - 2 = 6 remain.", "The answer is 6."]
VERDICTS = [
    StepVerdict(index=0, step=STEPS[0], correct=True, explanation="3 + 4 is 7."),
    StepVerdict(index=1, step=STEPS[1], correct=False, explanation="7 - 2 is 5, not 6."),
    StepVerdict(index=2, step=STEPS[2], correct=False, explanation="It follows the wrong step."),
]
NO_HINTS = {k: None for k in ("reference_answer", "reference_solution", "error_step", "error_type",
                              "verifier_feedback")} | {"stop_at_first_error": False}  # fmt: skip


def test_schema_bounds_explanations_steps_and_items():
    schema = critique_json_schema(max_steps=3, explanation_chars=50)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(render_json(VERDICTS, False, "5")), schema)
    step = {"step": "a", "correct": True, "explanation": "x" * 51}
    with pytest.raises(jsonschema.ValidationError, match="too long"):
        jsonschema.validate({"steps": [step], "final_answer_correct": True, "final_explanation": ""}, schema)
    four = [dict(step, explanation="x")] * 4
    with pytest.raises(jsonschema.ValidationError, match="too long|maxItems|is too long"):
        jsonschema.validate({"steps": four, "final_answer_correct": True, "final_explanation": ""}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"steps": [], "final_answer_correct": True, "final_explanation": "y" * 51}, schema)
    unbounded = critique_json_schema(explanation_chars=None, step_chars=None)
    assert "maxLength" not in json.dumps(unbounded) and "maxItems" not in json.dumps(unbounded)


def test_cut_off_json_keeps_the_step_objects_it_completed():
    full = render_json(VERDICTS, False, "the answer should be 5")
    cut = full[: full.index('"explanation": "7 - 2') + 12]  # inside the second step object
    parsed = parse_json(cut, STEPS, truncated=True)
    assert [(v.index, v.correct) for v in parsed.step_verdicts] == [(0, True)]
    assert parsed.status == "partial" and parsed.final_verdict is None and parsed.truncated
    assert parsed.problems[0] == "truncated: the output hit max_tokens; kept 1 completed step verdict, no final verdict"
    assert parsed.reason.startswith("truncated")


def test_cut_off_in_the_final_explanation_keeps_the_final_verdict_but_is_not_ok():
    full = render_json(VERDICTS, False, "the answer should be 5")
    cut = full[: full.index("should be")]
    parsed = parse(cut, "json", STEPS, truncated=True)
    assert [v.correct for v in parsed.step_verdicts] == [True, False, False]
    assert parsed.final_verdict is False and parsed.first_error_step == 1
    assert parsed.status == "partial" and parsed.truncated  # complete verdicts, yet never a silent success


def test_json_that_ends_inside_its_object_is_read_as_cut_off_without_being_told():
    full = render_json(VERDICTS, False, "x")
    parsed = parse_json(full[: full.index('{"step": "The answer')], STEPS)
    assert len(parsed.step_verdicts) == 2 and parsed.truncated and parsed.status == "partial"


def test_complete_but_invalid_json_gets_no_rescue():
    raw = '{"steps": [{"step": "a", "correct": true, "explanation": "x"},], "final_answer_correct": true}'
    parsed = parse_json(raw)
    assert parsed.status == "failed" and not parsed.truncated and parsed.step_verdicts == []


def test_a_complete_critique_marked_cut_off_is_partial_not_ok():
    parsed = parse_json(render_json(VERDICTS, False, "x"), STEPS, truncated=True)
    assert parsed.status == "partial" and len(parsed.step_verdicts) == 3 and parsed.final_verdict is False


def test_cut_off_text_drops_its_unfinished_line_and_keeps_the_rest():
    full = render_text(VERDICTS, False, "the answer should be 5")
    cut = full[: full.index("Correctness of the step: Wrong\nExplanation: 7 - 2") + len("Correctness of the step: Wr")]
    parsed = parse_text(cut, STEPS, truncated=True)
    assert [(v.index, v.correct) for v in parsed.step_verdicts] == [(0, True)]  # "Wr" is not read as a verdict
    assert parsed.status == "partial" and parsed.truncated
    whole = parse_text(full, STEPS, truncated=True)
    assert whole.status == "partial" and len(whole.step_verdicts) == 3 and whole.final_verdict is False
    assert parse_text(full, STEPS).status == "ok"  # not cut off: unchanged behaviour


def test_a_cut_off_output_with_nothing_completed_fails_with_the_reason():
    parsed = parse("Step sentence: Tom has 3 + 4 = 7 apples.\nCorrectness of the st", "text", STEPS, truncated=True)
    assert parsed.status == "failed" and parsed.problems[0].startswith("truncated")


@pytest.mark.parametrize("name", ["critique", "critique_json"])
def test_the_prompts_state_the_budget(name):
    template = load_template(name)
    system = template.render(question="q", steps=STEPS, hints=NO_HINTS, budget=120)[0].content
    assert "at most 120 characters" in system
    assert "characters" not in template.render(question="q", steps=STEPS, hints=NO_HINTS)[0].content
