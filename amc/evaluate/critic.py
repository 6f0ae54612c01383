"""A critic under evaluation: a template, a backend and a parser, or the symbolic ``checks`` with no model.

A critic reads a solution's steps and says which step is wrong first (-1 when none). Two kinds:

- ``checks``: amc's symbolic step checks (:func:`amc.steps.claims`: exact arithmetic of every equation a step
  states) plus final-answer grading when the item has a reference answer; no model. A wrong final answer with no
  false equation blames the last step (the conclusion does not follow), as amc's sim annotator does.
- a model: ``ENGINE:MODEL`` (``vllm:./critic-out``, ``transformers:HuggingFaceTB/SmolLM2-135M-Instruct``), with the
  engine settings of the pipeline file's model block for that engine, or the name of a ``models:`` role of the
  pipeline file (``annotator``). Its prompt is amc's critic template (``critic.jinja``: the question and the
  numbered steps, no hint), the same prompt the ``sft_critic`` export trains on; its answer is read with amc's
  critique parser, and requests go through amc's request cache, so a rerun asks the engine nothing.

The prediction is the first step the critique calls Wrong; a critique the parser cannot read has no prediction
(``None``), which counts as a miss.

>>> critic = ChecksCritic()
>>> from amc.evaluate.items import EvalItem
>>> critic.critique([EvalItem("x", "s", "?", ["2 + 2 = 4", "4 * 3 = 13"], 1)])[0].prediction
1
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amc.answers import cpu_workers, extract, verify
from amc.critique_format import parse_text, render_text
from amc.errors import AmcError
from amc.evaluate.items import EvalItem
from amc.records import StepVerdict
from amc.steps import CheckTimeout, claims, join

if TYPE_CHECKING:
    from amc.config import ModelConfig, PipelineConfig
    from amc.engine.cache import CachedBackend

__all__ = ["Prediction", "Critic", "ChecksCritic", "ModelCritic", "critic_from_spec"]

Progress = Callable[[int, int], None]


@dataclass
class Prediction:
    """A critic's answer on one item, with what is needed to recompute every figure and group them."""

    id: str
    subset: str
    label: int | None
    prediction: int | None
    final_verdict: bool | None
    critique: str
    parse_status: str = "ok"
    problems: list[str] = field(default_factory=list)
    final_answer_correct: bool | None = None
    strategy: str | None = None
    error_type: str | None = None
    difficulty: int | None = None
    num_steps: int = 0

    def as_row(self) -> dict[str, Any]:
        """A plain dict for JSON lines."""
        return asdict(self)


def _prediction(
    item: EvalItem, first: int | None, final: bool | None, text: str, status: str, problems: list[str]
) -> Prediction:
    return Prediction(
        id=item.id,
        subset=item.subset,
        label=item.label,
        prediction=first,
        final_verdict=final,
        critique=text,
        parse_status=status,
        problems=problems,
        final_answer_correct=item.final_answer_correct,
        strategy=item.strategy,
        error_type=item.error_type,
        difficulty=item.difficulty,
        num_steps=len(item.steps),
    )


class Critic(Protocol):
    """Anything that critiques items: ``name`` for reports, ``critique`` in item order, ``close`` when done."""

    name: str

    def critique(self, items: Sequence[EvalItem], progress: Progress | None = None) -> list[Prediction]: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------------ checks


def check_item(item: EvalItem) -> Prediction:
    """The ``checks`` critique of one item: first step with a false equation, then the final answer if graded.

    What is checked is fixed by :mod:`amc.steps`' deterministic budgets, never by the clock; a step that outlives
    the checker's last-resort guard (:class:`amc.steps.CheckTimeout`) makes the item undecided: no prediction (a
    miss, counted as unparsed), never a guess.
    """
    try:
        return _check(item)
    except CheckTimeout as exc:
        return _prediction(item, None, None, "", "failed", [f"undecided: {exc}"])


def _check(item: EvalItem) -> Prediction:
    verdicts: list[StepVerdict] = []
    first: int | None = None
    for i, step in enumerate(item.steps):
        false = next((c for c in claims(step) if not c.true), None)
        if false is not None:
            why = f"{false.expr} = {false.result} is false: the left side is {false.value}."
            verdicts.append(StepVerdict(index=i, step=step, correct=False, explanation=why))
            first = i
            break
        verdicts.append(StepVerdict(index=i, step=step, correct=True, explanation="No false equation found."))
    answer_ok: bool | None = None
    if item.reference_answer:
        answer_ok = verify(str(item.reference_answer), extract(join(item.steps)))
        if first is None and not answer_ok:
            first = len(item.steps) - 1
            why = f"The final answer is not the reference answer {item.reference_answer}."
            verdicts[-1] = StepVerdict(index=first, step=item.steps[-1], correct=False, explanation=why)
    final = answer_ok if answer_ok is not None else first is None
    if answer_ok is None:
        final_why = "No step states a false equation." if final else "A step states a false equation."
    else:
        final_why = "The final answer matches the reference." if answer_ok else "The final answer is wrong."
    text = render_text(verdicts, final, final_why)
    return _prediction(item, -1 if first is None else first, final, text, "ok", [])


