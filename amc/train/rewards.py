"""Rewards of a sampled critique (CTRL, arXiv 2502.03492), one function per component, each logged on its own.

- ``correction``: the fixed actor refines the path given the critique (through any amc engine, via the request
  cache); the reward is the share of refinements that reach the reference answer without shortcutting (a
  refinement with fewer than ``min_refinement_steps`` steps is no success, as in the filter stage);
- ``verdict``: the critique's final verdict agrees with the path's true correctness;
- ``first_error``: the first Wrong step equals the known error step (-1, no Wrong step, for a correct path);
  ``None`` when the path's error step is not known (TRL then leaves it out of the mean);
- ``format``: the critique parses in the AutoMathCritique text format (1), partly (0.5), not at all (0).

The pure components work on :class:`PathCase` and a critique text, so they are tested on hand-made cases; TRL's
``GRPOTrainer`` calls them through :class:`RewardComponent` with the dataset's columns.

>>> case = PathCase("p/sample/0", "1+1?", "2", ["1 + 1 = 3", "The answer is 3."], False, 0)
>>> text = ("Step sentence: 1 + 1 = 3\\nCorrectness of the step: Wrong\\nExplanation: 1 + 1 = 2\\n"
...         "Step sentence: The answer is 3.\\nCorrectness of the step: Wrong\\nExplanation: carried\\n"
...         "Correctness of the final answer: Wrong\\nExplanation: it is 2")
>>> verdict_reward(case, text), first_error_reward(case, text), format_reward(case, text)
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amc.critique_format import ParsedCritique, parse

COMPONENTS = ("correction", "verdict", "first_error", "format")


@dataclass(frozen=True)
class PathCase:
    """What the rewards know of the path a critique judges (never shown to the critic)."""

    path_id: str
    question: str
    reference_answer: str
    steps: list[str]
    correct: bool
    error_step: int | None  # 0-based known first error; -1 no error; None unknown


def parsed(case: PathCase, critique: str) -> ParsedCritique:
    return parse(critique, "text", case.steps)


def verdict_reward(case: PathCase, critique: str) -> float:
    """1 when the final verdict agrees with the path's correctness, else 0 (no verdict: 0)."""
    verdict = parsed(case, critique).final_verdict
    return float(verdict is not None and verdict == case.correct)


def known_first_error(case: PathCase) -> int | None:
    """The first error step a critique should find: -1 for a correct path, the known step, or None."""
    if case.correct and case.error_step in (None, -1):
        return -1
    return case.error_step if case.error_step is not None and case.error_step >= 0 else None


def first_error_reward(case: PathCase, critique: str) -> float | None:
    """1 when the first Wrong step is the known error step (-1 when there is none); None when it is not known."""
    target = known_first_error(case)
    if target is None:
        return None
    return float(parsed(case, critique).first_error_step == target)


def format_reward(case: PathCase, critique: str) -> float:
    """1 for a critique that parses completely, 0.5 partly (some verdicts or no final verdict), 0 not at all."""
    return {"ok": 1.0, "partial": 0.5}.get(parsed(case, critique).status, 0.0)


