"""The last-resort grading guard counts the worker's CPU time: a loaded machine (a descheduled worker, a slow pool
start) does not turn an ordinary pair into an undecided one; real runaway work still gets stopped."""

from __future__ import annotations

import time

import pytest

from amc import answers


def _slow_wall(gold: str, pred: str, timeout: float) -> bool:
    """A pair that takes three times its guard in wall-clock time while using no CPU, as on a crowded machine."""
    time.sleep(3 * timeout)
    return pred.startswith(gold)


def test_wall_time_without_cpu_work_does_not_fire_the_guard() -> None:
    with answers._guard(0.2):
        time.sleep(0.5)  # descheduled, not working: the CPU guard does not advance


def test_cpu_work_past_the_guard_is_stopped() -> None:
    with pytest.raises(answers._GuardFired), answers._guard(0.2):
        while True:
            pass


def test_the_parent_waits_past_the_guard_for_a_worker_slowed_by_load(monkeypatch: pytest.MonkeyPatch) -> None:
    answers._kill_pool(answers._get_pool(2))  # the next pool forks with the patched function below
    monkeypatch.setattr(answers, "_mv_verify", _slow_wall)
    try:
        got = answers.verify_many([("a", "a1"), ("b", "c"), ("d", "d2")], timeout=0.5, workers=2)
        assert got == [True, False, True]
    finally:
        answers._kill_pool(answers._get_pool(2))
