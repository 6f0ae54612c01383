"""Final-answer extraction and equivalence: hard formats, real MATH-500 and GSM8K answers, and inputs that must
not hang (math-verify runs in worker processes that are killed when stuck)."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import amc.answers as answers
from amc.answers import extract, grade, last_boxed, reference_answer, verify, verify_many

# ----------------------------------------------------------------------------------------------- extract


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("nested \\boxed{\\{1, \\{2\\}\\}} braces \\boxed{\\frac{a}{\\sqrt{b}}}", "\\frac{a}{\\sqrt{b}}"),
        ("old style \\fbox{42}", "42"),
        ("brace-less $\\boxed 5$", "5"),
        ("She earns 9 * 2 = 18 dollars. The answer is $18.", "18"),
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("The answer is: 3.5", "3.5"),
        ("the answer is 7.\nLater text\nThe answer is 9.", "9"),
        ("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"),
        ("total\n#### 1,000", "1,000"),
        ("\\boxed{3} beats The answer is 4 and #### 5", "3"),
    ],
)
def test_extract_finds_the_final_answer(text: str, expected: str) -> None:
    assert extract(text) == expected


@pytest.mark.parametrize("text", ["", "no answer here", "an unclosed \\boxed{3", "The answer is ."])
def test_extract_returns_none_without_an_answer(text: str) -> None:
    assert extract(text) is None


def test_reference_answer_reads_each_format() -> None:
    assert reference_answer("He has 2 * 500 = <<2*500=1000>>1,000 pens\n#### 1,000", "gsm8k") == "1000"
    assert reference_answer("so it is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.", "boxed") == (
        "\\left( 3, \\frac{\\pi}{2} \\right)"
    )
    assert reference_answer("  42 \n", "plain") == "42"
    assert reference_answer("no marker", "gsm8k") is None
    with pytest.raises(ValueError, match="unknown answer format"):
        reference_answer("1", "latex")


def test_a_truncated_last_box_is_no_reference_answer_but_a_model_answer_falls_back() -> None:
    # A reference answer is never guessed from an intermediate box; a model output's last readable box counts.
    truncated = "first \\boxed{1}, then \\boxed{2"
    assert last_boxed(truncated) is None and reference_answer(truncated, "boxed") is None
    assert extract(truncated) == "1"
    assert last_boxed("first \\boxed{1}, then \\boxed{}") is None and extract("\\boxed{1} \\boxed{}") == "1"
    assert last_boxed("old style \\fbox{42}") == "42"


# ------------------------------------------------------------------------------------------------ verify


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{1}{2}", "0.5"),
        ("3/4", "\\frac{3}{4}"),
        ("50\\%", "50"),
        ("50\\%", "0.5"),
        ("18", "18 dollars"),
        ("18", "$18.00"),
        ("18", "\\$18"),
        ("5", "5\\text{ cm}"),
        ("1000", "1,000"),
        ("32,\\!348", "32348"),
        ("3", "x=3"),
        ("x = 3", "3"),
        ("5", "\\boxed{5}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        ("2", "\\sqrt{4}"),
        ("\\frac{1}{3}", "0.333333"),
        ("90^\\circ", "90"),
    ],
)
def test_verify_accepts_equivalent_answers(gold: str, pred: str) -> None:
    assert verify(gold, pred)


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("5", "6"),
        ("18", "180 dollars"),
        ("\\frac{3}{4}", "0.7"),
        ("3", "3x"),
        ("5", "5 pi"),
        ("50\\%", "5"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi)"),
        ("-2", "2"),
        ("7", None),
        ("7", ""),
    ],
)
def test_verify_rejects_different_answers(gold: str, pred: str | None) -> None:
    assert not verify(gold, pred)


def test_plain_numbers_never_reach_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    # GSM8K pairs are decided in-process; the pool would be a waste (and a fork) for them.
    monkeypatch.setattr(answers, "_run_in_pool", lambda *a, **k: pytest.fail("math-verify was called"))
    assert verify_many([("1,000", "$1000"), ("18", "18 dollars"), ("5", "6"), ("25", "25%")]) == [
        True,
        True,
        False,
        True,
    ]


@pytest.mark.parametrize("pred", ["9^{9^{9^{9}}}", "(10^{100000})!", "\\sum_{k=1}^{10^9} k", "10^{10^{10}}"])
def test_pathological_answers_come_back_false(pred: str) -> None:
    assert verify("5", pred, timeout=1) is False


def _hang(gold: str, pred: str, timeout: float) -> bool:
    """Stands in for a comparison stuck in C code, where math-verify's own alarm cannot fire."""
    if pred == "hang":
        threading.Event().wait()
    return gold == pred


