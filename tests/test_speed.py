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