class CorrectionJudge:
    """The fixed actor, refining a path given a critique; ``rewards`` is the share of successful refinements.

    ``generate`` is a cache-wrapped engine (:class:`amc.engine.cache.CachedBackend`): the same critique of the same
    path is the same request (its seed derives from the run seed and the path id), so it is answered once.
    """

    def __init__(
        self,
        generate: Any,
        *,
        seed: int = 0,
        refinements: int = 1,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 1024,
        min_refinement_steps: int = 2,
        template: str = "refine",
        prompts_dir: str | None = None,
    ):
        from amc.prompts import load_template

        self.generate = generate
        self.seed, self.n = seed, refinements
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.min_steps = min_refinement_steps
        self.template = load_template(template, prompts_dir)

    def requests(self, cases: Sequence[PathCase], critiques: Sequence[str]) -> list[Any]:
        from amc.backends.base import GenerationRequest, SamplingParams
        from amc.stages.base import derive_seed

        out = []
        for i, (case, critique) in enumerate(zip(cases, critiques, strict=True)):
            crit = parsed(case, critique)
            out.append(
                GenerationRequest(
                    id=f"{case.path_id}/grpo-refine/{i}",
                    role="refiner",
                    messages=self.template.render(question=case.question, steps=case.steps, critique=critique),
                    params=SamplingParams(
                        n=self.n,
                        temperature=self.temperature,
                        top_p=self.top_p,
                        max_tokens=self.max_tokens,
                        seed=derive_seed(self.seed, case.path_id, "grpo-refine"),
                    ),
                    template=self.template.ref,
                    # read by the offline sim actor only: it revises when the critique says the answer is wrong
                    context={
                        "task": "refine",
                        "question": case.question,
                        "steps": case.steps,
                        "first_error_step": crit.first_error_step,
                        "answer": case.reference_answer,
                        "path_correct": crit.final_verdict is not False,
                    },
                )
            )
        return out

    def rewards(self, cases: Sequence[PathCase], critiques: Sequence[str]) -> list[float]:
        """Share of each critique's refinements that reach the reference answer (0 for a failed request)."""
        from amc.answers import extract, verify_many
        from amc.steps import split

        responses = self.generate(self.requests(cases, critiques))
        pairs: list[tuple[str, str | None]] = []
        owners: list[int] = []
        for i, (case, resp) in enumerate(zip(cases, responses, strict=True)):
            for comp in resp.completions if resp.error is None else []:
                usable = comp.finish_reason == "stop" and len(split(comp.text)) >= self.min_steps
                pairs.append((case.reference_answer, extract(comp.text) if usable else None))
                owners.append(i)
        verdicts = verify_many(pairs) if pairs else []
        wins = [0] * len(cases)
        for i, ok in zip(owners, verdicts, strict=True):
            wins[i] += int(ok is True)  # an undecided grading (None: the guard stopped) earns nothing
        return [w / self.n for w in wins]


PURE: dict[str, Callable[[PathCase, str], float | None]] = {
    "verdict": verdict_reward,
    "first_error": first_error_reward,
    "format": format_reward,
}


def cases_from_columns(columns: dict[str, list[Any]]) -> list[PathCase]:
    """The PathCase of each row TRL hands a reward function (dataset columns repeated per generation)."""
    return [
        PathCase(pid, q, ref, list(steps), bool(ok), None if err is None else int(err))
        for pid, q, ref, steps, ok, err in zip(
            columns["path_id"],
            columns["question"],
            columns["reference_answer"],
            columns["steps"],
            columns["path_correct"],
            columns["error_step"],
            strict=True,
        )
    ]


def completion_text(completion: Any) -> str:
    """A TRL completion as text: conversational (a list of messages) or plain."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


class RewardComponent:
    """One component as a TRL reward function (its ``__name__`` names it in TRL's logs: ``rewards/<name>/mean``);
    every value it returns is also appended to ``log_path`` (JSON lines: step, component, path, reward)."""

    def __init__(self, name: str, judge: CorrectionJudge | None = None, log_path: Path | None = None):
        if name not in COMPONENTS:
            raise ValueError(f"unknown reward component {name!r}; expected one of {', '.join(COMPONENTS)}")
        if name == "correction" and judge is None:
            raise ValueError("the correction reward needs a CorrectionJudge (the fixed actor)")
        self.__name__ = name
        self.judge = judge
        self.log_path = log_path

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        cases = cases_from_columns(columns)
        texts = [completion_text(c) for c in completions]
        if self.__name__ == "correction":
            assert self.judge is not None
            values: list[float | None] = list(self.judge.rewards(cases, texts))
        else:
            values = [PURE[self.__name__](case, text) for case, text in zip(cases, texts, strict=True)]
        if self.log_path is not None:
            state = columns.get("trainer_state")
            step = int(getattr(state, "global_step", 0)) + 1  # the optimizer step these rewards feed
            with self.log_path.open("a", encoding="utf-8") as fh:
                for case, value in zip(cases, values, strict=True):
                    row = {"step": step, "component": self.__name__, "path_id": case.path_id, "reward": value}
                    fh.write(json.dumps(row) + "\n")
        return values


def mean_by_step(log_path: Path) -> dict[str, list[tuple[int, float]]]:
    """Per component, the mean reward of each step in a reward log (None values left out)."""
    sums: dict[str, dict[int, list[float]]] = {}
    if not log_path.is_file():
        return {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["reward"] is not None:
            sums.setdefault(row["component"], {}).setdefault(row["step"], []).append(float(row["reward"]))
    return {c: [(s, sum(v) / len(v)) for s, v in sorted(by_step.items())] for c, by_step in sums.items()}