class ChecksCritic:
    """The symbolic critic: no model, deterministic; ``workers`` > 1 spreads items over forked processes (``None``:
    one per usable core). The predictions are the same whatever the number of workers."""

    name = "checks"

    def __init__(self, workers: int | None = 1):
        self.workers = cpu_workers() if workers is None else max(1, workers)

    def critique(self, items: Sequence[EvalItem], progress: Progress | None = None) -> list[Prediction]:
        """Check every item, in order."""
        out: list[Prediction] = []
        if self.workers == 1 or len(items) < 32 or multiprocessing.current_process().daemon:
            results = map(check_item, items)
            pool = None
        else:
            pool = multiprocessing.get_context("fork").Pool(self.workers)
            results = pool.imap(check_item, items, chunksize=8)
        try:
            for pred in results:
                out.append(pred)
                if progress is not None and len(out) % 100 == 0:
                    progress(len(out), len(items))
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        return out

    def close(self) -> None:
        """Nothing to release."""


# ------------------------------------------------------------------------------------------------ models


class ModelCritic:
    """A model behind amc's backend protocol and request cache, prompted with a critic template.

    Items go to the engine ``chunk_size`` at a time, and each chunk's answers are in the cache before the next is
    sent: an evaluation stopped half way resumes where it stopped, and progress shows as it goes."""

    def __init__(
        self,
        model: ModelConfig,
        cache_path: Path | None = None,
        template: str = "critic",
        prompts_dir: str | None = None,
        max_tokens: int = 1024,
        chunk_size: int = 16,
    ):
        from amc.backends import create
        from amc.engine.cache import CachedBackend, RequestCache
        from amc.prompts import load_template

        self.model = model
        self.name = f"{model.engine}:{model.model}"
        self.template = load_template(template, prompts_dir)
        self.max_tokens = max_tokens
        self._cache = RequestCache(cache_path) if cache_path is not None else None
        self.backend: CachedBackend | Any
        if self._cache is not None:
            self.backend = CachedBackend(
                None,
                self._cache,
                chunk_size=chunk_size,
                factory=lambda: create(model),
                engine=model.engine,
                model=model.model,
                revision=model.revision,
                identity=model.identity(),
            )
        else:
            self.backend = create(model)
        self.chunk_size = chunk_size

    def _request(self, item: EvalItem) -> Any:
        from amc.backends import GenerationRequest, SamplingParams

        return GenerationRequest(
            id=f"{item.id}/critic",
            role="annotator",
            messages=self.template.render(question=item.problem, steps=item.steps),
            params=SamplingParams(n=1, temperature=0.0, max_tokens=self.max_tokens, seed=0),
            template=self.template.ref,
            context={  # read by the offline sim engine only
                "task": "critique",
                "question": item.problem,
                "steps": item.steps,
                "reference_answer": item.reference_answer or "",
                "error_step": None,
                "format": "text",
            },
        )

    def critique(self, items: Sequence[EvalItem], progress: Progress | None = None) -> list[Prediction]:
        """Ask the model about every item (in chunks, so progress shows and the cache fills as it goes)."""
        out: list[Prediction] = []
        for start in range(0, len(items), self.chunk_size):
            chunk = items[start : start + self.chunk_size]
            responses = self.backend.generate([self._request(item) for item in chunk])
            for item, resp in zip(chunk, responses, strict=True):
                if not resp.ok:
                    out.append(_prediction(item, None, None, "", "failed", [f"engine error: {resp.error}"]))
                    continue
                done = resp.completions[0]
                parsed = parse_text(done.text, item.steps)
                problems = list(parsed.problems) + (
                    ["truncated at max_tokens"] if done.finish_reason == "length" else []
                )
                out.append(
                    _prediction(item, parsed.first_error_step, parsed.final_verdict, done.text, parsed.status, problems)
                )
            if progress is not None:
                progress(len(out), len(items))
        return out

    def close(self) -> None:
        """Stop the engine and close the cache."""
        self.backend.close()
        if self._cache is not None:
            self._cache.close()


# ------------------------------------------------------------------------------------------------ specs


def _model_block(spec: str, cfg: PipelineConfig | None) -> ModelConfig:
    from amc.backends import ENGINES
    from amc.config import ModelConfig

    engine, sep, model = spec.partition(":")
    if sep and engine in ENGINES and model:
        blocks = [getattr(cfg.models, role, None) for role in ("annotator", "actor", "injector")] if cfg else []
        base = next((b for b in blocks if b is not None and b.engine == engine), None)
        if base is not None:  # the pipeline file's settings for this engine (dtype, max_model_len, base_url, ...)
            return base.model_copy(update={"model": model, "revision": None})
        return ModelConfig(engine=engine, model=model)  # type: ignore[arg-type]
    if not sep and cfg is not None and spec in type(cfg.models).model_fields:
        # an unset role falls back as the pipeline says (critic -> annotator, injector -> actor)
        block = getattr(cfg.models, spec, None) or cfg.models.for_role(spec)
        if isinstance(block, ModelConfig):
            return block
    roles = f" or a models: role of {cfg.name} ({', '.join(type(cfg.models).model_fields)})" if cfg else ""
    raise AmcError(
        f"critic {spec!r}: expected 'checks', ENGINE:MODEL with ENGINE one of {sorted(ENGINES)}{roles}"
        + ("" if cfg else " (a role name needs --config)")
    )


def critic_from_spec(
    spec: str,
    cfg: PipelineConfig | None = None,
    cache_path: Path | None = None,
    max_tokens: int = 1024,
    template: str = "critic",
    workers: int | None = 1,
) -> Critic:
    """Build the critic a ``--critic`` spec names: ``checks``, ``ENGINE:MODEL`` or a ``models:`` role name."""
    if spec == "checks":
        return ChecksCritic(workers=workers)
    block = _model_block(spec, cfg)
    prompts_dir = cfg.prompts_dir if cfg is not None else None
    return ModelCritic(block, cache_path=cache_path, template=template, prompts_dir=prompts_dir, max_tokens=max_tokens)
