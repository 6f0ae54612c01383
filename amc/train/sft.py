"""SFT of a critic (or an actor) on amc data, with TRL's ``SFTTrainer``.

The ``sft_critic`` and ``sft_refine`` configs are TRL conversational ``prompt``/``completion`` rows, so the loss is
on the completion only (the critique, or the refinement): the prompt's tokens are labelled -100, and the model's
own chat template renders both. Data comes from a run directory, a published folder, a Hub id or a file
(:mod:`amc.train.data`). One call trains (full fine-tuning, or LoRA through peft, merged on request), writes
checkpoints when asked (and resumes from the latest), saves the model and its tokenizer, and writes beside them
``amc_train.json`` (settings, the data's version and fingerprint, library versions, losses) and a short report
(:mod:`amc.train.report`: loss curve PNG, steps, tokens seen, examples dropped and why).

>>> result = train_sft(SFTSettings(model="smollm2-135m-instruct", data="runs/quickstart",
...                                output_dir="critics/smol", lora=True, merge=True))  # doctest: +SKIP
>>> result.train_loss, result.eval_loss  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from amc.train.common import (
    TRAIN_RECORD,
    fit_max_length,
    last_checkpoint,
    lora_config,
    quiet_libraries,
    resolve_base_model,
    save_model,
    trainer_args,
    write_record,
)
from amc.train.data import TrainError
from amc.train.report import curves_from_history, write_report
from amc.trainconfig import TrainConfig

__all__ = ["TRAIN_RECORD", "SFTSettings", "TrainError", "TrainResult", "build_trainer", "train_sft"]

DROP_PROMPT_FILLS = "prompt_fills_max_length"  # TRL drops it: no completion token left to learn from
DROP_OTHER = "dropped_by_trl"


class SFTSettings(TrainConfig):
    """Everything one SFT run depends on (the ``train:`` block's fields, with model, data and output required);
    recorded verbatim in ``amc_train.json``."""

    model: str = Field(description="Base model: a named model (smollm2-135m-instruct), a local folder or a Hub id.")
    data: str = Field(
        description="A run directory (`amc build`), a published folder (`amc publish --to`), a Hub dataset id, or a "
        ".parquet/.jsonl file of TRL conversational prompt/completion rows."
    )
    output_dir: Path = Field(description="Where the model (or LoRA adapter), tokenizer, report and record go.")


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. ``losses`` is the logged training loss per step, in order; ``dropped`` counts the
    training examples left out, by reason; ``saved`` says what ``output_dir`` holds."""

    output_dir: Path
    train_loss: float
    eval_loss: float | None
    examples: int  # rows of the train split used
    trained_examples: int  # after TRL dropped rows that truncation left without completion tokens
    eval_examples: int  # rows of the test split
    steps: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0  # kept, but their completion was cut at max_length
    evaluated_examples: int = 0  # test rows the evaluation saw (TRL drops those truncation left without a label)
    eval_dropped: dict[str, int] = field(default_factory=dict)  # test rows left out, by reason, like ``dropped``
    tokens_seen: int = 0  # input tokens (not padding) of every training step
    completion_tokens: int = 0  # tokens with a loss, per epoch
    saved: str = "model"
    resumed_from: str | None = None  # the checkpoint this run went on from


def train_sft(settings: SFTSettings) -> TrainResult:
    """Fine-tune ``settings.model`` on the completions of prompt/completion rows; save, record and report it."""
    quiet_libraries(not settings.show_progress)
    settings = _resolved(settings)
    train, test, identity = _datasets(settings)
    trainer = _trainer(settings, train, test)
    lengths = _length_check(trainer.processing_class, train, settings.max_length)
    resumed_from = last_checkpoint(settings)
    output = trainer.train(resume_from_checkpoint=resumed_from)
    eval_loss = trainer.evaluate()["eval_loss"] if test is not None else None
    out = Path(settings.output_dir)
    saved = save_model(trainer, out, lora=settings.lora, merge=settings.merge)

    history = trainer.state.log_history
    losses = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h]
    kept = len(trainer.train_dataset)
    dropped = _drop_reasons(len(train) - kept, lengths["prompt_fills"])
    evaluated = len(trainer.eval_dataset) if test is not None else 0
    eval_dropped = (
        _drop_reasons(
            len(test) - evaluated, _length_check(trainer.processing_class, test, settings.max_length)["prompt_fills"]
        )
        if test is not None
        else {}
    )
    result = TrainResult(
        output_dir=out,
        train_loss=float(output.training_loss),
        eval_loss=None if eval_loss is None else float(eval_loss),
        examples=len(train),
        trained_examples=kept,
        eval_examples=len(test) if test is not None else 0,
        steps=int(trainer.state.global_step),
        losses=losses,
        dataset=identity,
        dropped=dropped,
        truncated=lengths["truncated"],
        evaluated_examples=evaluated,
        eval_dropped=eval_dropped,
        tokens_seen=int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
        completion_tokens=sum(sum(1 for x in row if x != -100) for row in trainer.train_dataset["labels"]),
        saved=saved,
        resumed_from=resumed_from,
    )
    write_record(
        out, settings, identity, {k: v for k, v in asdict(result).items() if k not in ("output_dir", "dataset")}
    )
    if settings.report:
        _report(out, settings, result, history)
    return result


