"""What the test-time loop and self-training share: engines through the request cache, the actor's solve and
refine requests, the critic (a model through its engine, or the symbolic checks), grading and voting.

Every engine request goes through :class:`amc.engine.cache.CachedBackend` (the same SQLite request cache as
``amc build``), so a rerun of a finished loop makes no engine call and a killed one resumes where its answers stop.
Requests are addressed by (problem id, purpose, sample index, round); seeds derive from the run seed and that
address, never from the prompt text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amc.answers import extract, verify_many
from amc.backends import create
from amc.backends.base import Completion, GenerationRequest, SamplingParams
from amc.config import ModelConfig
from amc.critique_format import ParsedCritique, parse, render_text
from amc.engine.cache import CachedBackend, RequestCache
from amc.loopconfig import LoopSampling
from amc.prompts import load_template
from amc.records import Problem, StepVerdict
from amc.stages.base import derive_seed
from amc.steps import claims, split


class Engines:
    """Cache-wrapped engines by model block, over one request cache; each started on its first cache miss."""

    def __init__(self, cache_path: Path):
        self.cache = RequestCache(cache_path)
        self._live: dict[str, CachedBackend] = {}
        self._released = {"made": 0, "cached": 0, "failed": 0}  # counts of engines closed before the end

    def get(self, model_cfg: ModelConfig, extra_identity: dict[str, Any] | None = None) -> CachedBackend:
        """The engine of a model block. ``extra_identity`` joins the cache key (e.g. a trained model's weights
        digest, since a folder path alone does not say which weights it holds)."""
        identity = {**model_cfg.identity(), **(extra_identity or {})}
        key = json.dumps([model_cfg.model_dump(), identity], sort_keys=True, default=str)
        if key not in self._live:
            self._live[key] = CachedBackend(
                None,
                self.cache,
                factory=lambda: create(model_cfg),
                engine=model_cfg.engine,
                model=model_cfg.model,
                revision=model_cfg.revision,
                identity=identity,
            )
        return self._live[key]

    def release(self, backend: CachedBackend) -> None:
        """Close one engine (free its memory) and forget it."""
        for key, live in list(self._live.items()):
            if live is backend:
                self._released = {k: v + getattr(live, k) for k, v in self._released.items()}
                self._live.pop(key).close()

    def counters(self) -> dict[str, int]:
        """Requests made, answered from the cache, and failed, over every engine so far (released ones too)."""
        return {k: v + sum(getattr(b, k) for b in self._live.values()) for k, v in self._released.items()}

    def close(self) -> None:
        for b in self._live.values():
            b.close()
        self._live.clear()
        self.cache.close()


def _params(s: LoopSampling, n: int, seed: int) -> SamplingParams:
    return SamplingParams(n=n, seed=seed, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens)


def _texts(resp: Any, n: int) -> list[Completion | str]:
    """The completions of a response, padded with error strings to ``n`` (an error is data, not a crash)."""
    if resp.error is not None or not resp.completions:
        return [resp.error or "the engine returned no completion"] * n
    out: list[Completion | str] = list(resp.completions[:n])
    return out + [f"the engine returned {len(resp.completions)} of {n} samples"] * (n - len(out))


class Actor:
    """The actor's two requests: solve a problem from scratch (n samples in one request) and refine a solution
    given a critique (the ``refine`` template, as the filter stage uses it)."""

    def __init__(self, backend: CachedBackend, seed: int, prompts_dir: str | None = None):
        self.backend, self.seed = backend, seed
        self.solve_t = load_template("solve", prompts_dir)
        self.refine_t = load_template("refine", prompts_dir)

    def solve(
        self, problems: Sequence[Problem], n: dict[str, int], sampling: LoopSampling, purpose: str
    ) -> dict[str, list[Completion | str]]:
        """``n[problem id]`` samples of each problem; an entry is a completion or the reason there is none."""
        todo = [p for p in problems if n.get(p.id, 0) > 0]
        requests = [
            GenerationRequest(
                id=f"{p.id}/{purpose}",
                role="actor",
                messages=self.solve_t.render(question=p.question),
                params=_params(sampling, n[p.id], derive_seed(self.seed, p.id, purpose)),
                template=self.solve_t.ref,
                context={"task": "solve", "question": p.question, "answer": p.answer, "solution": p.solution},
            )
            for p in todo
        ]
        responses = self.backend.generate(requests)
        return {p.id: _texts(r, n[p.id]) for p, r in zip(todo, responses, strict=True)}

    def refine(
        self, items: Sequence[tuple[Problem, list[str], ParsedCritique, str, str]], sampling: LoopSampling, n: int = 1
    ) -> list[list[Completion | str]]:
        """Refinements of each (problem, steps, parsed critique, critique text, address)."""
        requests = [
            GenerationRequest(
                id=f"{addr}/refine",
                role="refiner",
                messages=self.refine_t.render(question=p.question, steps=steps, critique=raw),
                params=_params(sampling, n, derive_seed(self.seed, addr, "refine")),
                template=self.refine_t.ref,
                context={
                    "task": "refine",
                    "question": p.question,
                    "steps": steps,
                    "first_error_step": crit.first_error_step,
                    "answer": p.answer,
                    "path_correct": crit.final_verdict is True,
                },
            )
            for p, steps, crit, raw, addr in items
        ]
        return [_texts(r, n) for r in self.backend.generate(requests)]


@dataclass
class CritiqueResult:
    raw: str
    parsed: ParsedCritique


class ModelCritic:
    """A critic model through its engine, prompted with ``critic.jinja`` (question and numbered steps only: no
    reference answer, no error location). An unparsable critique is asked once more with another seed.

    The offline ``sim`` engine (not a model) reads the reference answer from the request's context to play a
    critic with a set error rate; real engines see only the prompt."""

    def __init__(
        self,
        backend: CachedBackend,
        seed: int,
        sampling: LoopSampling,
        prompts_dir: str | None = None,
        retries: int = 1,
    ):
        self.backend, self.seed, self.sampling, self.retries = backend, seed, sampling, retries
        self.template = load_template("critic", prompts_dir)
        self.name = backend.model

    def critique(self, items: Sequence[tuple[Problem, list[str], str]]) -> list[CritiqueResult]:
        """A critique of each (problem, steps, address)."""
        out: list[CritiqueResult | None] = [None] * len(items)
        pending = list(range(len(items)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            requests = [self._request(*items[i], attempt) for i in pending]
            still = []
            for i, resp in zip(pending, self.backend.generate(requests), strict=True):
                text = resp.completions[0].text if resp.ok else ""
                parsed = (
                    parse(text, "text", steps=items[i][1])
                    if text
                    else ParsedCritique(problems=[resp.error or "no completion"])
                )
                out[i] = CritiqueResult(text, parsed)
                if parsed.status == "failed" or (resp.ok and resp.completions[0].finish_reason != "stop"):
                    still.append(i)
            pending = still
        return [r if r is not None else CritiqueResult("", ParsedCritique()) for r in out]

    def _request(self, p: Problem, steps: list[str], addr: str, attempt: int) -> GenerationRequest:
        return GenerationRequest(
            id=f"{addr}/critique/{attempt}",
            role="annotator",
            messages=self.template.render(question=p.question, steps=steps),
            params=_params(self.sampling, 1, derive_seed(self.seed, addr, "critique", attempt)),
            template=self.template.ref,
            context={
                "task": "critique",
                "question": p.question,
                "steps": steps,
                "reference_answer": p.answer,
                "error_step": None,
                "stop_at_first_error": False,
                "format": "text",
            },
        )


class SymbolicCritic:
    """No model: the symbolic arithmetic checks of :mod:`amc.steps`. The first step stating a false equation is
    Wrong (with its true value in the explanation), the steps before it Correct, and the final answer is judged
    Wrong exactly when some step is. It sees no reference answer, so a wrong answer reached by true arithmetic
    (a misread question, a wrong operation) passes as Correct: a weak critic of known behaviour."""

    name = "symbolic-checks"

    def critique(self, items: Sequence[tuple[Problem, list[str], str]]) -> list[CritiqueResult]:
        """A critique of each (problem, steps, address), in the AutoMathCritique text format."""
        out = []
        for _, steps, _ in items:
            verdicts: list[StepVerdict] = []
            wrong = False
            for i, step in enumerate(steps):
                bad = next((c for c in claims(step) if not c.true), None)
                if bad is None:
                    verdicts.append(StepVerdict(index=i, step=step, correct=True, explanation="The arithmetic holds."))
                    continue
                verdicts.append(
                    StepVerdict(
                        index=i,
                        step=step,
                        correct=False,
                        explanation=f"{bad.expr} = {_show(bad.value)}, not {bad.result}.",
                    )
                )
                wrong = True
                break
            why = "A step before it is wrong." if wrong else "Every equation holds."
            raw = render_text(verdicts, not wrong, why)
            out.append(CritiqueResult(raw, parse(raw, "text", steps=steps)))
        return out


def _show(value: Any) -> str:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(f)) if f == int(f) else f"{f:.4g}"


def grade(problems: Sequence[Problem], texts: Sequence[Completion | str]) -> list[tuple[str | None, bool]]:
    """(predicted answer, correct) of each text against its problem's reference; an error or a truncated
    completion is never correct."""
    preds = [extract(t.text) if isinstance(t, Completion) else None for t in texts]
    ok = verify_many([(p.answer, pred) for p, pred in zip(problems, preds, strict=True)])
    return [
        # an undecided grading (the last-resort guard stopped math-verify: None) is not counted as correct
        (pred, good is True and isinstance(t, Completion) and t.finish_reason == "stop")
        for pred, good, t in zip(preds, ok, texts, strict=True)
    ]


def steps_of(text: str) -> list[str]:
    """A solution's steps (one per non-empty line); an empty text is one empty step, so prompts still render."""
    return split(text) or [text.strip()]


def vote(answers: Sequence[str | None]) -> tuple[int | None, list[int]]:
    """Majority vote over answers that may be written differently ("0.5", "1/2"): answers are grouped by
    equivalence; returns the index of the first member of the largest group (earliest on a tie) and, for each
    answer, the size of its group (0 for no answer).

    >>> vote(["4", None, "4.0", "5"])
    (0, [2, 0, 2, 1])
    """
    groups: list[list[int]] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        reps = [answers[g[0]] for g in groups]
        same = verify_many([(str(r), a) for r in reps]) if reps else []
        hit = next((k for k, s in enumerate(same) if s), None)
        if hit is None:
            groups.append([i])
        else:
            groups[hit].append(i)
    sizes = [0] * len(answers)
    for g in groups:
        for i in g:
            sizes[i] = len(g)
    if not groups:
        return None, sizes
    best = max(groups, key=lambda g: (len(g), -g[0]))
    return best[0], sizes


def folder_digest(folder: str | Path) -> str:
    """A digest of a model folder's weight and config files: which weights a path holds, for request-cache keys
    (a folder retrained in place must not be served the old model's cached answers)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).glob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".gguf"):
            h.update(f"{f.name}\x00".encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]
