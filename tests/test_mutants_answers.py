"""Final answers (amc/answers.py), piece by piece: where an answer phrase ends, which box counts, how GSM8K answers
split, which plain-number pairs the fast path decides and how, what the grading budget refuses, and the
math-verify comparison the worker processes run (called here in-process, where a test sees it). Written for the
mutants bench/mutation.sh found surviving (issue 16)."""

from __future__ import annotations

from fractions import Fraction

import pytest

import amc.answers as answers
from amc.answers import extract, last_boxed, reference_answer, split_gsm8k, too_costly, verify_many


# ----------------------------------------------------------------------------------------------- extraction
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 5. Next sentence.", "5"),
        ("The answer is $12$.", "12"),
        ("The answer is \\(\\frac{1}{2}\\).", "\\frac{1}{2}"),
        ("The answer is 3.5 meters.", "3.5 meters"),  # a decimal point does not end the sentence
        ("The answer is 5..", "5"),
        ("the final answer is:  $ 7 $ . ok", "7"),
        ("The answer is  \\( 8 \\)", "8"),
        ("The answer is $9.$", "9"),
    ],
)
def test_an_answer_phrase_ends_at_its_sentence_and_sheds_math_delimiters(text, expected):
    assert extract(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{a\\}b}", "a\\}b"),  # an escaped brace does not close the box
        ("\\boxed{a{b}c}", "a{b}c"),
        ("\\boxed  {7}", "7"),
        ("\\boxed 5\nmore", "5"),  # brace-less: to the line end
        ("$\\boxed 5$ and 6", "5"),  # brace-less: to the closing $
        ("\\boxed{ 4 }", "4"),
        ("\\boxed{}", None),
        ("\\boxed{  }", None),
        ("\\boxed5", None),
        ("\\boxed{{}", None),
        ("\\boxed{1} then \\boxed{2", None),  # a truncated last box is no reference answer
        ("no box", None),
    ],
)
def test_the_last_box_is_read_with_balanced_braces(text, expected):
    assert last_boxed(text) == expected


def test_a_model_answer_falls_back_to_the_box_before_an_unreadable_last_one():
    assert extract("\\boxed{1} then \\boxed{2") == "1"
    assert extract("\\boxed{1} then \\boxed{ }") == "1"
    assert extract("\\boxed{1} then \\boxed{3}") == "3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 7.\n#### 1,000", ("She has 7.", "1000")),
        ("a #### 1 \n#### 2,5", ("a #### 1", "25")),  # the last ####
        ("a ####  ", ("a", None)),
        ("  no marker  ", ("no marker", None)),
    ],
)
def test_a_gsm8k_field_splits_at_its_last_marker(text, expected):
    assert split_gsm8k(text) == expected


def test_reference_answers_by_format():
    assert reference_answer("  5 ", "plain") == "5" and reference_answer("   ", "plain") is None
    assert reference_answer("x \\boxed{3}", "boxed") == "3"
    assert reference_answer("x #### 2,000", "gsm8k") == "2000"
    with pytest.raises(ValueError, match="unknown answer format 'latex': expected 'plain', 'gsm8k' or 'boxed'"):
        reference_answer("5", "latex")