def test_a_stuck_worker_is_killed_and_the_pool_recreated(monkeypatch: pytest.MonkeyPatch) -> None:
    answers._kill_pool(answers._get_pool(2))  # the next pool forks with the patched function below
    monkeypatch.setattr(answers, "_mv_verify", _hang)
    try:
        got = verify_many([("a", "hang"), ("b", "b"), ("c", "d"), ("e", "hang"), ("f", "f")], timeout=0.5)
        assert got == [None, True, False, None, True]  # a stuck pair is undecided, never a guessed False
        first = answers._get_pool(2)
        assert verify("x", "hang", timeout=0.5) is None
        assert answers._get_pool(2) is not first  # the stuck pool was terminated and replaced
    finally:
        answers._kill_pool(answers._get_pool(2))


def test_verify_works_from_threads() -> None:
    # math-verify refuses signal timeouts outside the main thread; the worker processes make that moot.
    pairs = [("\\frac{1}{2}", "0.5"), ("\\sqrt{2}", "2^{1/2}"), ("\\pi", "3")]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda p: verify(*p), pairs))
    assert got == [True, True, False]


def test_verify_many_keeps_order_across_fast_and_slow_paths() -> None:
    pairs = [("\\frac{1}{2}", "0.5"), ("7", "7"), ("\\sqrt{2}", "1.5"), ("2", "3"), ("x^2", "x \\cdot x")]
    assert verify_many(pairs, workers=2) == [True, True, False, False, True]


def test_grade_extracts_then_verifies() -> None:
    assert grade("72", "48 + 24 = 72\nThe answer is 72.") == ("72", True)
    assert grade("\\frac{1}{2}", "so $\\boxed{0.5}$") == ("0.5", True)
    assert grade("72", "I could not finish.") == (None, False)


# ------------------------------------------------------------------------------------------- real data


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_math500_reference_solutions_grade_against_their_answers(shared_data) -> None:
    rows = _jsonl(shared_data / "math500" / "test.jsonl")
    extracted = [extract(r["solution"]) for r in rows]
    agree = verify_many([(r["answer"], e) for r, e in zip(rows, extracted, strict=True)])
    assert len(rows) == 500
    assert sum(agree) >= 0.99 * len(rows)


def test_math500_answers_survive_reformatting_and_do_not_match_each_other(shared_data) -> None:
    # Not string identity: every pair below goes through the fast path or math-verify on MATH's LaTeX.
    rows = _jsonl(shared_data / "math500" / "test.jsonl")
    same = verify_many([(r["answer"], f"${r['answer']}$") for r in rows])
    assert sum(same) >= 0.99 * len(rows)
    rng = random.Random(0)
    cross = [
        (a["answer"], b["answer"]) for a, b in (rng.sample(rows, 2) for _ in range(150)) if a["answer"] != b["answer"]
    ]
    assert sum(verify_many(cross)) <= 0.01 * len(cross)


def test_gsm8k_test_references_agree_with_their_extracted_answer(shared_data) -> None:
    rows = _jsonl(shared_data / "gsm8k" / "test.jsonl")
    pairs = [(reference_answer(r["answer"], "gsm8k"), extract(r["answer"])) for r in rows]
    assert len(pairs) == 1319 and all(gold is not None for gold, _ in pairs)
    assert verify_many(pairs) == [True] * len(pairs)


def test_verify_timeout_bounds_a_whole_batch_of_pathological_answers() -> None:
    # Every pathological pair is answered (False) and the rest of the batch is unaffected.
    got = verify_many([("5", "9^{9^{9^{9}}}"), ("1", "1.0"), ("5", "(10^{10^{10}})!"), ("2", "\\sqrt{4}")], timeout=1)
    assert got == [False, True, False, True]
