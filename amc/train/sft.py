"""Slim SFT of a critic (or a refiner) on a published amc dataset, with TRL's ``SFTTrainer``.

The ``sft_critic`` and ``sft_refine`` configs are TRL conversational ``prompt``/``completion`` rows, so the loss is
on the completion only (the critique, or the refinement): the prompt's tokens are labelled -100. One call reads the
dataset with :func:`amc.load`, trains (full fine-tuning, or LoRA through ``peft_config``), saves the model and its
tokenizer, and writes ``amc_train.json`` beside them: the settings, the dataset's version and fingerprint, the
versions of amc, TRL, transformers and torch, and the losses. That record is what ties a critic to the exact
dataset version it learned from.

>>> result = train_sft(SFTSettings(model="Qwen/Qwen2.5-0.5B-Instruct", data="out/quickstart",
...                                output_dir="critics/q05", lora=True))  # doctest: +SKIP
>>> result.train_loss, result.eval_loss  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from amc.errors import AmcError
from amc.train.data import TrainError

TRAIN_RECORD = "amc_train.json"
VERSION_FILE = "amc_version.json"  # written by amc.publish beside every published dataset


class SFTSettings(BaseModel):
    """Everything one SFT run depends on; recorded verbatim in ``amc_train.json``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="Base model: a local folder or a Hub id.")
    data: str = Field(
        description="A run directory (`amc build`), a published folder (`amc publish --to`), a Hub dataset id, or a "
        ".parquet/.jsonl file of TRL conversational prompt/completion rows."
    )
    output_dir: Path = Field(description="Where the model (or LoRA adapter), tokenizer and amc_train.json go.")
    config: str = Field("sft_critic", description="Dataset config: sft_critic (critic) or sft_refine (refiner).")
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
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    gradient_checkpointing: bool = False
    seed: int = 0
    limit: int | None = Field(None, gt=0, description="Train on the first N examples only (smoke runs).")
    eval: bool = Field(True, description="Evaluate on the test split when the dataset has one.")
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="Run directory only: share of problems held out as the test split (by problem)."
    )
    include_correct_paths: bool = Field(False, description="Actor: also train on the correct paths (solve prompts).")
    prompts_dir: str | None = Field(None, description="Run directory: a folder of your own prompt templates.")
    logging_steps: int = Field(10, gt=0)
    show_progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. ``losses`` is the logged training loss per step, in order."""

    output_dir: Path
    train_loss: float
    eval_loss: float | None
    examples: int  # rows of the train split used
    trained_examples: int  # after TRL dropped rows that truncation left without completion tokens
    eval_examples: int
    steps: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)


def train_sft(settings: SFTSettings) -> TrainResult:
    """Fine-tune ``settings.model`` on the completions of a published prompt/completion config; save and record it."""
    _check_model(settings)
    train, test, identity = _datasets(settings)
    trainer = _trainer(settings, train, test)
    output = trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"] if test is not None else None
    out = Path(settings.output_dir)
    trainer.save_model(str(out))  # a LoRA run saves the adapter only
    trainer.processing_class.save_pretrained(str(out))

    losses = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    result = TrainResult(
        output_dir=out,
        train_loss=float(output.training_loss),
        eval_loss=_float(eval_loss),
        examples=len(train),
        trained_examples=len(trainer.train_dataset),
        eval_examples=len(test) if test is not None else 0,
        steps=int(trainer.state.global_step),
        losses=losses,
        dataset=identity,
    )
    _write_record(out, settings, result)
    return result


def build_trainer(settings: SFTSettings):
    """The configured ``trl.SFTTrainer`` (datasets read and tokenized, labels built), not yet trained.

    :func:`train_sft` is this plus ``train()``, ``evaluate()``, saving and the record; use it directly to inspect
    the prepared data (``trainer.train_dataset`` holds ``input_ids`` and ``labels``) or to add callbacks.
    """
    _check_model(settings)
    train, test, _ = _datasets(settings)
    return _trainer(settings, train, test)


def _check_model(settings: SFTSettings) -> None:
    """A mistyped local model folder fails here with its name, not deep inside transformers as a bad repo id."""
    model = str(settings.model)
    if not Path(model).exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise AmcError(f"{model}: no such model folder, and not a Hub model id (ORG/NAME)")


def _trainer(settings: SFTSettings, train, test):
    import trl
    from transformers import AutoTokenizer, PrinterCallback

    tokenizer = AutoTokenizer.from_pretrained(settings.model, revision=settings.model_revision)
    if not tokenizer.chat_template:
        raise TrainError(f"{settings.model} has no chat template; conversational prompt/completion data needs one")
    trainer = trl.SFTTrainer(
        model=settings.model,
        args=_sft_config(settings),
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
        peft_config=_lora_config(settings) if settings.lora else None,
    )
    if not settings.show_progress:
        trainer.remove_callback(PrinterCallback)  # with tqdm off, transformers prints every log dict instead
    if len(trainer.train_dataset) == 0:
        raise TrainError(f"no training example has a completion token left within max_length={settings.max_length}")
    return trainer


def _datasets(settings: SFTSettings):
    """The train split and, when asked for and present, the test split, as prompt/completion rows."""
    data = _load(settings)
    train = data.train
    if settings.limit is not None:
        train = train.select(range(min(settings.limit, len(train))))
    if len(train) == 0:
        raise TrainError(f"{settings.data} ({settings.config}) has an empty train split")
    return train, data.test, data.identity


def _load(settings: SFTSettings):
    from amc.train.data import load_sft_data

    return load_sft_data(
        settings.data,
        settings.config,
        revision=settings.revision,
        test_fraction=settings.test_fraction,
        eval=settings.eval,
        include_correct_paths=settings.include_correct_paths,
        prompts_dir=settings.prompts_dir,
    )


def _sft_config(settings: SFTSettings):
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(settings.output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        completion_only_loss=True,  # prompt tokens are -100: the critic learns to critique, not to pose problems
        assistant_only_loss=False,
        packing=False,
        bf16=settings.dtype == "bfloat16",  # SFTConfig's own default is bf16 on, which CPUs refuse
        fp16=settings.dtype == "float16",
        model_init_kwargs={"dtype": settings.dtype, "revision": settings.model_revision},
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="no",  # the final model is saved once, by us; no checkpoint folders to clean up
        eval_strategy="no",  # one evaluation at the end (TrainResult.eval_loss)
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning is for host-to-GPU copies only
        disable_tqdm=not settings.show_progress,
        # SFTConfig turns checkpointing on by default; transformers 5 renamed it (the old name warns)
        **_checkpointing(SFTConfig, settings.gradient_checkpointing),
    )


def _checkpointing(config_cls: type, on: bool) -> dict[str, bool]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def _lora_config(settings: SFTSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import amc

    out = {"amc": amc.__version__}
    for pkg in ("trl", "transformers", "torch", "peft", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def _write_record(out: Path, settings: SFTSettings, result: TrainResult) -> None:
    record = {
        "settings": settings.model_dump(mode="json"),
        "dataset": result.dataset,
        "versions": _versions(),
        "result": {k: v for k, v in asdict(result).items() if k not in ("output_dir", "dataset")},
    }
    # NaN is not JSON; a diverged run is recorded as null rather than as a file json.loads rejects.
    record["result"]["losses"] = [[s, v if math.isfinite(v) else None] for s, v in result.losses]
    for key in ("train_loss", "eval_loss"):
        v = record["result"][key]
        if v is not None and not math.isfinite(v):
            record["result"][key] = None
    (out / TRAIN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
