"""Step splitting and symbolic arithmetic checks: notation edge cases, guards against costly input, and the
quality of ``first_false_arithmetic`` on ProcessBench's human labels."""

from __future__ import annotations

import json

import pytest
import sympy

from amc.steps import claims, evaluate, first_false_arithmetic, join, numbers, operators, split


def test_split_gives_one_stripped_step_per_non_empty_line() -> None:
    text = "  First, 2 + 2 = 4.\n\n\tThen 4 * 3 = 12.  \n#### 12\n"
    assert split(text) == ["First, 2 + 2 = 4.", "Then 4 * 3 = 12.", "#### 12"]
    assert split(join(split(text))) == split(text)
    assert split("") == [] and split("\n \n") == []


def _truths(text: str) -> list[tuple[str, str, bool]]:
    return [(c.expr, c.result, c.true) for c in claims(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # money, thousands separators, decimals
        ("Total cost = $3.5 * 4000 = $14,000.", [("3.5 * 4000", "14,000", True)]),
        ("She pays 3 x $4.50 = $13.50 and 13.50 + 2 = 16.", [("3 x $4.50", "13.50", True), ("13.50 + 2", "16", False)]),
        ("1,250 + 3,750 = 5,000", [("1,250 + 3,750", "5,000", True)]),
        ("He uses 600 x 30 = 18 000 watts.", [("600 x 30", "18 000", True)]),
        # LaTeX operators, fractions, roots, powers
        ("\\(2 \\times 3 \\cdot 4 = 24\\)", [("2 \\times 3 \\cdot 4", "24", True)]),
        ("\\( \\frac{1}{3} \\times 18 = 6 \\)", [("\\frac{1}{3} \\times 18", "6", True)]),
        ("\\[ \\dfrac{36}{5} = 7.2 \\]", [("\\dfrac{36}{5}", "7.2", True)]),
        ("18 \\div 3 = 5", [("18 \\div 3", "5", False)]),
        ("12 ÷ 4 × 3 = 9", [("12 ÷ 4 × 3", "9", True)]),
        ("2^{10} = 1024 and \\sqrt{16} + 3² = 13", [("2^{10}", "1024", True), ("\\sqrt{16} + 3²", "13", True)]),
        # percents, in an expression and as a result
        ("20% of 50 = 10", [("20% of 50", "10", True)]),
        ("50/200 = 25%", [("50/200", "25", True)]),
        ("80 - 25% = 60", [("80 - 25%", "60", True)]),
        ("0.2 * 50 = 20%", [("0.2 * 50", "20", False)]),
        # rounded results
        ("10/3 = 3.33", [("10/3", "3.33", True)]),
        ("2/3 = 0.67", [("2/3", "0.67", True)]),
        ("0.2 + 0.1 = 0.4", [("0.2 + 0.1", "0.4", False)]),
        ("100/3 = 33", [("100/3", "33", False)]),
        ("410 ÷ 333 = 1 with a remainder of 77", [("410 ÷ 333", "1", True)]),
        # chains and named quantities
        ("3 * 4 = 12 + 2 = 14", [("3 * 4", "12", True), ("12 + 2", "14", True)]),
        ("Total time = 20 + 23. Total time = 45 minutes.", [("20 + 23", "45", False)]),
        # units and labels between numbers
        ("7995 (total cookies) - 2595 (rainbow cookies) = 4500", [("7995 (total cookies) - 2595", "4500", False)]),
        ("495 students * $15/student = $7425", [("495 students * $15", "7425", True)]),
    ],
)
def test_claims_read_common_notations(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert _truths(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2x + 3 = 7",  # a variable
        "x = 5",
        "f(2 + 1) = 9",  # a function value
        "x_1 + 3 = 5",
        "3 + 2\\pi = 9.28",
        "194 mod 11 = 7",
        "At 7:50 + 30 minutes = 8:20 a.m.",  # clock times
        "4 pounds - 6 ounces = 58 ounces",  # units we cannot convert
        "1/4 cup + 1 and 1/4 cup = 1.5 cups",  # a mixed number in words
        "so \\( \\frac{8 \\pm 2\\sqrt{2}}{4} = 2 \\pm 0.7 \\)",
        "No arithmetic at all here.",
        "The ratio is 3:4 = 0.75",
    ],
)
def test_claims_stay_silent_on_what_they_cannot_read(text: str) -> None:
    assert claims(text) == []


def test_calculator_notes_are_checked_and_echo_the_visible_result() -> None:
    step = "She makes 9 * 2 = $<<9*2=18>>18 every day."
    visible, note = claims(step)
    assert (visible.expr, visible.result, visible.true, visible.in_note) == ("9 * 2", "18", True, False)
    assert (note.expr, note.result, note.true, note.in_note) == ("9*2", "18", True, True)
    assert note.echo_span == visible.result_span and step[slice(*note.echo_span)] == "18"
    wrong_note = claims("She makes <<9*2=19>>19 dollars.")
    assert [(c.expr, c.true) for c in wrong_note] == [("9*2", False)]


def test_claim_values_and_spans_point_into_the_step() -> None:
    step = "So 25% of $1,200 = $300 in all."
    (c,) = claims(step)
    assert step[slice(*c.expr_span)] == c.expr == "25% of $1,200"
    assert step[slice(*c.result_span)] == c.result == "300"
    assert c.value == 300 and c.stated == 300 and c.simple


