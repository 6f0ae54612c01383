"""What SFT and GRPO share: the model name, dtype, LoRA, quiet mode, checkpoints, saving (merged or not), the record.

``amc_train.json`` beside every trained model ties it to its settings, its data (version and fingerprint of a
publication, the filter stage's fingerprint of a run directory, a file's hash) and the library versions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from amc.errors import AmcError

TRAIN_RECORD = "amc_train.json"


def resolve_base_model(model: str) -> str:
    """A named model (``smollm2-135m-instruct``, ``tiny-llama``) becomes its local folder; a mistyped local folder
    fails here with its name, not deep inside transformers as a bad repo id."""
    from amc.models import resolve_model

    resolved = resolve_model(model)
    if not Path(resolved).exists() and (resolved.startswith((".", "/", "~")) or resolved.count("/") > 1):
        raise AmcError(f"{model}: no such model folder, and not a Hub model id (ORG/NAME)")
    return resolved


def fit_max_length(model: str, max_length: int | None, revision: str | None = None) -> int | None:
    """``max_length`` capped at the model's context (``max_position_embeddings``): longer sequences would index
    past its position table (tiny-llama has 512 positions, the default max_length is 2048)."""
    from transformers import AutoConfig

    try:
        context = getattr(AutoConfig.from_pretrained(model, revision=revision), "max_position_embeddings", None)
    except (OSError, ValueError):
        return max_length
    if context is None:
        return max_length
    return context if max_length is None else min(max_length, int(context))


def resolve_dtype(dtype: str) -> str:
    """``auto``: bfloat16 on a GPU that has it, else float32 (CPUs train in float32)."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def lora_config(settings: Any):
    """peft's LoraConfig from the settings' lora_* fields."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def quiet_libraries(quiet: bool) -> None:
    """Hide the progress bars of datasets, transformers and huggingface_hub (``-q``); show them again otherwise."""
    import datasets
    import huggingface_hub.utils as hub_utils
    import transformers

    if quiet:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        hub_utils.disable_progress_bars()
        transformers.utils.logging.set_verbosity_error()
    else:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        hub_utils.enable_progress_bars()
        transformers.utils.logging.set_verbosity_warning()


def checkpoint_args(settings: Any) -> dict[str, Any]:
    """TrainingArguments for checkpoints: every ``save_steps`` steps into ``output_dir/checkpoint-N``, or none."""
    if settings.save_steps is None:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": settings.save_steps, "save_total_limit": settings.save_total_limit}


def trainer_args(settings: Any, config_cls: type) -> dict[str, Any]:
    """The TrainingArguments every amc trainer (SFT, GRPO) sets the same way from its settings.

    Epochs or steps, learning rate, batch, precision (``dtype`` resolved for this machine; TRL's own default is bf16
    on, which CPUs refuse), the base model's dtype and revision, seeds (model init and data order), logging,
    progress bars, checkpoints and activation checkpointing under the name ``config_cls`` knows.
    """
    import torch

    dtype = resolve_dtype(settings.dtype)
    return {
        "output_dir": str(settings.output_dir),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps or -1,
        "learning_rate": settings.learning_rate,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "bf16": dtype == "bfloat16",
        "fp16": dtype == "float16",
        "model_init_kwargs": {"dtype": dtype, "revision": settings.model_revision},
        "seed": settings.seed,
        "data_seed": settings.seed,
        "logging_steps": settings.logging_steps,
        "logging_first_step": True,
        "report_to": "none",
        "dataloader_pin_memory": torch.cuda.is_available(),  # pinning is for host-to-GPU copies only
        "disable_tqdm": not settings.show_progress,
        **checkpoint_args(settings),
        **checkpointing_kwarg(config_cls, settings.gradient_checkpointing),
    }


def last_checkpoint(settings: Any) -> str | None:
    """The newest checkpoint folder of ``output_dir`` when resuming is asked for and one exists."""
    if not settings.resume or not Path(settings.output_dir).is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(settings.output_dir))


def checkpointing_kwarg(config_cls: type, on: bool) -> dict[str, bool]:
    """TRL configs turn activation checkpointing on by default; transformers 5 renamed it (the old name warns)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def save_model(trainer: Any, out: Path, *, lora: bool, merge: bool) -> str:
    """Save the model and tokenizer; a LoRA run saves its adapter, or with ``merge`` the merged full model.
    Returns what was saved: 'model', 'lora adapter' or 'merged model'."""
    out.mkdir(parents=True, exist_ok=True)
    trainer.processing_class.save_pretrained(str(out))
    if lora and merge:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(out))
        return "merged model"
    trainer.save_model(str(out))
    return "lora adapter" if lora else "model"


def library_versions() -> dict[str, str | None]:
    import importlib.metadata as md

    import amc

    out: dict[str, str | None] = {"amc": amc.__version__}
    for pkg in ("trl", "transformers", "torch", "peft", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def finite_or_none(x: Any) -> Any:
    """NaN is not JSON: a diverged value is recorded as null rather than as a file json.loads rejects."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list | tuple):
        return [finite_or_none(v) for v in x]
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    return x


def write_record(out: Path, settings: Any, dataset: dict[str, Any], result: dict[str, Any]) -> Path:
    """``amc_train.json``: settings, dataset identity, library versions and the result."""
    record = {
        "settings": settings.model_dump(mode="json"),
        "dataset": dataset,
        "versions": library_versions(),
        "result": finite_or_none(result),
    }
    path = out / TRAIN_RECORD
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
