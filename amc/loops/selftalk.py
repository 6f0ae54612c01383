"""Self-talk data (AutoMathCritique section 6.3): one solution that critiques itself as it goes.

Each step of a critiqued path is followed by its critique; after the first Wrong step come the correction and the
rest of the solution, taken from a correct refinement of the path (its steps from the wrong step on). A path the
critique judges right all the way becomes its steps, each checked, and the final check. Examples are TRL
conversational prompt/completion rows: the prompt is the ``solve`` prompt (the question only), the completion the
self-talk, so an actor fine-tuned on them learns to check each step and correct itself. The publication exports
them as the ``self_talk`` config (``amc publish --self-talk``).

>>> from amc.records import Critique, ReasoningPath, StepVerdict
>>> path = ReasoningPath(id="p/sample/0", problem_id="p", question="q", reference_answer="7", strategy="sample",
...                      generator="m", steps=["2 + 2 = 5", "5 + 3 = 8", "The answer is 8."])
>>> v = [StepVerdict(index=0, step="2 + 2 = 5", correct=False, explanation="2 + 2 = 4.")]
>>> c = Critique(id="p/sample/0/c0", path=path, annotator="a", step_verdicts=v, first_error_step=0,
...              final_verdict=False, raw="", parse_status="ok")
>>> print(self_talk_text(c, "2 + 2 = 4\\n4 + 3 = 7\\nThe answer is 7."))
2 + 2 = 5
Check: Wrong. 2 + 2 = 4.
Correction:
2 + 2 = 4
4 + 3 = 7
The answer is 7.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from amc.config import PipelineConfig
from amc.prompts import load_template
from amc.records import Critique, FilterDecision
from amc.steps import split


def _check(correct: bool, explanation: str) -> str:
    why = " ".join(explanation.split())
    return f"Check: {'Correct' if correct else 'Wrong'}.{' ' + why if why else ''}"


def self_talk_text(critique: Critique, refinement: str | None) -> str | None:
    """The self-talk of one critiqued path: its steps, each with its check, up to the first Wrong step, then
    ``Correction:`` and the refinement's steps from that step on. None when the critique found a Wrong step but
    there is no correct refinement, or when the critique judged the path right but it is not."""
    path = critique.path
    verdicts = {v.index: v for v in critique.step_verdicts}
    first = critique.first_error_step
    if first is None or first < 0:
        if not path.correct or critique.final_verdict is not True:
            return None
        lines = []
        for i, step in enumerate(path.steps):
            v = verdicts.get(i)
            lines += [step, _check(True, v.explanation if v else "")]
        lines.append(_check(True, critique.final_explanation or "The final answer follows from the steps."))
        return "\n".join(lines)
    if not refinement or first >= len(path.steps):
        return None
    lines = []
    for i in range(first + 1):
        v = verdicts.get(i)
        lines += [path.steps[i], _check(i != first, v.explanation if v else "")]
    fixed = split(refinement)
    rest = fixed[first:] if len(fixed) > first else fixed
    return "\n".join([*lines, "Correction:", *rest])


def self_talk_rows(kept: Iterable[FilterDecision], cfg: PipelineConfig) -> list[tuple[str, dict[str, Any]]]:
    """(problem id, prompt/completion row) for each kept critique that makes a self-talk example: a flawed path
    with a correct, non-shortcut refinement, or a correct path the critique judged right."""
    solve = load_template(cfg.stages.sample.template, cfg.prompts_dir)
    rows = []
    for d in sorted(kept, key=lambda d: d.id):
        p = d.critique.path
        good = next((r for r in sorted(d.refinements, key=lambda r: r.index) if r.correct and not r.shortcut), None)
        text = self_talk_text(d.critique, good.text if good else None)
        if text is None:
            continue
        prompt = [{"role": m.role, "content": m.content} for m in solve.render(question=p.question)]
        row = {
            "id": f"{d.id}/self_talk",
            "problem_id": p.problem_id,
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": text}],
        }
        rows.append((p.problem_id, row))
    return rows
