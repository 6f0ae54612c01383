"""Every record kind amc reads or writes: the single source of truth for field names.

Step indices are 0-based everywhere; ``error_step == -1`` means "no error" and ``None`` means "not known".
This module imports nothing else of amc, so that every layer can depend on it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Strategy = Literal["reference", "sample", "resample", "inject", "symbolic"]
ParseStatus = Literal["ok", "partial", "failed"]
CritiqueFormat = Literal["text", "json"]


class Record(BaseModel):
    """Base of all records: unknown fields are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class Message(BaseModel):
    """One chat message: what prompt templates render and engines receive."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["system", "user", "assistant"]
    content: str


class Problem(Record):
    """A math problem with its reference answer (and, when the source has one, a reference solution)."""

    id: str = Field(description="Stable id, unique within the run, e.g. 'gsm8k-test-00017'.")
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1, description="Reference final answer, as text ('18', '\\frac{3}{4}').")
    solution: str | None = Field(default=None, description="Reference step-by-step solution, one step per line.")
    source: str = Field(description="Where the problem came from: 'synthetic', 'openai/gsm8k', a file path.")
    difficulty: int | None = Field(default=None, description="Number of steps (synthetic) or MATH level.")
    subject: str | None = None


class ReasoningPath(Record):
    """One solution of a problem, split into steps, graded against the reference answer."""

    id: str = Field(description="'<problem id>/<strategy>/<sample index>'.")
    problem_id: str
    question: str
    reference_answer: str
    steps: list[str]
    predicted_answer: str | None = None
    correct: bool = False
    strategy: Strategy
    generator: str = Field(
        description="Model that wrote the path: the actor; for 'inject' '<injector>+<actor>'; 'symbolic' for "
        "symbolic perturbation; 'reference' for the source's reference solution."
    )
    sample_index: int = 0
    error_step: int | None = Field(
        default=None, description="0-based first wrong step when known by construction; -1 no error; None unknown."
    )
    error_type: str | None = None
    temperature: float | None = None
    finish_reason: str = "stop"
    source: str = ""
    difficulty: int | None = None


class StepVerdict(Record):
    """The annotator's judgement of one step."""

    index: int
    step: str
    correct: bool
    explanation: str = ""


class Critique(Record):
    """A step-level critique of one reasoning path, parsed from the annotator's output."""

    id: str = Field(description="'<path id>/c<critique sample index>'.")
    path: ReasoningPath
    annotator: str
    step_verdicts: list[StepVerdict]
    first_error_step: int | None = Field(
        default=None, description="0-based index of the first step judged Wrong; -1 when all are Correct."
    )
    final_verdict: bool | None = Field(default=None, description="True when the annotator says the answer is correct.")
    final_explanation: str = ""
    raw: str
    parse_status: ParseStatus
    parse_problems: list[str] = Field(
        default_factory=list,
        description="Why parse_status is not 'ok' (a cut-off output's first problem starts with 'truncated').",
    )
    format: CritiqueFormat = "text"
    hints: list[str] = Field(
        default_factory=list, description="Hints the annotator was given (never shown to a critic)."
    )


class Refinement(Record):
    """One attempt of the actor to correct a path given a critique."""

    index: int
    text: str
    predicted_answer: str | None = None
    correct: bool = False
    shortcut: bool = Field(default=False, description="States an answer with almost no working: never a success.")
    finish_reason: str = "stop"


class FilterDecision(Record):
    """A critique with its refinements and the correction-outcome verdict (the filter stage's row)."""

    id: str
    critique: Critique
    refinements: list[Refinement]
    n: int = Field(description="Refinements sampled (N).")
    k: int = Field(description="Correct refinements needed to keep the critique.")
    n_correct: int
    kept: bool
    reason: str | None = Field(default=None, description="Rule that dropped the row; None when kept.")


class StepLabels(Record):
    """Math-Shepherd labels of one path: for each step prefix, M actor rollouts graded against the reference."""

    id: str = Field(description="The path's id.")
    problem_id: str
    question: str
    reference_answer: str
    steps: list[str]
    strategy: Strategy
    error_step: int | None = None
    rollouts: int = Field(description="M: rollouts per step prefix.")
    soft_labels: list[float] = Field(description="Per step: share of rollouts from that prefix that are correct.")
    hard_labels: list[bool] = Field(description="Per step: whether any rollout from that prefix is correct.")


class Reject(Record):
    """A row a stage could not produce: errors are data, never a crash."""

    stage: str
    row_id: str
    reason: str = Field(description="Short machine-readable cause: 'engine_error', 'truncated', 'unparsable', ...")
    detail: str = ""


RECORD_KINDS: dict[str, type[Record]] = {
    "problem": Problem,
    "reasoning_path": ReasoningPath,
    "step_verdict": StepVerdict,
    "critique": Critique,
    "refinement": Refinement,
    "filter_decision": FilterDecision,
    "step_labels": StepLabels,
    "reject": Reject,
}