def test_first_false_arithmetic_points_at_the_first_miscalculation() -> None:
    assert first_false_arithmetic(["2 + 2 = 4", "4 * 3 = 13", "13 - 1 = 11"]) == 1
    assert first_false_arithmetic(["He has 3 apples.", "3 + 4 = 7", "#### 7"]) is None
    assert first_false_arithmetic([]) is None
    assert first_false_arithmetic(["Let x be the cost.", "Then 2x + 3 = 7."]) is None


@pytest.mark.parametrize(
    "step",
    [
        "9^9^9^9 = 5",
        "100000! = 5",
        "(10^{1000})^{1000} = 1",
        "2^{2^{40}} + 1 = 3",
        "1" * 5000 + " + 1 = 2",
    ],
)
def test_pathological_expressions_are_refused_not_evaluated(step: str) -> None:
    assert claims(step) == [] and first_false_arithmetic([step]) is None


def test_a_huge_step_is_cut_by_budgets_not_by_the_clock() -> None:
    # 20,000 equations: what is judged is fixed by the token and equation budgets, the same on any machine load
    from amc.steps import MAX_EQUATIONS, MAX_STEP_TOKENS, CheckTimeout

    step = " ".join(f"{i} + 1 = {i + 1}," for i in range(20_000))
    found = claims(step)
    assert 0 < len(found) <= MAX_EQUATIONS and all(c.true for c in found)
    assert [c.expr for c in claims(step)] == [c.expr for c in found]
    assert len(found) == min(MAX_EQUATIONS, MAX_STEP_TOKENS // 6)  # each "i + 1 = j," is 6 tokens
    assert len(claims(" ".join(f"{i} + 1 = {i + 1}," for i in range(20)))) == 20
    # the wall-clock guard is a last resort: past it the check fails loudly, it never returns fewer claims
    with pytest.raises(CheckTimeout):
        claims(step, timeout=1e-9)


def test_evaluate_numbers_and_operators() -> None:
    assert evaluate("\\frac{1}{3} \\times 18") == 6
    assert evaluate("$3.50 x 4") == 14
    assert evaluate("25 / 1/5") == 125  # a glued fraction binds tighter than a spaced slash
    assert evaluate("\\sqrt{8}") == 2 * sympy.sqrt(2)
    assert evaluate("20% * 50") == 10 and evaluate("20% * 50", percent_as_number=True) == 1000
    assert evaluate("9^9^9^9") is None and evaluate("2 +") is None
    got = numbers("Pay $1,200.50 for 25% of <<3*4=12>>12")
    assert [(n.text, n.value, n.decimals, n.grouped, n.percent, n.in_note) for n in got] == [
        ("1,200.50", sympy.Rational(240100, 200), 2, True, False, False),
        ("25", 25, 0, False, True, False),
        ("3", 3, 0, False, False, True),
        ("4", 4, 0, False, False, True),
        ("12", 12, 0, False, False, True),
        ("12", 12, 0, False, False, False),
    ]
    assert [op for _, op in operators("3 \\times 4 - 2 / 1 + 5 x 2")] == ["*", "-", "/", "+", "*"]


# ----------------------------------------------------------------------------------------------- quality


def _flag_figures(rows: list[dict]) -> tuple[int, float, float]:
    flagged = [(first_false_arithmetic(r["steps"]), r["label"]) for r in rows]
    flagged = [(got, label) for got, label in flagged if got is not None]
    precision = sum(label >= 0 for _, label in flagged) / len(flagged)
    exact = sum(got == label for got, label in flagged) / len(flagged)
    return len(flagged), precision, exact


def test_processbench_gsm8k_flags_are_precise(shared_data) -> None:
    # Quality targets (not timing): when the checker flags a step the solution is labelled wrong >= 90% of the
    # time, and the flagged step is the labelled first error >= 65% of the time. Figures: bench/RESULTS_step_checks.md.
    rows = json.loads((shared_data / "processbench" / "gsm8k.json").read_text())
    n, precision, exact = _flag_figures(rows)
    assert n >= 15  # the checker must flag something to be useful at all
    assert precision >= 0.90
    assert exact >= 0.65


def test_gsm8k_reference_solutions_raise_few_alarms(shared_data) -> None:
    # References are correct up to a handful of typos in GSM8K itself (e.g. "8*3 = 240"); false alarms stay rare.
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    alarms = sum(first_false_arithmetic(split(r["answer"])) is not None for r in rows)
    assert alarms <= 0.01 * len(rows)


def test_reference_solutions_lose_figure_code_and_calculator_notes(shared_data) -> None:
    import json

    from amc.steps import solution_steps

    rows = [json.loads(line) for line in (shared_data / "math500" / "test.jsonl").read_text().splitlines()]
    with_figures = [r for r in rows if "[asy]" in r["solution"]]
    assert with_figures
    for r in with_figures:
        steps = solution_steps(r["solution"])
        assert steps and not any("[asy]" in s or "[/asy]" in s or s.startswith("draw(") for s in steps)
    assert solution_steps("48/2 = <<48/2=24>>24 cups\n#### 24") == ["48/2 = 24 cups"]
