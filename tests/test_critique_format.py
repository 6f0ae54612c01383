"""Critique formats: round trips, annotator variants, garbage, and the 200 critiques of the original release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amc.critique_format import (
    ParsedCritique,
    critique_json_schema,
    parse,
    parse_json,
    parse_text,
    render_json,
    render_text,
)
from amc.records import Critique, ReasoningPath, StepVerdict
from amc.sources.mathcritique import extract_mathcritique_record

RELEASE_FILES = ("Meta-Llama-3-8B-gsm8k-sftdata_0_new.json", "Meta-Llama-3-8B-math-sftdata_0_new.json")

STEPS = [
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.",
    "She makes 9 * 2 = $<<9*2=18>>18 every day.",
    "The answer is 20.",
]
VERDICTS = [
    StepVerdict(index=0, step="Janet sells 16 - 3 - 4 = 9 duck eggs a day.", correct=True, explanation="16-3-4 is 9."),
    StepVerdict(index=1, step="She makes 9 * 2 = $18 every day.", correct=True, explanation="9 eggs at $2\nmake $18."),
    StepVerdict(index=2, step="The answer is 20.", correct=False, explanation="The working gives 18, not 20."),
]


@pytest.fixture(scope="module")
def release(shared_data: Path) -> list[dict]:
    records: list[dict] = []
    for name in RELEASE_FILES:
        records += json.loads((shared_data / "mathcritique" / name).read_text(encoding="utf-8"))
    return records


def _triples(parsed: ParsedCritique) -> list[tuple[int, bool, str, str]]:
    return [(v.index, v.correct, v.step, v.explanation) for v in parsed.step_verdicts]


# ------------------------------------------------------------------------------------------- the original release


def test_release_record_splits_into_question_steps_and_critique(release: list[dict]) -> None:
    question, steps, critique = extract_mathcritique_record(release[0])
    assert question.startswith("Samantha bought a crate of 30 eggs for $5.")
    assert question.endswith("capital from the sales?")  # the answer-format request is gone
    assert steps == [
        "The capital Samantha recovered from the sale of 30 eggs is $5 / 30 = $<<5/30=0.17>>0.17",
        "She sold 30 / 2 = <<30/2=15>>15 eggs",
        "Samantha will have 30 - 15 = <<30-15=15>>15 eggs left.",
        "The answer is 15.",
    ]  # the primer "Let's break it down step by step:" is not a step
    assert critique.startswith("Step sentence: The capital Samantha recovered")
    assert critique.rstrip().endswith("leading to an incorrect final answer.")
    assert "I have made a step-by-step critic" not in critique and "<|end_of_text|>" not in critique


def test_parser_recovers_every_verdict_of_the_release(release: list[dict]) -> None:
    assert len(release) == 200
    totals = {"verdicts": 0, "wrong": 0, "final_wrong": 0}
    for n, record in enumerate(release):
        _, steps, critique = extract_mathcritique_record(record)
        expected = critique.count("Correctness of the step:")
        for parsed in (parse_text(critique), parse_text(critique, steps)):
            assert len(parsed.step_verdicts) == expected, (n, parsed.problems)
            assert parsed.final_verdict is not None, (n, parsed.problems)
            assert parsed.status == "ok"
        aligned = [v.index for v in parsed.step_verdicts]
        assert aligned == sorted(aligned) and all(0 <= i < len(steps) for i in aligned), n
        totals["verdicts"] += expected
        totals["wrong"] += sum(not v.correct for v in parsed.step_verdicts)
        totals["final_wrong"] += parsed.final_verdict is False
    # 679 "Wrong" + 5 "Incorrect" + 1 "Correct for the equation but wrong in context"; one final answer is Correct.
    assert totals == {"verdicts": 928, "wrong": 685, "final_wrong": 199}


def test_release_verdicts_land_on_the_path_steps_they_repeat(release: list[dict]) -> None:
    def aligned(n: int) -> ParsedCritique:
        _, steps, critique = extract_mathcritique_record(release[n])
        return parse_text(critique, steps)

    # GSM8K: the critique drops the calculator notes "<<10/2=5>>" and still finds its lines; step 2 is the error.
    second = aligned(1)
    assert [v.index for v in second.step_verdicts] == [0, 1, 2, 3] and second.first_error_step == 2
    assert second.step_verdicts[1].step == "Half of that distance is 10/2 = 5 miles"  # the sentence as critiqued
    # MATH: one line holds two sentences judged apart, and LaTeX lines ("x-7&=x+1 \\") are found from "$x-7=x+1$."
    math = aligned(100)
    assert [v.index for v in math.step_verdicts] == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert not math.problems
    # "Correct for the equation but wrong in context" is read as Wrong, and said so.
    pizza = aligned(143)
    assert pizza.step_verdicts[-1].correct is False
    assert any("mixed verdict" in p for p in pizza.problems)


def test_release_record_without_a_critique_fails_fast() -> None:
    with pytest.raises(ValueError, match="instruction"):
        extract_mathcritique_record({"instruction": "What is 2+2?\n\nAssistant:4\n<|end_of_text|>", "output": ""})
    with pytest.raises(ValueError, match="instruction"):
        extract_mathcritique_record({"input": ""})


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("with_steps", [False, True])
def test_render_then_parse_gives_back_the_verdicts(fmt: str, with_steps: bool) -> None:
    render = render_text if fmt == "text" else render_json
    raw = render(VERDICTS, False, "The answer should be 18.\nNot 20.")
    parsed = parse(raw, fmt, STEPS if with_steps else None)  # type: ignore[arg-type]
    assert parsed.status == "ok" and parsed.problems == []
    assert _triples(parsed) == [(v.index, v.correct, v.step, v.explanation) for v in VERDICTS]
    assert parsed.first_error_step == 2
    assert parsed.final_verdict is False and parsed.final_explanation == "The answer should be 18.\nNot 20."


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_all_correct_round_trip_has_no_error_step(fmt: str) -> None:
    good = [v.model_copy(update={"correct": True}) for v in VERDICTS]
    raw = (render_text if fmt == "text" else render_json)(good, True, "")
    parsed = parse(raw, fmt)  # type: ignore[arg-type]
    assert parsed.first_error_step == -1 and parsed.final_verdict is True and parsed.final_explanation == ""


def test_text_rendering_is_the_release_format() -> None:
    assert render_text(VERDICTS[2:], False, "18.") == (
        "Step sentence: The answer is 20.\nCorrectness of the step: Wrong\nExplanation: The working gives 18, not 20.\n"
        "\nCorrectness of the final answer: Wrong\nExplanation: 18.\n"
    )


def test_parsed_critique_fills_a_critique_record() -> None:
    raw = render_text(VERDICTS, False, "18")
    parsed = parse_text(raw, STEPS)
    path = ReasoningPath(
        id="p/sample/0", problem_id="p", question="q", reference_answer="18", steps=STEPS, strategy="sample",
        generator="actor",
    )  # fmt: skip
    fields = parsed.model_dump(exclude={"status", "problems"})
    critique = Critique(id="p/sample/0/c0", path=path, annotator="a", raw=raw, parse_status=parsed.status, **fields)
    assert critique.first_error_step == 2 and critique.step_verdicts[2].step == "The answer is 20."


# ------------------------------------------------------------------------------------------- text variants


def test_text_variants_of_real_annotators() -> None:
    raw = (
        "Here is my critique.\n\n"
        "**Step 1:** Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
        "**Correctness of the step:** RIGHT\n"
        "**Explanation:**   She keeps 7 of 16.\n"
        "   That leaves 9.\n\n"
        "---\n"
        "2. **Step sentence:   She makes 9 * 2 = $18 every day.**   \n"
        "correctness of the step:   **Incorrect**\n"
        "explanation: should be 18 dollars, fine; formatting aside.\n\n"
        "**Correctness of the final answer**: Wrong.\n"
        "Explanation: 18, not 20.\n"
    )
    parsed = parse_text(raw)
    assert _triples(parsed) == [
        (0, True, "Janet sells 16 - 3 - 4 = 9 duck eggs a day.", "She keeps 7 of 16.\n   That leaves 9."),
        (1, False, "She makes 9 * 2 = $18 every day.", "should be 18 dollars, fine; formatting aside."),
    ]
    assert parsed.final_verdict is False and parsed.final_explanation == "18, not 20."
    assert parsed.status == "ok" and parsed.first_error_step == 1


def test_verdicts_without_step_sentences_take_the_steps_in_order() -> None:
    raw = (
        "Correctness of the step: Correct\nExplanation: fine\n"
        "Correctness of the step: Correct\nExplanation: fine\n"
        "Correctness of the step: Wrong\nExplanation: 18, not 20\n"
        "Correctness of the final answer: Wrong\n"
    )
    parsed = parse_text(raw, STEPS)
    assert [(v.index, v.correct, v.step) for v in parsed.step_verdicts] == [
        (0, True, STEPS[0]),
        (1, True, STEPS[1]),
        (2, False, STEPS[2]),
    ]  # with no sentence, the verdict carries the path step it was placed on
    assert parsed.first_error_step == 2 and parsed.final_explanation == ""


def test_verdict_word_on_the_next_line_and_stated_step_numbers() -> None:
    raw = (
        "Step sentence: Step 3: the answer is twenty\nCorrectness of the step:\n\n  Wrong\n"
        "Explanation: 18\nCorrectness of the final answer: Correct\n"
    )
    parsed = parse_text(raw, STEPS)
    assert [(v.index, v.correct, v.step) for v in parsed.step_verdicts] == [(2, False, "the answer is twenty")]
    assert parsed.final_verdict is True


def test_skipped_and_repeated_steps_align_to_the_right_lines() -> None:
    steps = ["x = 2 + 3", "= 5", "y = 5 * 2", "= 5", "The answer is 10."]
    raw = render_text(
        [
            StepVerdict(index=0, step="x = 2 + 3", correct=True),
            StepVerdict(index=1, step="= 5", correct=True),
            StepVerdict(index=3, step="= 5", correct=False),  # the annotator skipped "y = 5 * 2"
            StepVerdict(index=4, step="The answer is 10.", correct=False),
        ],
        False,
        "",
    )
    assert [v.index for v in parse_text(raw, steps).step_verdicts] == [0, 1, 3, 4]
    assert parse_text(raw, steps).first_error_step == 3


def test_verdicts_beyond_the_path_are_dropped_with_a_reason() -> None:
    raw = render_text(VERDICTS + [StepVerdict(index=3, step="Something never written.", correct=False)], False, "")
    parsed = parse_text(raw, STEPS)
    assert [v.index for v in parsed.step_verdicts] == [0, 1, 2]
    assert any("beyond the path" in p for p in parsed.problems)


_FINAL_OK = "Correctness of the final answer: Correct"


@pytest.mark.parametrize(
    ("raw", "status", "first_error", "final"),
    [
        (f"Step sentence: a\nCorrectness of the step: Correct\n{_FINAL_OK}", "ok", -1, True),
        ("Step sentence: a\nCorrectness of the step: Wrong\n", "partial", 0, None),
        ("Correctness of the final answer: Wrong\nExplanation: off by 2", "partial", None, False),
        ("The solution looks fine to me.", "failed", None, None),
        ("Correctness of the step: maybe\nCorrectness of the final answer: perhaps", "failed", None, None),
    ],
)
def test_status_says_what_was_found(raw: str, status: str, first_error: int | None, final: bool | None) -> None:
    parsed = parse_text(raw)
    assert (parsed.status, parsed.first_error_step, parsed.final_verdict) == (status, first_error, final)
    assert bool(parsed.problems) == (status != "ok")


def test_unreadable_verdicts_are_named_in_problems() -> None:
    parsed = parse_text("Step sentence: a\nCorrectness of the step: maybe\nCorrectness of the final answer: perhaps")
    assert "unreadable step verdict 'maybe'" in parsed.problems
    assert "unreadable final verdict 'perhaps'" in parsed.problems


# ------------------------------------------------------------------------------------------- JSON


def test_rendered_json_matches_the_schema() -> None:
    import jsonschema

    schema = critique_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(render_json(VERDICTS, True, "ok")), schema)
    with pytest.raises(jsonschema.ValidationError):  # strict: guided decoding may not add keys
        jsonschema.validate({"steps": [], "final_answer_correct": True, "final_explanation": "", "x": 1}, schema)


def test_json_inside_fences_and_after_prose() -> None:
    body = render_json(VERDICTS, False, "18")
    for raw in (f"```json\n{body}\n```", f"Here is my critique:\n{body}\nHope it helps {{:", f"```\n{body}```"):
        parsed = parse_json(raw, STEPS)
        assert parsed.status == "ok" and _triples(parsed) == [
            (v.index, v.correct, v.step, v.explanation) for v in VERDICTS
        ]


def test_json_trailing_comma_fails_with_a_reason() -> None:
    raw = '{"steps": [{"step": "a", "correct": true, "explanation": "x"},], "final_answer_correct": true}'
    parsed = parse_json(raw)
    assert parsed.status == "failed" and parsed.step_verdicts == []
    assert parsed.problems[0].startswith("invalid JSON")


def test_json_tolerates_verdict_words_and_reports_bad_items() -> None:
    raw = json.dumps(
        {"steps": [{"step": "a", "correct": "Wrong"}, {"step": "b", "correct": 3}, "c"], "final_explanation": "?"}
    )
    parsed = parse_json(raw)
    assert _triples(parsed) == [(0, False, "a", "")]
    assert parsed.status == "partial" and parsed.final_verdict is None and parsed.final_explanation == "?"
    assert "steps[1].correct is not a boolean: '3'" in parsed.problems
    assert "steps[2] is not an object" in parsed.problems


def test_unknown_format_is_a_failure_not_an_error() -> None:
    parsed = parse(render_text(VERDICTS, True, ""), "yaml")  # type: ignore[arg-type]
    assert parsed.status == "failed" and parsed.problems[0] == "unknown critique format 'yaml'"


# ------------------------------------------------------------------------------------------- never raises

GARBAGE: list[object] = [
    None,
    17,
    b"Correctness of the step: Wrong",
    "",
    "\x00\x01\ufffd",
    "*" * 200_000,
    "Step 1: " * 50_000,
    "Correctness of the step:",
    "Correctness of the step: Wrong\n" * 20_000,
    "Explanation: no block yet\n---\n",
    "{" * 100_000,
    "[" * 100_000 + "{",
    '{"steps": {"a": 1}, "final_answer_correct": null}',
    '```json\n{"steps": [',
    "[]",
]


@pytest.mark.parametrize("raw", GARBAGE, ids=range(len(GARBAGE)))
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_parsers_never_raise(raw: object, fmt: str) -> None:
    for steps in (None, STEPS, [], [3, None]):
        parsed = parse(raw, fmt, steps)  # type: ignore[arg-type]
        assert isinstance(parsed, ParsedCritique) and parsed.final_verdict is None
        assert parsed.problems, "every non-ok parse says why"
        assert all(0 <= v.index < len(steps) for v in parsed.step_verdicts) if steps is not None else True


_LINES = st.sampled_from(
    ["Step sentence: a", "Correctness of the step: Wrong", "**Correctness of the step:** Right", "Explanation:",
     "Correctness of the final answer: Correct", "Step 2:", "---", "", "```json", '{"steps": [', "}"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LINES, st.text(max_size=40)), max_size=30).map("\n".join))
def test_parsers_never_raise_on_generated_text(raw: str) -> None:
    # AMC_STRICT_PARSERS=1 (conftest): a parser crash raises here instead of hiding as a failed parse
    for fmt in ("text", "json"):
        for steps in (None, STEPS):
            parsed = parse(raw, fmt, steps)  # type: ignore[arg-type]
            assert parsed.status == "ok" or parsed.problems, "a parse that is not ok says why"
            if steps is not None:
                assert all(0 <= v.index < len(steps) for v in parsed.step_verdicts)


def test_a_parser_crash_is_raised_in_tests_and_logged_in_production(monkeypatch, caplog) -> None:
    import amc.critique_format as cf

    def broken(*args, **kwargs):
        raise IndexError("a bug")

    monkeypatch.setattr(cf, "_classify", broken)
    raw = render_text(VERDICTS, False, "no")
    with pytest.raises(IndexError, match="a bug"):
        parse(raw, "text", STEPS)
    monkeypatch.delenv("AMC_STRICT_PARSERS")
    with caplog.at_level("ERROR", logger="amc.critique_format"):
        parsed = parse(raw, "text", STEPS)
    assert parsed.status == "failed" and parsed.problems[0] == "parser bug: IndexError: a bug"
    assert "critique parser bug" in caplog.text and "IndexError" in caplog.text  # with its traceback


# Words that are no label of either format, so any sequence of them is free text inside a critique.
_WORDS = st.sampled_from(["the", "sum", "of", "12", "and", "30", "is", "42", "apples", "so", "we", "add", "=", "+"])
_PHRASE = st.lists(_WORDS, min_size=1, max_size=8).map(" ".join)
_VERDICTS = st.lists(
    st.tuples(_PHRASE, st.booleans(), st.lists(_PHRASE, min_size=1, max_size=3).map("\n".join)),
    min_size=1,
    max_size=8,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(_VERDICTS, st.booleans(), _PHRASE, st.sampled_from(["text", "json"]), st.booleans())
def test_render_then_parse_is_the_identity(verdicts, final, final_why, fmt, with_steps) -> None:
    """Whatever verdicts a critique states, rendering and parsing it gives them back, on the right steps."""
    given_verdicts = [StepVerdict(index=i, step=s, correct=c, explanation=e) for i, (s, c, e) in enumerate(verdicts)]
    raw = (render_text if fmt == "text" else render_json)(given_verdicts, final, final_why)
    steps = [s for s, _, _ in verdicts] if with_steps else None
    parsed = parse(raw, fmt, steps)  # type: ignore[arg-type]
    assert parsed.status == "ok" and parsed.problems == []
    assert parsed.step_verdicts == given_verdicts
    wrong = [i for i, (_, c, _) in enumerate(verdicts) if not c]
    assert parsed.first_error_step == (wrong[0] if wrong else -1)
    assert (parsed.final_verdict, parsed.final_explanation) == (final, final_why)


def test_a_raw_control_character_inside_a_json_string_does_not_lose_the_critique():
    """Guided decoding (vLLM's and the transformers engine's xgrammar) lets a raw tab or other control character
    into a JSON string; strict JSON would call the whole critique unparsable."""
    from amc.critique_format import parse_json

    raw = '{"steps": [{"step": "2+2=4", "correct": true, "explanation": "fine\\there\x0f"}], '
    raw += '"final_answer_correct": true, "final_explanation": "ok"}'
    parsed = parse_json(raw.replace("\\t", "\t"), ["2+2=4"])
    assert parsed.status == "ok" and parsed.step_verdicts[0].explanation == "fine\there\x0f"
