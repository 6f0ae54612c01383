"""Step checks (amc/steps.py) at their edges: how far a stated result may be from the exact value (the digits it
shows, rounded decimals on the left), which "and 1/4" is a mixed number and not a claim, how steps are split and
which reference-solution lines are no steps. Written for the mutants bench/mutation.sh found surviving (issue 16).
A false alarm (a true claim read as false) mislabels data; a miss lets a flawed path through."""

from __future__ import annotations

import pytest
import sympy

from amc.steps import claims, first_false_arithmetic, join, solution_steps, split


def _read(step: str) -> list[tuple[str, str, bool]]:
    return [(c.expr, c.result, c.true) for c in claims(step)]


@pytest.mark.parametrize(
    ("step", "true"),
    [
        # the last digit shown bounds the error: 10/3 is 3.333...
        ("10/3 = 3.33", True),
        ("10/3 = 3.34", True),
        ("10/3 = 3.35", False),
        ("10/3 = 3.32", False),
        ("10/3 = 3.3", True),
        ("10/3 = 3", False),  # no decimals shown: exact or wrong
        ("100/3 = 33", False),
        ("1/3 = 0.33", True),
        ("1/3 = 0.35", False),
        ("1/3 = 0.32", False),
        ("1/7 = 0.142857142857143", True),
        # when the exact value fits in the digits shown, other digits there are wrong
        ("10/4 = 2.50", True),
        ("10/4 = 2.51", False),
        ("10/4 = 2.49", False),
        ("10/4 = 2.6", False),
        ("2.5 * 2 = 5.0", True),
        ("2.5 * 2 = 5.1", False),
        ("0.1 + 0.2 = 0.3", True),
        ("1/8 = 0.125", True),
        # rounded decimals on the left side allow a relative error of their own size
        ("(2.8284)^2 = 8", True),
        ("(2.8284)^2 = 8.0001", True),
        ("(2.8284)^2 = 8.1", False),
        ("(1.41)^2 = 2", False),
        # irrational values: equal forms agree, and the shown digits bound the error
        ("(3 + \\sqrt{5})^2 = 14 + 6\\sqrt{5}", True),
        ("\\sqrt{2} = 1.41", True),
        # units: percent and scale words
        ("25% of 80 = 20", True),
        ("25% of 80 = 21", False),
        ("2 million / 4 = 500,000", True),
        ("2 million / 4 = 600,000", False),
        ("3 x $4.50 = $13.50", True),
        ("\\frac{1}{3} \\times 18 = 6", True),
        ("(2/3) * 9 = 6", True),
        ("5 * 2 = 11", False),
        ("7/2 = 4", False),
    ],
)
def test_a_stated_result_is_judged_within_the_digits_it_shows(step, true):
    (claim,) = claims(step)
    assert claim.true is true


@pytest.mark.parametrize(
    "step",
    [
        "2 and 1/2 = 2.5",  # a mixed number, not "1/2 = 2.5"
        "2 and \\frac{1}{2} = 2.5",
        "2 and (1/2) = 2.5",
        "2 and 3 = 5",
        "half of 1/2 = 0.25",
        "x and 1/2 = 0.5",
        "2 1/2 = 2.5",
        "2 and 1/",
        "\\pi = 3.14",
        "10/3 \\approx 3",
    ],
)
def test_no_claim_where_the_expression_is_not_read_whole(step):
    assert claims(step) == []


def test_a_connective_before_an_expression_that_is_no_fraction_leaves_the_claim():
    assert _read("2 and (3 + 1) = 4") == [("(3 + 1)", "4", True)]
    assert _read("2 and 1 / 2 = 2.5") == [("1 / 2", "2.5", False)]  # a spaced slash is division, not a fraction
    assert _read("2 plus 1/2 = 2.5") == [("2 plus 1/2", "2.5", True)]
    assert _read("3 * 4 = 12 and 12 - 2 = 11") == [("3 * 4", "12", True), ("12 - 2", "11", False)]


def test_the_first_false_step_is_found_and_true_steps_are_none():
    assert first_false_arithmetic(["10/3 = 3.33", "(2.8284)^2 = 8", "25% of 80 = 21", "5 * 2 = 11"]) == 2
    assert first_false_arithmetic(["10/3 = 3.33", "no arithmetic here", "2 and 1/2 = 2.5"]) is None
    assert first_false_arithmetic([]) is None


def test_steps_are_the_non_empty_lines_and_join_inverts_split():
    text = "  a = 1 \n\n\t\nb\r\nc  "
    assert split(text) == ["a = 1", "b", "c"]
    assert split(join(split(text))) == split(text) and join(["a", "b"]) == "a\nb"
    assert split("") == [] and split("\n \n") == []


def test_a_reference_solution_loses_notes_figures_and_the_answer_line():
    solution = (
        "She buys 48/2 = <<48/2=24>>24 pens.\n[asy]\ndraw((0,0)--(1,1));\n[/asy]\nShe keeps them.\n"
        "The code #### is not an answer line\n#### 24"
    )
    assert solution_steps(solution) == [
        "She buys 48/2 = 24 pens.",
        "She keeps them.",
        "The code #### is not an answer line",
    ]
    assert solution_steps("a [asy]x[/asy] b [asy]y[/asy] c") == ["a  b  c"]  # each figure, not all between them