def build_trainer(settings: SFTSettings):
    """The configured ``trl.SFTTrainer`` (datasets read and tokenized, labels built), not yet trained.

    :func:`train_sft` is this plus ``train()``, ``evaluate()``, saving, the record and the report; use it directly
    to inspect the prepared data (``trainer.train_dataset`` holds ``input_ids`` and ``labels``) or add callbacks.
    """
    settings = _resolved(settings)
    train, test, _ = _datasets(settings)
    return _trainer(settings, train, test)


def _resolved(settings: SFTSettings) -> SFTSettings:
    """A named model as its folder, and max_length within the model's context."""
    model = resolve_base_model(settings.model)
    return settings.model_copy(
        update={"model": model, "max_length": fit_max_length(model, settings.max_length, settings.model_revision)}
    )


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
        peft_config=lora_config(settings) if settings.lora else None,
    )
    if not settings.show_progress:
        trainer.remove_callback(PrinterCallback)  # with tqdm off, transformers prints every log dict instead
    if len(trainer.train_dataset) == 0:
        raise TrainError(
            f"no training example has a completion token left within max_length={settings.max_length}: every "
            f"prompt fills it; raise max_length"
        )
    return trainer


def _datasets(settings: SFTSettings):
    """The train split and, when asked for and present, the test split, as prompt/completion rows."""
    from amc.train.data import load_sft_data

    data = load_sft_data(
        settings.data,
        settings.config,
        revision=settings.revision,
        test_fraction=settings.test_fraction,
        eval=settings.eval,
        include_correct_paths=settings.include_correct_paths,
        prompts_dir=settings.prompts_dir,
    )
    train = data.train
    if settings.limit is not None:
        train = train.select(range(min(settings.limit, len(train))))
    return train, data.test, data.identity


def _length_check(tokenizer: Any, train, max_length: int | None) -> dict[str, int]:
    """How many examples' prompts alone fill ``max_length`` (TRL drops them) and how many are cut (kept)."""
    if max_length is None:
        return {"prompt_fills": 0, "truncated": 0}
    fills = truncated = 0
    for row in train:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        n_full = len(tokenizer(full, add_special_tokens=False)["input_ids"])
        if n_prompt >= max_length:
            fills += 1
        elif n_full > max_length:
            truncated += 1
    return {"prompt_fills": fills, "truncated": truncated}


def _drop_reasons(dropped: int, prompt_fills: int) -> dict[str, int]:
    out = {}
    if min(dropped, prompt_fills):
        out[DROP_PROMPT_FILLS] = min(dropped, prompt_fills)
    if dropped > prompt_fills:
        out[DROP_OTHER] = dropped - prompt_fills
    return out


def _sft_config(settings: SFTSettings):
    from trl import SFTConfig

    return SFTConfig(
        per_device_eval_batch_size=settings.batch_size,
        max_length=settings.max_length,
        completion_only_loss=True,  # prompt tokens are -100: the critic learns to critique, not to pose problems
        assistant_only_loss=False,
        packing=False,
        eval_strategy="no",  # one evaluation at the end (TrainResult.eval_loss)
        include_num_input_tokens_seen="non_padding",
        **trainer_args(settings, SFTConfig),
    )


def _report(out: Path, settings: SFTSettings, result: TrainResult, history: list[dict[str, Any]]) -> None:
    curves = curves_from_history(history, {"train loss": "loss", "learning rate": "learning_rate"})
    if result.eval_loss is not None:
        curves["eval loss"] = [(result.steps, result.eval_loss)]
    summary = {
        "method": "sft",
        "model": settings.model,
        "data": f"{settings.data} ({result.dataset.get('kind')}, {settings.config})",
        "saved": result.saved,
        "steps": result.steps,
        "examples": result.examples,
        "trained examples": result.trained_examples,
        "dropped": result.dropped or {"none": 0},
        "truncated (kept, completion cut at max_length)": result.truncated,
        "max length": settings.max_length,
        "tokens seen (no padding)": result.tokens_seen,
        "completion tokens per epoch": result.completion_tokens,
        "train loss (mean)": round(result.train_loss, 4),
        "eval loss": None if result.eval_loss is None else round(result.eval_loss, 4),
        "eval examples": result.eval_examples,
        "eval dropped": result.eval_dropped or {"none": 0},
    }
    write_report(out, "SFT", summary, curves, {"loss.png": (["train loss", "eval loss"], "loss")})
