"""The ``train:`` block of a pipeline file: every setting of ``amc train critic|actor`` (SFT and GRPO) in one class.

TRL's config-file convention: the file fills the class, the command line overrides single fields, an unknown key
is an error that names its path. :class:`amc.train.sft.SFTSettings` is this class with ``model``, ``data`` and
``output_dir`` required, so a block in a pipeline file and a call from Python take the same names::

    train:
      model: smollm2-135m-instruct
      lora: true
      merge: true
      epochs: 2
      grpo: {num_generations: 4, beta: 0.04, rewards: {correction: 1.0, format: 0.2}}

Kept beside :mod:`amc.config` (which imports it into :class:`amc.config.PipelineConfig`); it imports no trainer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["float32", "bfloat16", "float16", "auto"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class RewardWeights(_Strict):
    """Weights of the GRPO reward components; each is logged on its own, 0 switches one off (not computed)."""

    correction: float = Field(
        1.0, ge=0, description="The fixed actor's refinement, given the critique, reaches the reference answer."
    )
    verdict: float = Field(0.5, ge=0, description="The critique's final verdict agrees with the path's correctness.")
    first_error: float = Field(
        0.5, ge=0, description="The first Wrong step equals the known error step (-1: no Wrong step on a correct path)."
    )
    format: float = Field(0.25, ge=0, description="The critique parses in the AutoMathCritique text format.")

    def active(self) -> dict[str, float]:
        """Components with a nonzero weight, in a fixed order."""
        return {k: v for k, v in self.model_dump().items() if v > 0}


class RefineSampling(_Strict):
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)


class GRPOBlock(_Strict):
    """CTRL: the critic is trained by GRPO to write critiques after which a fixed actor corrects the path."""

    actor: str | dict[str, Any] = Field(
        "actor",
        description="The fixed actor that refines: a role of the pipeline file's models (actor, annotator, critic, "
        "...), an ENGINE:MODEL spec (sim, transformers:DIR, vllm:DIR, openai:MODEL with base_url in a mapping), "
        "or a whole model block.",
    )
    num_generations: int = Field(4, ge=2, description="Group size: critiques sampled per prompt.")
    beta: float = Field(0.04, ge=0, description="KL coefficient against the starting model (0: no reference model).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the critiques.")
    max_completion_length: int = Field(512, ge=8, description="Longest critique, in tokens.")
    rewards: RewardWeights = Field(default_factory=RewardWeights)
    refinements: int = Field(1, ge=1, description="Refinements per critique; the correction reward is their mean.")
    refine_sampling: RefineSampling = Field(default_factory=RefineSampling)
    min_refinement_steps: int = Field(2, ge=1, description="A refinement with fewer steps is a shortcut: no success.")
    balance: bool = Field(True, description="As many correct as flawed paths among the prompts.")
    max_prompts: int | None = Field(None, ge=1, description="Use at most this many paths (after balancing).")
    cache: str | None = Field(None, description="Request cache of the actor; default <output_dir>/requests.sqlite.")


class TrainConfig(_Strict):
    """Settings of one training run. ``model``, ``data`` and ``output_dir`` may come from the command line."""

    method: Literal["sft", "grpo"] = Field("sft", description="sft (TRL SFTTrainer) or grpo (CTRL, critic only).")
    model: str | None = Field(None, description="Base model: a named model, a local folder or a Hub id.")
    data: str | None = Field(
        None,
        description="A run directory (`amc build`), a published folder (`amc publish --to`), a Hub dataset id, or a "
        ".parquet/.jsonl file of TRL conversational prompt/completion rows.",
    )
    output_dir: str | None = Field(None, description="Where the model, tokenizer, checkpoints and report go.")
    config: str = Field("sft_critic", description="Dataset config: sft_critic (critic) or sft_refine (actor).")
    revision: str | None = Field(None, description="Dataset revision (a tag such as v0.1.0); a folder checks it.")
    model_revision: str | None = Field(None, description="Revision of a Hub model.")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(8, gt=0, description="Per device, for training and evaluation.")
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int | None = Field(2048, gt=0, description="Truncate prompt+completion to this many tokens.")
    lora: bool = False
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = Field("all-linear", description="peft target_modules.")
    merge: bool = Field(False, description="LoRA: save the base model with the adapter merged in (loads anywhere).")
    dtype: Dtype = Field("auto", description="'auto': bfloat16 where the hardware has it, else float32.")
    gradient_checkpointing: bool = False
    seed: int = 0
    limit: int | None = Field(None, gt=0, description="Train on the first N examples only (smoke runs).")
    eval: bool = Field(True, description="Evaluate on the test split when the dataset has one.")
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="Run directory only: share of problems held out as the test split (by problem)."
    )
    include_correct_paths: bool = Field(False, description="Actor: also train on the correct paths (solve prompts).")
    prompts_dir: str | None = Field(None, description="A folder of your own prompt templates.")
    logging_steps: int = Field(10, gt=0)
    save_steps: int | None = Field(None, gt=0, description="Write a checkpoint every N steps (resumable).")
    save_total_limit: int | None = Field(2, gt=0, description="Keep at most this many checkpoints.")
    resume: bool = Field(False, description="Resume from the latest checkpoint in output_dir, when there is one.")
    report: bool = Field(True, description="Write report.json, report.md and curve PNGs beside the model.")
    show_progress: bool = True
    grpo: GRPOBlock = Field(default_factory=GRPOBlock)

    @model_validator(mode="after")
    def _merge_needs_lora(self) -> TrainConfig:
        if self.merge and not self.lora:
            raise ValueError("merge: true merges a LoRA adapter; set lora: true too (full fine-tuning needs no merge)")
        return self
