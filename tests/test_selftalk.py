"""Self-talk data: steps interleaved with their critique, then the correction and the rest of the solution;
exported as the publication's ``self_talk`` config (opt-in)."""

from __future__ import annotations

from pathlib import Path

import datasets
from typer.testing import CliRunner

from amc.cli import app
from amc.loops.selftalk import self_talk_text
from amc.records import Critique, ReasoningPath, StepVerdict

ROOT = Path(__file__).resolve().parents[1]


def _critique(steps: list[str], verdicts: list[bool], final: bool, correct: bool) -> Critique:
    path = ReasoningPath(
        id="p/sample/0",
        problem_id="p",
        question="q",
        reference_answer="7",
        steps=steps,
        strategy="sample",
        generator="m",
        correct=correct,
    )
    sv = [
        StepVerdict(index=i, step=s, correct=v, explanation=f"why {i}")
        for i, (s, v) in enumerate(zip(steps, verdicts, strict=False))
    ]
    first = next((i for i, v in enumerate(verdicts) if not v), -1)
    return Critique(
        id="p/sample/0/c0",
        path=path,
        annotator="a",
        step_verdicts=sv,
        first_error_step=first,
        final_verdict=final,
        final_explanation="fine",
        raw="",
        parse_status="ok",
    )


def test_interleaves_up_to_the_first_wrong_step_then_corrects():
    c = _critique(
        ["1 + 1 = 2", "2 * 2 = 5", "5 + 2 = 7", "The answer is 7."], [True, False, False, False], False, False
    )
    text = self_talk_text(c, "1 + 1 = 2\n2 * 2 = 4\n4 + 3 = 7\nThe answer is 7.")
    assert text.splitlines() == [
        "1 + 1 = 2",
        "Check: Correct. why 0",
        "2 * 2 = 5",
        "Check: Wrong. why 1",
        "Correction:",
        "2 * 2 = 4",
        "4 + 3 = 7",
        "The answer is 7.",
    ]


def test_correct_path_checks_every_step_and_flawed_without_refinement_is_skipped():
    ok = _critique(["3 + 4 = 7", "The answer is 7."], [True, True], True, True)
    assert self_talk_text(ok, None).splitlines()[-1] == "Check: Correct. fine"
    assert self_talk_text(ok, None).count("Check: Correct") == 3
    bad = _critique(["3 + 4 = 8", "The answer is 8."], [False, False], False, False)
    assert self_talk_text(bad, None) is None
    # a critique that calls a wrong path right teaches nothing true
    fooled = _critique(["3 + 4 = 8", "The answer is 8."], [True, True], True, False)
    assert self_talk_text(fooled, None) is None


def test_publish_exports_the_self_talk_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = str(ROOT / "pipelines/quickstart.yaml")
    runner = CliRunner()
    assert runner.invoke(app, ["build", "--config", cfg, "--set", "source.count=8"]).exit_code == 0
    result = runner.invoke(
        app,
        ["publish", "--config", cfg, "--set", "source.count=8", "--to", "pub", "--self-talk", "--test-fraction", "0"],
    )
    assert result.exit_code == 0, result.output
    rows = datasets.load_dataset(str(tmp_path / "pub"), "self_talk", split="train")
    assert len(rows) > 0
    text = rows[0]["completion"][0]["content"]
    assert "Check: " in text and rows[0]["prompt"][-1]["role"] == "user"
    assert any("Correction:" in r["completion"][0]["content"] for r in rows)
