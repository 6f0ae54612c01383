"""Step checks (amc/steps.py) at their edges: how far a stated result may be from the exact value (the digits it
shows, rounded decimals on the left), which "and 1/4" is a mixed number and not a claim, how steps are split and
which reference-solution lines are no steps. Written for the mutants bench/mutation.sh found surviving (issue 16).
A false alarm (a true claim read as false) mislabels data; a miss lets a flawed path through."""

from __future__ import annotations

import pytest

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
