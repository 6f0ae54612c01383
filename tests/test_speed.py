"""Speed work that must not change results: templates compiled once per process, grading pools sized to the cores."""

from __future__ import annotations

from pathlib import Path

from jinja2.sandbox import SandboxedEnvironment

from amc.prompts import load_template


def test_a_template_is_compiled_once_per_process_however_often_it_renders(monkeypatch):
    compiled: list[str] = []
    real = SandboxedEnvironment.compile

    def counting(self, source, *args, **kwargs):
        compiled.append(str(source)[:40])
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(SandboxedEnvironment, "compile", counting)
    tmpl = load_template("solve")
    first = tmpl.render(question="What is 2 + 3?")
    for i in range(20):
        tmpl.render(question=f"What is {i} + 3?")
    again = load_template("solve").render(question="What is 2 + 3?")  # a fresh Template object, same text
    assert again == first
    assert len(compiled) <= 1, compiled  # 0 when an earlier test compiled it already


def test_templates_with_the_same_label_but_other_text_render_their_own_text(tmp_path: Path):
    # The compile cache is keyed by the template's text and search path, so a user's template is never served a
    # compiled built-in one (or the other way round).
    (tmp_path / "solve.jinja").write_text("{# version: 1 #}\nMine: {{ question }}\n")
    builtin = load_template("solve").render(question="q?")
    mine = load_template("solve", tmp_path).render(question="q?")
    assert mine[0].content == "Mine: q?"
    assert builtin != mine
    (tmp_path / "solve.jinja").write_text("{# version: 1 #}\nEdited: {{ question }}\n")
    assert load_template("solve", tmp_path).render(question="q?")[0].content == "Edited: q?"


def test_math_verify_pairs_spread_over_one_worker_per_usable_core(monkeypatch):
    import amc.answers as answers

    seen: list[int] = []

    def fake_pool(pairs, timeout, workers):
        seen.append(workers)
        return [True] * len(pairs)

    monkeypatch.setattr(answers, "_run_in_pool", fake_pool)
    monkeypatch.setattr(answers.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert answers.verify_many([("\\frac{1}{2}", "x^2"), ("7", "7")]) == [True, True]
    assert seen == [6]  # only the pair that needs math-verify went to the pool, across six workers
    assert answers.verify_many([("\\frac{1}{2}", "x^2")], workers=1) == [True] and seen[-1] == 1


def test_the_compiled_matcher_aligns_exactly_as_difflib():
    import difflib
    import random

    import cydifflib

    rng = random.Random(0)
    alphabet = "0123456789 +-*/=.abcxyz$\\{}"
    for _ in range(300):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        ours, theirs = (
            cydifflib.SequenceMatcher(None, a, b, autojunk=False),
            difflib.SequenceMatcher(None, a, b, autojunk=False),
        )
        assert ours.get_matching_blocks() == theirs.get_matching_blocks() and ours.ratio() == theirs.ratio()


def test_verdicts_that_repeat_their_steps_verbatim_align_as_the_full_comparison_does(monkeypatch):
    """The shortcut for verbatim repetitions gives the anchors every pairwise comparison gives, including steps that
    differ by one character (ratio above 0.9), steps contained in others, and repeated steps (no shortcut)."""
    import random

    from amc import _align

    rng = random.Random(7)
    words = ["12 + 3 = 15", "15 * 2 = 30", "so", "the", "total", "is", "$30", "x", "=", "4", "apples", "\\frac{1}{2}"]
    taken = 0
    for _ in range(400):
        steps = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 7))]
        if rng.random() < 0.3:  # near duplicates: one character more, or a step inside another
            i = rng.randrange(len(steps))
            steps.append(steps[i] + rng.choice(["0", " and more"]))
        rng.shuffle(steps)
        k = rng.randint(1, len(steps))
        said = [steps[i] + (" 5" if rng.random() < 0.1 else "") for i in range(k)]  # a few not quite verbatim
        rows = [
            (rng.choice(["", f"Step {i + 1}: ", "**"]) + s, i + 1, rng.random() < 0.5, "why")
            for i, s in enumerate(said)
        ]
        fast_problems: list[str] = []
        fast = _align._align(rows, steps, fast_problems)
        taken += _align._verbatim(
            [_align._normalise(r[0], _align._SENTENCE_CHARS) for r in rows],
            [_align._normalise(s, _align._STEP_CHARS) for s in steps],
        )
        with monkeypatch.context() as m:
            m.setattr(_align, "_verbatim", lambda *a: False)
            full_problems: list[str] = []
            full = _align._align(rows, steps, full_problems)
        assert fast == full and fast_problems == full_problems, (rows, steps)
    assert 100 < taken < 400  # both paths were exercised
