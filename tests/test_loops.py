"""`amc loop` on the sim engine: each mode's metrics and transitions, checked against cases whose outcome is known
by construction (an actor that never errs, one that always errs, a critic that never errs) and against the
Parquet rows the loop wrote."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from amc.cli import app
from amc.config import config_from_dict
from amc.loops.common import SymbolicCritic, vote
from amc.loops.testtime import run_loop
from amc.records import Problem

PROBLEMS = 6


def _cfg(tmp_path: Path, actor_error: float, critic_error: float, **loop) -> object:
    return config_from_dict(
        {
            "name": "loops",
            "run_dir": str(tmp_path / "run"),
            "source": {"kind": "synthetic", "count": PROBLEMS, "min_steps": 2, "max_steps": 4},
            "models": {
                "actor": {"engine": "sim", "model": "a", "error_rate": actor_error},
                "annotator": {"engine": "sim", "model": "c", "error_rate": critic_error},
            },
            "loop": loop,
        }
    )


def _transitions(folder: Path) -> list[dict]:
    return pq.read_table(folder / "transitions.parquet").to_pylist()


def test_oracle_with_a_flawless_actor_refines_nothing(tmp_path):
    folder, m = run_loop(_cfg(tmp_path, 0.0, 0.0, mode="parallel", samples=2, oracle=True))
    assert m["per_round"][0]["accuracy"] == 1.0
    assert m["transitions"] == {"C->C": PROBLEMS * 2, "C->I": 0, "I->C": 0, "I->I": 0}
    assert m["final"]["refined"] == 0 and m["critic_verdicts"]["critiques"] == 0
    assert m["requests"]["made"] == PROBLEMS  # one solve request (n=2) per problem, nothing else
    rows = _transitions(folder)
    assert len(rows) == PROBLEMS * 2 and {r["round"] for r in rows} == {1}
    assert {"problem_id", "sample_index", "round", "correct_before", "correct_after", "difficulty"} <= set(rows[0])


def test_parallel_with_a_flawless_critic_counts_each_transition(tmp_path):
    folder, m = run_loop(_cfg(tmp_path, 1.0, 0.0, mode="parallel", samples=2))
    assert m["per_round"][0]["accuracy"] == 0.0  # an actor that always errs
    assert m["critic_verdicts"]["accuracy"] == 1.0 and m["final"]["refined"] == PROBLEMS * 2
    samples = pq.read_table(folder / "samples.parquet").to_pylist()
    fixed = sum(r["correct"] for r in samples if r["kind"] == "refinement")
    assert 0 < fixed < PROBLEMS * 2
    assert m["transitions"] == {"C->C": 0, "C->I": 0, "I->C": fixed, "I->I": PROBLEMS * 2 - fixed}
    assert m["final"]["accuracy"] == round(fixed / (PROBLEMS * 2), 4)
    # the transitions file says the same, row by row, against the refinements
    after = {(r["problem_id"], r["sample_index"]): r["correct"] for r in samples if r["kind"] == "refinement"}
    assert {(r["problem_id"], r["sample_index"]): r["correct_after"] for r in _transitions(folder)} == after
    # maj@2 of the final answers: a problem counts when its vote winner is right
    answers = pq.read_table(folder / "answers.parquet").to_pylist()
    assert m["answer_accuracy"] == round(sum(a["correct"] for a in answers) / PROBLEMS, 4) == m["final"]["maj@2"]
    # a rerun is answered from the request cache
    _, again = run_loop(_cfg(tmp_path, 1.0, 0.0, mode="parallel", samples=2))
    assert again["requests"]["made"] == 0 and again["transitions"] == m["transitions"]


def test_sequential_rounds_settle_accepted_samples(tmp_path):
    folder, m = run_loop(_cfg(tmp_path, 1.0, 0.0, mode="sequential", samples=1, rounds=3))
    rows = _transitions(folder)
    assert len(rows) == PROBLEMS * 3  # one row per problem, sample and round
    r1, r2 = m["per_round"][1]["transitions"], m["per_round"][2]["transitions"]
    # what round 1 fixed, round 2 keeps (a flawless critic accepts it, so it is not refined again)
    assert r2["C->C"] == r1["I->C"] and r2["C->I"] == 0
    assert m["per_round"][2]["refined"] == r1["I->I"]
    for r in range(1, 4):
        acc = sum(t["correct_after"] for t in rows if t["round"] == r) / PROBLEMS
        assert m["per_round"][r]["accuracy"] == round(acc, 4)
    assert m["per_round"][3]["accuracy"] >= m["per_round"][1]["accuracy"]


def test_best_of_n_with_a_flawless_critic_reaches_pass_at_k(tmp_path):
    folder, m = run_loop(_cfg(tmp_path, 0.5, 0.0, mode="best_of_n", samples=4))
    first = m["per_round"][0]
    assert m["best_of_n"] == first["pass@4"]  # the critic accepts exactly the right samples
    assert first["pass@4"] > first["maj@4"] or first["pass@4"] == 1.0
    assert pq.read_table(folder / "transitions.parquet").num_rows == 0  # best-of-N refines nothing
    assert pq.read_table(folder / "critiques.parquet").num_rows == PROBLEMS * 4


def test_best_of_n_breaks_ties_by_vote(tmp_path):
    # A critic that accepts everything: the choice falls to the vote.
    folder, m = run_loop(_cfg(tmp_path, 0.5, 0.0, mode="best_of_n", samples=4, critic="symbolic"))
    assert m["critic"] == "symbolic-checks"
    answers = pq.read_table(folder / "answers.parquet").to_pylist()
    samples = pq.read_table(folder / "samples.parquet").to_pylist()
    crit = {
        (r["problem_id"], r["sample_index"]): r["final_verdict"]
        for r in pq.read_table(folder / "critiques.parquet").to_pylist()
    }
    for a in answers:
        row = [s for s in samples if s["problem_id"] == a["problem_id"]]
        accepted = [s for s in row if crit[(s["problem_id"], s["sample_index"])]] or row
        _, sizes = vote([s["predicted_answer"] for s in row])
        best = max(sizes[s["sample_index"]] for s in accepted)
        assert sizes[a["sample_index"]] == best  # the most shared answer among the accepted ones
        assert a["sample_index"] in {s["sample_index"] for s in accepted}


def test_symbolic_critic_flags_the_first_false_equation():
    p = Problem(id="p", question="q", answer="13", source="s")
    (res,) = SymbolicCritic().critique([(p, ["2 + 3 = 5", "5 * 2 = 11", "11 + 2 = 13", "The answer is 13."], "a")])
    assert res.parsed.first_error_step == 1 and res.parsed.final_verdict is False
    assert "10" in res.parsed.step_verdicts[1].explanation


def test_cli_loop_runs_the_quickstart_as_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    result = CliRunner().invoke(
        app,
        [
            "loop",
            "--config",
            str(root / "pipelines/quickstart.yaml"),
            "--set",
            "source.count=4",
            "--set",
            "loop.mode=sequential",
            "--set",
            "loop.rounds=2",
            "--out",
            "out",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "round 2:" in result.output and (tmp_path / "out/metrics.json").is_file()


def test_parallel_refuses_rounds(tmp_path):
    from amc.errors import ConfigError

    with pytest.raises(ConfigError, match="sequential"):
        _cfg(tmp_path, 0.0, 0.0, mode="parallel", rounds=2)


def test_a_killed_runs_leftover_child_does_not_hold_the_lock(tmp_path):
    """A run killed while a child it forked (grading pool, data-loader worker) lives on: the rerun still starts."""
    import subprocess
    import sys

    from amc.loops.testtime import exclusive

    code = (
        "import os, time\nfrom pathlib import Path\nfrom amc.loops.testtime import exclusive\n"
        f"with exclusive(Path({str(tmp_path)!r})):\n"
        "    if os.fork() == 0:\n        time.sleep(20)\n        os._exit(0)\n"
        "    print(flush=True)\n    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    with exclusive(tmp_path):  # raised "another loop is running" while the orphan lived, with flock
        pass


def test_selftrain_critic_off_survives_yaml():
    """`--set selftrain.critic=off` (and `critic: off` in a file): YAML reads a bare off as false."""
    from amc.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "pipelines/selftrain_quick.yaml", ["selftrain.critic=off"])
    assert cfg.selftrain.critic == "off"