# ------------------------------------------------------------------ found by the full mutmut run (third session)
@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # one number on the right: a simple result, spans of the left side and of the number
        ("He pays 12 - 2 = 10 dollars.", dict(expr="12 - 2", result="10", span=(8, 19), expr_span=(8, 14),
         result_span=(17, 19), value=10, stated=10, simple=True, in_note=False, result_unit=1)),
        # an expression on the right: not simple, the result span covers all of it
        ("So 3 + 4 = 5 + 2 apples.", dict(expr="3 + 4", result="5 + 2", span=(3, 16), expr_span=(3, 8),
         result_span=(11, 16), value=7, stated=7, simple=False, in_note=False, result_unit=1)),
        # a signed result is not one unsigned literal
        ("Loss: 10 - 12 = -2 cents.", dict(expr="10 - 12", result="2", value=-2, stated=-2, simple=False)),
        # a % on the left read as a plain number is said so
        ("So 50% * 20 = 1000 here.", dict(value=1000, stated=1000, simple=True, percent_as_number=True)),
        # a percent result is stated in hundredths
        ("So 1/4 = 25% of it.", dict(result="25", value=sympy.Rational(1, 4), stated=sympy.Rational(1, 4),
         simple=True, result_unit=sympy.Rational(1, 100), percent_as_number=False)),
    ],
)  # fmt: skip
def test_a_claim_says_where_its_sides_are_and_what_they_are_worth(step, expected):
    """What the critique hints, the inject strategy and the viewer read from a claim: its texts and their spans in
    the step, both values, whether the result is one plain literal, its unit."""
    (c,) = claims(step)
    got = {k: getattr(c, k) for k in expected}
    assert got == expected
    assert step[c.expr_span[0] : c.expr_span[1]] == c.expr and step[c.result_span[0] : c.result_span[1]] in (
        c.result,
        f"-{c.result}",
    )


def test_a_claim_in_a_calculator_note_is_marked_and_points_at_the_visible_echo():
    visible, note = claims("She buys 4*3=<<4*3=12>>12 eggs.")
    assert (visible.in_note, visible.span, visible.echo_span) == (False, (9, 25), None)
    assert (note.in_note, note.span, note.expr_span, note.result_span, note.echo_span) == (
        True,
        (15, 21),
        (15, 18),
        (19, 21),
        (23, 25),
    )


@pytest.mark.parametrize(
    ("step", "judged"),
    [
        ("So 2 * 4 = 9 cubes.", [(False, "9")]),
        ("So 7 / 2 = 3.5 exactly.", [(True, "7/2")]),
        ("So 7 / 2 = 3.4 each.", [(False, "17/5")]),
        ("So 10 / 3 = 3.33 each.", [(True, "333/100")]),  # within the last digit shown
        ("So 10 / 3 = 3.35 each.", [(False, "67/20")]),
        ("So 1/8 = 0.125 each.", [(True, "1/8")]),
        ("Change 10 - 12 = -2 dollars.", [(True, "-2")]),
        ("Change 10 - 12 = -3 dollars.", [(False, "-3")]),
        ("Change 10 - 12 = 2 dollars.", [(False, "2")]),  # the sign is part of the result
        ("Cost 2 * 0.25 = 50 cents.", [(True, "1/2")]),  # cents are hundredths
        ("Cost 2 * 0.25 = 60 cents.", [(False, "3/5")]),
        ("The town has 2 * 1.5 = 3 million people.", [(True, "3")]),
        ("The town has 2 * 1.5 = 4 million people.", [(False, "4000000")]),
        ("So (2.8284)^2 = 8 exactly.", [(True, "8")]),  # rounded decimals on the left: relative tolerance
        ("So 1.4142 * 1.4142 = 2 here.", [(True, "2")]),
        ("So (2.8284)^2 = 8.1 exactly.", [(False, "81/10")]),
        ("So 3 * 2 = 3! ways.", [(True, "6")]),
        ("So 2 * 4 = 2^3 cubes.", [(True, "8")]),
        ("He paid 50 / 3 = 1/3 of 50 dollars.", [(True, "50/3")]),
        ("Total 12 + 2 = 13 + 1 = 14.", [(True, "14"), (True, "14")]),
        ("So 20 * 50% = 10 left", [(True, "10")]),
        ("So 20 * 50% = 1000 here", [(True, "1000")]),  # the % read as a plain number
        ("So 20 * 50% = 11 left", [(False, "11")]),
        ("So 36/5 = 7 full pens.", [(True, "7")]),  # integer division, said in words
        ("So 36/5 = 7 pens.", [(False, "7")]),
        ("Then 4 pounds - 6 ounces = 58 ounces.", []),  # units we cannot convert: no claim
    ],
)
def test_each_stated_result_is_judged_as_a_reader_would(step, judged):
    assert [(c.true, str(c.stated)) for c in claims(step)] == judged
