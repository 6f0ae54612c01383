"""The ``loop:`` and ``selftrain:`` blocks of a pipeline file (critique-in-the-loop at test time and in training).

Kept beside :mod:`amc.config` (which imports them into :class:`amc.config.PipelineConfig`) so that the pipeline
file's main module stays one screen per concern. Like every config class, an unknown key is an error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CriticKind = Literal["model", "symbolic"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoopSampling(_Strict):
    """Sampling settings of one kind of request in a loop."""

    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=1024, ge=1)


class LoopConfig(_Strict):
    """``amc loop``: the actor samples, the critic critiques, the actor refines (AutoMathCritique section 5)."""

    mode: Literal["parallel", "sequential", "best_of_n"] = Field(
        default="parallel",
        description="parallel: K samples, each critiqued and refined once, then a majority vote; sequential: R "
        "rounds of critique then refine on each sample; best_of_n: K samples, the critic's verdicts choose, ties "
        "broken by a vote (the critic as a verifier).",
    )
    samples: int = Field(default=4, ge=1, description="K: samples per problem.")
    rounds: int = Field(default=1, ge=1, description="R: critique-refine rounds (sequential; parallel uses 1).")
    oracle: bool = Field(
        default=False,
        description="true: only answers known to be wrong (graded against the reference) are refined; false: the "
        "critic's final verdict decides which are refined.",
    )
    critic: CriticKind = Field(
        default="model",
        description="'model': the critic role (models.critic, else models.annotator) through its engine; "
        "'symbolic': no model, the symbolic arithmetic checks of amc.steps flag the first false equation.",
    )
    limit: int | None = Field(default=None, ge=1, description="Use only the first N problems.")
    out: str | None = Field(default=None, description="Output folder; default <run_dir>/loop.")
    sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.7))
    critique_sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.0, max_tokens=2048))
    refine_sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.7))

    @model_validator(mode="after")
    def _parallel_is_one_round(self) -> LoopConfig:
        if self.mode == "parallel" and self.rounds != 1:
            raise ValueError("mode 'parallel' refines each sample once (rounds: 1); use mode 'sequential' for rounds")
        return self


class SelftrainSFT(_Strict):
    """The SFT step of each self-training iteration (passed to :func:`amc.train.sft.train_sft`)."""

    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    learning_rate: float = Field(default=2e-5, gt=0)
    batch_size: int = Field(default=8, gt=0)
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    max_length: int = Field(default=1024, gt=0)
    lora: bool = False
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"


class SelftrainConfig(_Strict):
    """``amc selftrain``: explore, grade, critique the failures, refine, keep the correct ones, SFT, repeat."""

    iterations: int = Field(default=2, ge=1)
    critic: Literal["model", "symbolic", "off"] = Field(
        default="model",
        description="'off' is the baseline: no critique; each failure gets as many fresh samples as the critic "
        "arm gets refinements (see budget), so both arms make the same number of actor generations.",
    )
    samples: int = Field(default=4, ge=1, description="N: samples per training problem in each exploration.")
    difficulty_aware: bool = Field(
        default=True, description="Problems with a low solve rate in the previous iteration get hard_samples."
    )
    hard_solve_rate: float = Field(
        default=0.5, ge=0.0, le=1.0, description="A solve rate below this makes a problem hard (more samples)."
    )
    hard_samples: int = Field(default=8, ge=1, description="Samples per hard problem when difficulty_aware.")
    hard_difficulty: int = Field(
        default=3, ge=0, description="Problems of at least this difficulty count as hard in the training-data share."
    )
    refinements: int = Field(default=1, ge=1, description="Refinements per critique (kept: the correct ones).")
    keep_per_critique: int = Field(default=1, ge=1, description="Correct refinements kept per critique.")
    budget: Literal["equal", "free"] = Field(
        default="equal",
        description="equal: with critic off, each failure gets `refinements` fresh samples instead (same actor "
        "generations as the critic arm); free: critic off just explores.",
    )
    init: Literal["base", "continue"] = Field(
        default="base", description="base: each iteration fine-tunes the base model (the paper); continue: the last."
    )
    test_fraction: float = Field(default=0.25, gt=0.0, lt=1.0, description="Held-out share of problems (by id).")
    test_samples: int = Field(default=1, ge=1, description="Samples per test problem (accuracy is their mean).")
    test_sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.0))
    sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.7))
    critique_sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.0, max_tokens=2048))
    refine_sampling: LoopSampling = Field(default_factory=lambda: LoopSampling(temperature=0.7))
    warmup_references: int = Field(
        default=0,
        ge=0,
        description="Add the reference solutions of this many training problems to every iteration's training "
        "data (both arms alike): a warm-up for an actor too weak to solve anything on its own (tiny test models).",
    )
    sft: SelftrainSFT = Field(default_factory=SelftrainSFT)
    out: str | None = Field(default=None, description="Output folder; default <run_dir>/selftrain-<critic>.")

    @field_validator("critic", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` (`--set selftrain.critic=off`, `critic: off`) as the boolean false
        return "off" if value is False else value

    cache: str | None = Field(
        default=None,
        description="Request cache file; default <out>/cache.sqlite. Two arms run one after the other on one file "
        "share what they have in common (the base model's test answers and first exploration).",
    )