# ----------------------------------------------------------------------------------------------- fast path
@pytest.mark.parametrize(
    ("gold", "pred", "verdict"),
    [
        ("\\boxed{5}", "5", True),
        ("32,\\!348", "32348", True),
        ("1{,}000", "1000", True),
        ("$1,000", "1000", True),
        ("x = 3", "3", True),
        ("18.", "18", True),
        ("90^\\circ", "90", True),
        ("90°", "90", True),
        ("3 square feet", "3", True),
        ("5 cm.", "5", True),
        ("\\text{5 apples}", "5", True),
        ("1/2", "0.5", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("-\\frac{1}{2}", "-0.5", True),
        ("+5", "5", True),
        (".5", "0.5", True),
        ("50\\%", "0.5", True),
        ("10 percent", "0.1", True),
        ("0.1", "10%", True),
        ("5%", "5", True),
        ("50", "0.5", False),  # no percent sign: 50 is not 0.5
        ("0.5", "50", False),
        ("2", "3", False),
        ("1/0", "0", None),  # not a number: math-verify decides
        ("5 pi", "5", None),  # "pi" is mathematics, not a unit
        ("3 m", "3", None),  # a one-letter word is no unit
        ("5 x", "5", None),
        ("0.3333333", "1/3", None),  # within math-verify's float rounding: its call
    ],
)
def test_the_fast_path_decides_plain_numbers_and_hands_on_the_rest(gold, pred, verdict):
    assert answers._fast_verdict(gold, pred) is verdict


def test_a_plain_number_keeps_its_exact_value_and_its_percent_sign():
    assert answers._plain_number("1,234.5") == (Fraction(24690, 20), False)
    assert answers._plain_number("12.5\\%") == (Fraction(25, 2), True)
    assert answers._plain_number("7 percent") == (Fraction(7), True)
    assert answers._plain_number("three") is None


@pytest.mark.parametrize(
    ("text", "costly"),
    [
        ("1" * 512, False),
        ("1" * 513, True),
        ("2^{9999}", False),
        ("2^{10000}", True),
        ("2**10000", True),
        ("9999!", False),
        ("10000!", True),
        ("(n+1)!", True),
        ("9^{9^{9}}", True),
        ("2**3**4", True),
        ("\\sum_{k=1}^{10^9} k", True),
        ("\\sum_{k=1}^{10} k", False),
        ("x^2 + 1", False),
    ],
)
def test_the_grading_budget_is_decided_by_the_text(text, costly):
    assert too_costly(text) is costly


def test_verify_many_decides_empty_identical_and_costly_pairs_without_math_verify(monkeypatch):
    def no_pool(*a, **k):
        raise AssertionError("math-verify asked")

    monkeypatch.setattr(answers, "_run_in_pool", no_pool)
    pairs = [
        ("5", None),
        ("5", "  "),
        ("", "5"),
        (" \\text{(C)} ", "\\text{(C)}"),  # identical text agrees even where math-verify cannot parse it
        ("x^{2}", "9^{9^{9^{9}}}"),
        ("1" * 600, "x"),
        ("50\\%", "0.5"),
    ]
    assert verify_many(pairs) == [False, False, False, True, False, False, True]


def test_only_the_undecided_pairs_go_to_math_verify_and_their_answers_come_back_in_place(monkeypatch):
    sent: list = []

    def pool(pairs, timeout, workers):
        sent.append((pairs, timeout, workers))
        return [True, None][: len(pairs)]

    monkeypatch.setattr(answers, "_run_in_pool", pool)
    got = verify_many([("x+1", "1+x"), ("5", "5"), ("y", "z"), ("2", "3")], timeout=1.5, workers=3)
    assert got == [True, True, None, False]
    assert sent == [([("x+1", "1+x"), ("y", "z")], 1.5, 3)]
    verify_many([("a", "b")])
    assert sent[-1][1] == answers.GUARD_S and sent[-1][2] == answers.cpu_workers() >= 1


# ----------------------------------------------------------------------------------------------- math-verify
@pytest.mark.parametrize(
    ("text", "wrapped"),
    [
        ("\\dfrac{1}{2}", "$\\dfrac{1}{2}$"),
        ("$x$", "$x$"),
        ("\\boxed{x}", "\\boxed{x}"),
        ("\\(x\\)", "\\(x\\)"),
        ("\\[x\\]", "\\[x\\]"),
    ],
)
def test_bare_latex_gets_a_math_environment(text, wrapped):
    assert answers._wrap(text) == wrapped


def test_the_math_verify_comparison_in_a_worker():
    # a guard far beyond these comparisons' cost, so that a loaded machine cannot make them undecided
    assert answers._mv_verify("\\dfrac{1}{2}", "0.5", 600.0) is True
    assert answers._mv_verify("x^2 + 2x + 1", "(x+1)^2", 600.0) is True
    assert answers._mv_verify("\\sqrt{2}", "2", 600.0) is False
    assert answers._mv_verify("\\frac{1}{2}", "", 600.0) is False  # nothing parsed: not equivalent
    assert answers._mv_parse("\\dfrac{1}{2}") and answers._mv_parse("$x$")


def test_a_guard_that_fires_is_undecided_and_any_other_failure_is_false(monkeypatch):
    def fired(gold, pred):
        raise answers._GuardFired

    def broken(gold, pred):
        raise RecursionError("sympy")

    monkeypatch.setattr(answers, "_mv_compare", fired)
    assert answers._mv_verify("1", "2", 5.0) is None
    monkeypatch.setattr(answers, "_mv_compare", broken)
    assert answers._mv_verify("1", "2", 5.0) is False


def test_the_parent_waits_a_generous_multiple_of_the_guard():
    assert answers._stuck_after(2.0) == 2.0 * 4.0 + 0.5
