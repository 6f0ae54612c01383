"""Shared by the critique and filter stage tests: a scripted engine and the flawed path they critique."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amc.backends.base import Completion, GenerationRequest, GenerationResponse
from amc.records import Critique, ReasoningPath, StepVerdict


class Scripted:
    """A real object speaking the engine protocol: completion j of each request is what ``answer(request, j)``
    gives, a text (finished with ``stop``), a (text, finish_reason) pair, or None for a failed request (HTTP 500).
    Records every request it was asked."""

    engine, model, revision = "scripted", "scripted", None

    def __init__(self, answer: Callable[[GenerationRequest, int], object]):
        self.answer = answer
        self.seen: list[GenerationRequest] = []

    def generate(self, requests):
        self.seen.extend(requests)
        out = []
        for r in requests:
            got = [self.answer(r, j) for j in range(r.params.n)]
            if any(g is None for g in got):
                out.append(GenerationResponse(request_id=r.id, error="HTTP 500"))
                continue
            comps = [Completion(text=g, finish_reason="stop") if isinstance(g, str) else Completion(text=g[0],
                     finish_reason=g[1]) for g in got]  # fmt: skip
            out.append(GenerationResponse(request_id=r.id, completions=comps))
        return out

    def close(self):
        pass


def inject_path(**kw: Any) -> ReasoningPath:
    """Problem p0's injected path (pass its ``steps``): wrong (answer 11, reference 10), a calculation error at
    step 1; any field can be overridden."""
    base: dict[str, Any] = dict(
        id="p0/inject/0",
        problem_id="p0",
        question="Pens?",
        reference_answer="10",
        predicted_answer="11",
        correct=False,
        strategy="inject",
        generator="g",
        error_step=1,
        error_type="calculation",
    )
    base.update(kw)
    return ReasoningPath(**base)


def critique_of(**kw: Any) -> Critique:
    """A parsed critique (pass its ``path``) that finds the error: step 1 Wrong, every other step of the path
    Correct, final Wrong; any field can be overridden."""
    path = kw["path"]
    base: dict[str, Any] = dict(
        id="p0/inject/0/c0",
        annotator="a",
        step_verdicts=[StepVerdict(index=i, step=s, correct=i != 1) for i, s in enumerate(path.steps)],
        first_error_step=1,
        final_verdict=False,
        raw="critique text",
        parse_status="ok",
    )
    base.update(kw)
    return Critique(**base)
