"""Critique formats (amc/critique_format.py), piece by piece: the JSON schema engines are held to, what a cut-off
critique says, how verdict words, labels and JSON objects are read. Written for the mutants bench/mutation.sh found
surviving (issue 16)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from amc.critique_format import (
    critique_json_schema,
    parse,
    parse_json,
    parse_text,
    render_json,
    render_text,
)
from amc.records import StepVerdict

STEPS = ["Tom has 3 + 4 = 7 apples.", "He eats 2, so 7 - 2 = 6 remain.", "The answer is 6."]


def _verdicts(*correct: bool) -> list[StepVerdict]:
    return [StepVerdict(index=i, step=STEPS[i], correct=c, explanation=f"why {i}") for i, c in enumerate(correct)]


def _objects(schema: dict) -> list[dict]:
    found = [schema] if schema.get("type") == "object" else []
    for value in schema.values():
        if isinstance(value, dict):
            found += _objects(value)
    return found


# ------------------------------------------------------------------------------------------------ the schema
def test_the_schema_is_strict_in_every_object_as_structured_outputs_require():
    schema = critique_json_schema(max_steps=3)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "StepLevelCritique"
    objects = _objects(schema)
    assert len(objects) == 2  # the critique and a step
    for obj in objects:
        assert obj["required"] == list(obj["properties"]) and obj["additionalProperties"] is False
    assert list(schema["properties"]) == ["steps", "final_answer_correct", "final_explanation"]
    step = schema["properties"]["steps"]["items"]
    assert list(step["properties"]) == ["step", "correct", "explanation"]
    assert step["properties"]["correct"] == schema["properties"]["final_answer_correct"] == {"type": "boolean"}
    assert schema["properties"]["steps"]["type"] == "array"


@pytest.mark.parametrize(
    ("missing", "extra"),
    [("final_answer_correct", None), ("final_explanation", None), ("steps", None), (None, "note")],
)
def test_the_schema_refuses_a_missing_or_an_extra_key(missing, extra):
    schema = critique_json_schema()
    obj = {"steps": [], "final_answer_correct": True, "final_explanation": ""}
    if missing:
        del obj[missing]
    if extra:
        obj[extra] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, schema)
    step = {"step": "a", "correct": True, "explanation": ""}
    for bad in ({k: v for k, v in step.items() if k != "correct"}, {**step, "correct": "yes"}, {**step, "x": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"steps": [bad], "final_answer_correct": True, "final_explanation": ""}, schema)


def test_the_schemas_bounds_by_default_and_as_asked():
    schema = critique_json_schema()
    step = schema["properties"]["steps"]["items"]["properties"]
    assert step["step"] == {"type": "string", "maxLength": 120}
    assert step["explanation"] == {"type": "string", "maxLength": 160}
    assert schema["properties"]["final_explanation"] == {"type": "string", "maxLength": 160}
    assert "maxItems" not in schema["properties"]["steps"]  # no path length given: unbounded
    assert critique_json_schema(max_steps=5)["properties"]["steps"]["maxItems"] == 5
    assert critique_json_schema(max_steps=0)["properties"]["steps"]["maxItems"] == 1  # at least one verdict
    only_steps = critique_json_schema(explanation_chars=None, step_chars=30)["properties"]
    assert only_steps["final_explanation"] == {"type": "string"}
    assert only_steps["steps"]["items"]["properties"]["step"] == {"type": "string", "maxLength": 30}


def test_json_is_written_with_its_characters_as_they_are():
    raw = render_json([StepVerdict(index=0, step="x² = 4", correct=True, explanation="ü")], False, "é")
    assert "x² = 4" in raw and '"ü"' in raw and '"é"' in raw
    assert json.loads(raw) == {
        "steps": [{"step": "x² = 4", "correct": True, "explanation": "ü"}],
        "final_answer_correct": False,
        "final_explanation": "é",
    }


def test_the_text_format_ends_with_the_final_block_and_a_newline():
    text = render_text(_verdicts(True, False), False, "it is 5")
    assert text.endswith("Correctness of the final answer: Wrong\nExplanation: it is 5\n")
    assert text.count("\n\n") == 2 and "Correctness of the step: Correct\n" in text


# ------------------------------------------------------------------------------------------------ cut off
@pytest.mark.parametrize(
    ("kept", "final", "note"),
    [
        (1, True, "truncated: the output hit max_tokens; kept 1 completed step verdict"),
        (2, True, "truncated: the output hit max_tokens; kept 2 completed step verdicts"),
        (2, False, "truncated: the output hit max_tokens; kept 2 completed step verdicts, no final verdict"),
    ],
)
def test_a_cut_off_critique_says_how_much_it_kept(kept, final, note):
    body = (
        render_text(_verdicts(*[False] * kept), True, "done")
        if final
        else render_text(_verdicts(True, False), True, "")
    )
    if not final:
        body = body[: body.index("Correctness of the final answer")]
    parsed = parse_text(body + "Explanation: half a line", STEPS[:kept] if final else STEPS[:2], truncated=True)
    assert parsed.problems[0] == note
    assert parsed.status == "partial" and parsed.truncated
    assert len(parsed.step_verdicts) == kept


def test_a_cut_off_critique_with_nothing_read_stays_failed_and_an_uncut_one_is_not_truncated():
    parsed = parse_text("Step sentence: a\nCorrectness of", truncated=True)
    assert parsed.status == "failed" and parsed.problems[0].startswith("truncated: the output hit max_tokens; kept 0")
    whole = parse_text(render_text(_verdicts(True), True, ""), STEPS[:1])
    assert whole.status == "ok" and not whole.truncated and whole.reason == ""


def test_only_the_unfinished_last_line_of_a_cut_off_text_is_dropped():
    text = render_text(_verdicts(True, False), False, "5")
    cut = text[: text.index("Wrong") + 3]  # "Correctness of the step: Wro"
    parsed = parse_text(cut, STEPS[:2], truncated=True)
    assert [(v.index, v.correct) for v in parsed.step_verdicts] == [(0, True)]


def test_json_cut_off_without_being_told_is_partial_and_complete_json_is_not():
    full = render_json(_verdicts(True, False), False, "the answer should be 5")
    assert parse_json(full, STEPS[:2]).status == "ok"
    cut = full[: full.index('"final_answer_correct"')]
    parsed = parse_json(cut, STEPS[:2])
    assert parsed.truncated and parsed.status == "partial"
    assert [(v.index, v.correct) for v in parsed.step_verdicts] == [(0, True), (1, False)]
    told = parse(full, "json", STEPS[:2], truncated=True)
    assert told.status == "partial" and told.final_verdict is False


# ------------------------------------------------------------------------------------------------ verdict words
@pytest.mark.parametrize(
    ("word", "verdict", "mixed"),
    [
        ("Correct. But the next step is wrong", True, False),  # the first sentence only
        ("Right", True, False),
        ("This is not correct", False, False),
        ("Incorrect", False, False),
        ("✓", True, False),
        ("❌ no", False, False),
        ("partially correct", False, True),  # only partly right: where the error starts
        ("True; false later", True, False),
        ("valid\nwrong", True, False),
        ("maybe", None, False),
    ],
)
def test_a_verdict_is_read_from_its_first_sentence(word, verdict, mixed):
    parsed = parse_text(f"Step sentence: a\nCorrectness of the step: {word}\nCorrectness of the final answer: Right")
    if verdict is None:
        assert parsed.step_verdicts == [] and f"unreadable step verdict {word!r}" in parsed.problems
        return
    assert [v.correct for v in parsed.step_verdicts] == [verdict]
    assert any(p.startswith(f"mixed verdict {word!r} read as Wrong") for p in parsed.problems) is mixed


@pytest.mark.parametrize(
    ("value", "verdict", "problem"),
    [
        (True, True, None),
        ("Correct", True, None),
        ("Wrong", False, None),
        (3, None, "steps[0].correct is not a boolean: '3'"),
        (None, None, "steps[0].correct is not a boolean: 'None'"),
    ],
)
def test_a_json_verdict_may_be_a_word_but_nothing_else(value, verdict, problem):
    raw = json.dumps({"steps": [{"step": "a", "correct": value, "explanation": " e "}], "final_answer_correct": True})
    parsed = parse_json(raw)
    assert [v.correct for v in parsed.step_verdicts] == ([] if verdict is None else [verdict])
    assert (problem in parsed.problems) if problem else not any("boolean" in p for p in parsed.problems)
    if verdict is not None:
        assert parsed.step_verdicts[0].explanation == "e"


# ------------------------------------------------------------------------------------------------ labels
def test_labels_real_critics_write_are_read_with_their_step_numbers():
    raw = "\n".join(
        [
            "1. Step sentence: Step 1: Tom has 3 + 4 = 7 apples.",
            "Verdict on this step: Right**",
            "**Step 2:** He eats 2, so 7 - 2 = 6 remain.",
            "Step 2 verdict: Wrong",
            "> ## Reasoning: 7 - 2 is 5",
            "Judgement for the answer: Wrong",
            "Rationale: six is wrong",
        ]
    )
    parsed = parse_text(raw, STEPS)
    assert [(v.index, v.correct) for v in parsed.step_verdicts] == [(0, True), (1, False)]
    assert parsed.step_verdicts[1].explanation == "7 - 2 is 5"
    assert parsed.final_verdict is False and parsed.final_explanation == "six is wrong"
    assert parsed.status == "ok" and parsed.first_error_step == 1


def test_explanations_and_sentences_over_several_lines_are_kept_whole():
    raw = (
        "Step sentence: Tom has 3 + 4\n= 7 apples.\nCorrectness of the step:\n\nCorrect\n"
        "Explanation: first line\nsecond line\n---\n"
        "Correctness of the final answer: Wrong\nExplanation: no\nmore"
    )
    parsed = parse_text(raw)
    assert [(v.correct, v.step, v.explanation) for v in parsed.step_verdicts] == [
        (True, "Tom has 3 + 4\n= 7 apples.", "first line\nsecond line")
    ]
    assert parsed.final_verdict is False and parsed.final_explanation == "no\nmore"


def test_a_second_final_verdict_is_named_and_the_first_kept():
    raw = render_text(_verdicts(True), True, "yes") + "Correctness of the final answer: Wrong\nExplanation: no\n"
    parsed = parse_text(raw, STEPS[:1])
    assert parsed.final_verdict is True and parsed.final_explanation == "yes"
    assert "several final verdicts; the first is kept" in parsed.problems


def test_a_step_sentence_without_a_verdict_is_named_unless_it_precedes_the_final_verdict():
    raw = "Step sentence: a\nStep sentence: b\nCorrectness of the step: Right\n"
    assert "step sentence without a verdict: 'a'" in parse_text(raw).problems
    release = "Step sentence: a\nCorrectness of the step: Right\nStep sentence: The answer is 6.\n"
    parsed = parse_text(release + "Correctness of the final answer: Right")
    assert not any("without a verdict" in p for p in parsed.problems) and parsed.status == "ok"


# ------------------------------------------------------------------------------------------------ JSON objects
def test_the_critique_object_is_found_in_an_upper_case_fence_or_after_another_object():
    body = render_json(_verdicts(False), True, "x")
    assert parse_json(f"```JSON\n{body}```", STEPS[:1]).first_error_step == 0
    assert parse_json('{"a": 1} ' + body, STEPS[:1]).status == "ok"  # an object without a schema key is skipped


def test_json_without_steps_or_final_is_named():
    parsed = parse_json('{"final_explanation": " only this "}')
    assert parsed.status == "failed" and parsed.final_explanation == "only this"
    assert parsed.problems == ["'steps' is missing or not a list", "no step verdict found", "no final verdict found"]
    items = parse_json('{"steps": [1, {"step": "a", "correct": false}], "final_answer_correct": false}')
    assert "steps[0] is not an object" in items.problems and items.first_error_step == 0
    assert items.status == "ok"


def test_json_text_fields_that_are_not_text_are_kept_as_json():
    raw = json.dumps({"steps": [{"step": 5, "correct": True, "explanation": ["a"]}], "final_answer_correct": True})
    parsed = parse_json(raw)
    assert parsed.step_verdicts[0].explanation == '["a"]' and parsed.final_explanation == ""
