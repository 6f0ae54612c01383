"""Symbolic error injection: each mode's promise, calculator notes kept consistent, carried values, and the
checker finding injected errors on real GSM8K reference solutions and real model-written steps."""

from __future__ import annotations

import json
import random

import pytest

from amc.answers import reference_answer, verify
from amc.perturb import MODES, inject, perturb_step
from amc.steps import claims, first_false_arithmetic, split

GSM_STEP = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day."


@pytest.mark.parametrize("seed", range(8))
def test_result_mode_makes_the_claim_false_and_keeps_the_note_in_step(seed: int) -> None:
    p = perturb_step(GSM_STEP, random.Random(seed), mode="result")
    assert p is not None and p.mode == "result"
    assert p.old_value == "9" and p.new_value != "9"
    visible, note = claims(p.step)
    assert not visible.true and not note.true  # the note says what the text says
    assert visible.result == note.result == p.new_value
    assert p.step == f"Janet sells 16 - 3 - 4 = <<16-3-4={p.new_value}>>{p.new_value} duck eggs a day."


@pytest.mark.parametrize("seed", range(8))
def test_operand_mode_changes_an_operand_and_keeps_the_result(seed: int) -> None:
    p = perturb_step(GSM_STEP, random.Random(seed), mode="operand")
    assert p is not None
    assert p.old_value == p.new_value == "9"
    visible, note = claims(p.step)
    assert not visible.true and visible.result == "9"
    assert visible.expr.replace(" ", "") == note.expr  # the same operand changed in the note


@pytest.mark.parametrize("seed", range(8))
def test_operator_mode_is_consistent_but_computes_something_else(seed: int) -> None:
    p = perturb_step(GSM_STEP, random.Random(seed), mode="operator")
    assert p is not None
    found = claims(p.step)
    assert found and all(c.true for c in found)  # internally consistent: the checker sees nothing
    assert p.new_value != p.old_value and found[0].value != 9


def test_perturb_step_handles_latex_money_and_percent_steps() -> None:
    rng = random.Random(3)
    for step in [
        "So \\( \\frac{1}{3} \\times 18 = 6 \\) flamingos.",
        "He pays $3.50 * 4 = $14.00 in all.",
        "The tip is 20% * $1,250 = $250.",
        "\\[ 2 \\times 5 = 10 \\]",
    ]:
        for mode in MODES:
            p = perturb_step(step, rng, mode)
            assert p is not None, (step, mode)
            truths = [c.true for c in claims(p.step)]
            assert all(truths) if mode == "operator" else not all(truths)


def test_perturb_step_without_a_claim_or_with_a_bad_mode() -> None:
    assert perturb_step("Let x be the number of apples.", random.Random(0)) is None
    assert perturb_step("2x + 3 = 7", random.Random(0)) is None
    with pytest.raises(ValueError, match="unknown perturbation mode"):
        perturb_step("2 + 2 = 4", random.Random(0), mode="swap")


def test_same_seed_same_perturbation() -> None:
    a = perturb_step(GSM_STEP, random.Random(11), "operator")
    b = perturb_step(GSM_STEP, random.Random(11), "operator")
    assert a == b


SOLUTION = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.",
    "#### 72",
]


def test_inject_without_carry_leaves_later_steps_alone() -> None:
    path = inject(SOLUTION, 0, random.Random(0), carry=False)
    assert path is not None and path.k == 0
    assert path.steps[1:] == SOLUTION[1:] and path.final_answer == "72"
    assert first_false_arithmetic(path.steps) == 0


@pytest.mark.parametrize("seed", range(5))
def test_inject_with_carry_recomputes_every_later_claim(seed: int) -> None:
    path = inject(SOLUTION, 0, random.Random(seed), carry=True)
    assert path is not None
    new = int(path.perturbation.new_value)
    assert (
        path.steps[1] == f"Natalia sold 48+{new} = <<48+{new}={48 + new}>>{48 + new} clips altogether in April and May."
    )
    assert path.steps[2] == f"#### {48 + new}" and path.final_answer == str(48 + new)
    assert first_false_arithmetic(path.steps) == 0


