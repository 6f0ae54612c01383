"""Property tests (hypothesis) of what reads untrusted text: source loaders, answer extraction and grading budgets,
step splitting, critique parsers, step checks. Each property is bounded: few examples, small inputs, a deadline
off (a loaded CI machine must not fail a test on time) and budgets in the code itself, not in the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amc import answers
from amc.answers import extract, too_costly, verify_many
from amc.config import FileSource
from amc.critique_format import parse
from amc.errors import InputError
from amc.records import Problem
from amc.sources.local import load_file_problems
from amc.steps import MAX_EQUATIONS, claims, first_false_arithmetic, join, split

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# text that looks like what models and datasets write: digits, operators, LaTeX, words, newlines, odd unicode
MATHY = st.text(
    alphabet=st.sampled_from(list("0123456789+-*/=^()[]{}.,%$! \n\t\\xyzabcdefThe answer is")) | st.characters(),
    max_size=300,
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["question", "answer", "id", "extra"]), VALUES, max_size=4), min_size=0, max_size=6
)


# ------------------------------------------------------------------------------------------------ loaders
@SETTINGS
@given(rows=ROWS, fmt=st.sampled_from(["jsonl", "json"]))
def test_a_loader_returns_valid_problems_or_one_input_error(tmp_path: Path, rows, fmt) -> None:
    path = tmp_path / f"p.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes NaN/Infinity literals
    else:
        path.write_text(json.dumps(rows))
    try:
        problems = load_file_problems(FileSource(path=str(path)))
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc).strip()
        return
    assert len(problems) == len(rows) > 0 or not rows
    for p in problems:
        Problem.model_validate(p.model_dump())  # the record's own rules hold
        assert p.question.strip() and p.answer.strip()
        assert p.answer.lower() not in ("nan", "inf", "-inf")


@SETTINGS
@given(data=st.binary(max_size=200))
def test_a_loader_never_crashes_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    try:
        load_file_problems(FileSource(path=str(path)))
    except InputError as exc:
        assert str(path) in str(exc)


# ------------------------------------------------------------------------------------------------ extraction
@SETTINGS
@given(text=MATHY)
def test_extract_never_raises_and_returns_text_from_the_solution(text: str) -> None:
    got = extract(text)
    assert got is None or (isinstance(got, str) and got.strip() == got and got)


@SETTINGS
@given(n=st.integers(min_value=-(10**12), max_value=10**12))
def test_an_extracted_integer_answer_verifies_against_itself(n: int) -> None:
    got = extract(f"We add the numbers.\nThe answer is {n}.")
    assert got is not None and verify_many([(str(n), got)]) == [True]


@SETTINGS
@given(base=st.integers(2, 99), height=st.integers(3, 6))
def test_costly_answers_are_refused_by_their_text_not_by_a_clock(monkeypatch, base: int, height: int) -> None:
    tower = str(base)
    for _ in range(height - 1):
        tower = f"{base}^{{{tower}}}"  # 9^{9^{9}}: far beyond any final answer
    assert too_costly(tower) and not too_costly(f"{base}^{{{height}}}")

    def no_pool(*args, **kwargs):
        raise AssertionError("a costly answer reached math-verify")

    monkeypatch.setattr(answers, "_run_in_pool", no_pool)  # decided from the text: no worker, no clock
    assert verify_many([("5", tower), ("5", f"({base}^{{123456}})!")]) == [False, False]


# ------------------------------------------------------------------------------------------------ splitting
@SETTINGS
@given(text=MATHY)
def test_split_gives_stripped_non_empty_single_line_steps_and_join_inverts_it(text: str) -> None:
    steps = split(text)
    assert all(s and s == s.strip() and "\n" not in s and "\r" not in s for s in steps)
    assert split(join(steps)) == steps


# ------------------------------------------------------------------------------------------------ parsers
@SETTINGS
@given(raw=MATHY, fmt=st.sampled_from(["text", "json"]), steps=st.lists(st.text(max_size=30), max_size=4))
def test_critique_parsers_never_raise_and_say_how_they_did(raw: str, fmt: str, steps: list[str]) -> None:
    got = parse(raw, fmt, steps or None)
    assert got is not None


@SETTINGS
@given(verdicts=st.lists(st.booleans(), min_size=1, max_size=6), final=st.booleans())
def test_a_well_formed_text_critique_parses_back_to_its_verdicts(verdicts: list[bool], final: bool) -> None:
    steps = [f"{i} + 1 = {i + 1}" for i in range(len(verdicts))]
    raw = "\n".join(
        f"Step sentence: {s}\nCorrectness of the step: {'Correct' if v else 'Wrong'}\nExplanation: e"
        for s, v in zip(steps, verdicts, strict=True)
    )
    raw += f"\nCorrectness of the final answer: {'Correct' if final else 'Wrong'}\nExplanation: e"
    got = parse(raw, "text", steps)
    assert [v.correct for v in got.step_verdicts] == verdicts
    assert got.final_verdict is final


# ------------------------------------------------------------------------------------------------ step checks
@SETTINGS
@given(step=MATHY)
def test_step_checks_are_deterministic_and_bounded(step: str) -> None:
    first = claims(step)
    assert [(c.expr, c.result, c.true) for c in claims(step)] == [(c.expr, c.result, c.true) for c in first]
    assert len(first) <= 2 * MAX_EQUATIONS * max(1, step.count("<<") + 1)


@SETTINGS
@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6), op=st.sampled_from(["+", "-", "*"]), off=st.integers(-3, 3))
def test_a_stated_equation_is_judged_by_exact_arithmetic(a: int, b: int, op: str, off: int) -> None:
    value = {"+": a + b, "-": a - b, "*": a * b}[op] + off
    found = claims(f"{a} {op} {b} = {value}")
    assert len(found) == 1 and found[0].true is (off == 0)
    assert first_false_arithmetic([f"{a} {op} {b} = {value}"]) == (None if off == 0 else 0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_answers_are_never_problems(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": bad}) + "\n")
    with pytest.raises(InputError, match="not an answer"):
        load_file_problems(FileSource(path=str(path)))
