"""The rows the loops write as Parquet: every attempt (sample, refinement, resample), every critique, every
transition. Pydantic models, so that each file's Arrow schema comes from the model, never from the data.

``transitions.parquet`` is a contract with the evaluation module (CL/CS/RSS, RealCritic transitions): one row per
(problem, sample, round) with at least ``problem_id``, ``sample_index``, ``round`` (1-based), ``correct_before``,
``correct_after`` and ``difficulty``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AttemptKind = Literal["sample", "refinement", "resample", "reference"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Attempt(_Row):
    """One solution text of one problem: a sample (round 0), a refinement (round r), or a fresh resample."""

    problem_id: str
    sample_index: int
    round: int = Field(description="0 for the first samples; r for what round r produced.")
    kind: AttemptKind
    text: str
    predicted_answer: str | None = None
    correct: bool = False
    finish_reason: str = "stop"
    difficulty: int | None = None
    error: str | None = Field(default=None, description="Why the engine gave no text (the attempt is then wrong).")


class CritiqueRow(_Row):
    """One critique of one attempt, parsed."""

    problem_id: str
    sample_index: int
    round: int = Field(description="The round this critique opens (1-based).")
    critic: str
    raw: str
    final_verdict: bool | None = None
    first_error_step: int | None = None
    parse_status: str = "failed"
    truly_correct: bool = Field(description="Whether the critiqued attempt is right (graded against the reference).")
    difficulty: int | None = None


class Transition(_Row):
    """What one round did to one sample: correct before and after (C->C, C->I, I->C, I->I)."""

    problem_id: str
    sample_index: int
    round: int
    correct_before: bool
    correct_after: bool
    refined: bool = Field(description="Whether the sample was refined this round (else it was kept as it was).")
    critic_verdict: bool | None = Field(default=None, description="The critic's final verdict; None: not asked.")
    difficulty: int | None = None


def transition_name(before: bool, after: bool) -> str:
    """``'C->I'`` style name of a transition.

    >>> transition_name(False, True)
    'I->C'
    """
    return f"{'C' if before else 'I'}->{'C' if after else 'I'}"