def test_inject_carries_within_the_perturbed_step_and_through_plain_text() -> None:
    steps = [
        "He buys 3 * 4 = 12 apples and keeps all 12 of them.",
        "With a pear he has 12 + 1 = 13 fruits.",
        "Then 13 * 2 = 26.",
        "The answer is 26.",
    ]
    path = inject(steps, 0, random.Random(1), carry=True)
    new = int(path.perturbation.new_value)
    assert path.steps == [
        f"He buys 3 * 4 = {new} apples and keeps all {new} of them.",
        f"With a pear he has {new} + 1 = {new + 1} fruits.",
        f"Then {new + 1} * 2 = {2 * (new + 1)}.",
        f"The answer is {2 * (new + 1)}.",
    ]
    assert path.final_answer == str(2 * (new + 1)) and first_false_arithmetic(path.steps) == 0


def test_inject_operator_mode_carries_a_consistent_wrong_value() -> None:
    path = inject(SOLUTION, 0, random.Random(2), carry=True, mode="operator")
    assert path is not None and first_false_arithmetic(path.steps) is None
    assert path.final_answer != "72" and all(c.true for s in path.steps for c in claims(s))


def test_inject_at_a_step_without_claims() -> None:
    assert inject(["Let us think.", "2 + 2 = 4"], 0, random.Random(0), carry=True) is None
    with pytest.raises(IndexError):
        inject(["2 + 2 = 4"], 3, random.Random(0), carry=True)


# ------------------------------------------------------------------------------------------- real data


def _gsm8k_sample(shared_data, n: int = 200) -> list[tuple[list[str], int, str]]:
    """(steps, k, reference answer) for ``n`` GSM8K train references without false claims, k a step with one."""
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()]
    rng, out = random.Random(0), []
    for row in rng.sample(rows, 3 * n):
        steps = split(row["answer"])
        ks = [i for i, s in enumerate(steps) if any(c.true and c.simple for c in claims(s))]
        if ks and first_false_arithmetic(steps) is None:
            out.append((steps, rng.choice(ks), reference_answer(row["answer"], "gsm8k")))
        if len(out) == n:
            return out
    raise AssertionError("not enough usable GSM8K solutions")


def test_injected_results_on_gsm8k_are_found_at_the_injected_step(shared_data) -> None:
    sample = _gsm8k_sample(shared_data)
    changed = 0
    for steps, k, ref in sample:
        local = inject(steps, k, random.Random(k), carry=False)
        carried = inject(steps, k, random.Random(k), carry=True)
        assert local is not None and carried is not None
        assert first_false_arithmetic(local.steps) == k
        assert first_false_arithmetic(carried.steps) == k
        assert local.steps[k + 1 :] == steps[k + 1 :]
        changed += not verify(ref, carried.final_answer)
    # Carrying changes the final answer unless the perturbed value never reaches it (a side computation) or a
    # later step restates it in another form; on GSM8K train that is about 3% of solutions.
    assert changed >= 0.95 * len(sample)


def test_injected_operands_and_operators_on_gsm8k(shared_data) -> None:
    sample = _gsm8k_sample(shared_data, 100)
    operand = [inject(s, k, random.Random(k), carry=True, mode="operand") for s, k, _ in sample]
    assert sum(
        p is not None and first_false_arithmetic(p.steps) == k for p, (_, k, _) in zip(operand, sample, strict=True)
    ) >= 0.9 * len(sample)
    operator = [(inject(s, k, random.Random(k), carry=True, mode="operator"), ref) for s, k, ref in sample]
    usable = [(p, ref) for p, ref in operator if p is not None]
    assert len(usable) >= 0.9 * len(sample)
    assert all(first_false_arithmetic(p.steps) is None for p, _ in usable)  # wrong, yet self-consistent
    assert sum(not verify(ref, p.final_answer) for p, ref in usable) >= 0.9 * len(usable)


def test_injection_on_model_written_steps(shared_data) -> None:
    # ProcessBench solutions labelled correct: plain model prose with LaTeX, no calculator notes.
    rows = json.loads((shared_data / "processbench" / "gsm8k.json").read_text())
    done = 0
    for row in rows:
        if row["label"] != -1 or first_false_arithmetic(row["steps"]) is not None:
            continue
        ks = [i for i, s in enumerate(row["steps"]) if any(c.true and c.simple for c in claims(s))]
        if not ks:
            continue
        path = inject(row["steps"], ks[0], random.Random(done), carry=True)
        assert path is not None and first_false_arithmetic(path.steps) == ks[0]
        done += 1
    assert done >= 50
