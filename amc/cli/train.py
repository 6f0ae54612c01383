"""`amc train`: fine-tuning on the datasets amc builds (critic and actor SFT, CTRL-style GRPO of a critic).

Settings follow TRL's config-file convention: the pipeline file's ``train:`` block fills
:class:`amc.trainconfig.TrainConfig`, ``--set KEY=VALUE`` (keys inside the block, e.g. ``grpo.beta=0.1``) and the
named options override it, and an unknown key is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from amc.cli.common import app, fail
from amc.errors import AmcError

train_app = typer.Typer(no_args_is_help=True, help="Train a critic or an actor on amc data (TRL SFT or GRPO).")
app.add_typer(train_app, name="train")

DataOpt = Annotated[
    str | None, typer.Option("--data", help="Run directory, published folder, Hub dataset id, or .parquet/.jsonl file.")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Base model: a named model, a local folder or a Hub id.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Where the model, report and record go.")]
PipelineOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline file whose train: block to use.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key of the train: block: --set epochs=2")]
LoraOpt = Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapter, or every weight.")]
MergeOpt = Annotated[bool | None, typer.Option("--merge", help="LoRA: save the merged full model.")]
EpochsOpt = Annotated[float | None, typer.Option("--epochs")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate.")]
MaxLenOpt = Annotated[int | None, typer.Option("--max-length", help="Tokens of prompt+completion kept.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Per device.")]
StepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")]
SeedOpt = Annotated[int | None, typer.Option("--seed")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Use the first N examples only.")]
SaveOpt = Annotated[int | None, typer.Option("--save-steps", help="Write a checkpoint every N steps.")]
ResumeOpt = Annotated[bool | None, typer.Option("--resume", help="Resume from the latest checkpoint in --output.")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="auto (bf16 where available), float32, bfloat16.")]
EvalOpt = Annotated[bool | None, typer.Option("--eval/--no-eval", help="Evaluate on the test split if any.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines.")]


def _settings(target: str, pipeline: Path | None, overrides: list[str] | None, options: dict[str, Any]):
    """The pipeline file's train: block, then --set, then the named options given on the command line."""
    from pydantic import ValidationError

    from amc.config import apply_overrides, load_config
    from amc.train.sft import SFTSettings

    cfg = load_config(pipeline) if pipeline is not None else None
    values: dict[str, Any] = cfg.train.model_dump(exclude_unset=True) if cfg is not None else {}
    values = apply_overrides(values, overrides or [])
    values.update({k: v for k, v in options.items() if v is not None})
    values["config"] = "sft_critic" if target == "critic" else "sft_refine"
    if target == "critic" and values.get("include_correct_paths"):
        raise AmcError("--correct-paths adds solve examples: it is for `amc train actor`, not a critic")
    if cfg is not None and not values.get("data"):
        values["data"] = str(cfg.run_path)  # the pipeline's own run directory
    where = f"{pipeline} (train:)" if pipeline is not None else "command line"
    for key in ("model", "data", "output_dir"):
        if not values.get(key):
            flag = {"output_dir": "--output"}.get(key, f"--{key}")
            raise AmcError(f"{where}: no {key}; give {flag} or set train.{key} in the pipeline file")
    try:
        return cfg, SFTSettings.model_validate(values)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc'])}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        ]
        raise AmcError(f"{where}: {'; '.join(lines)}") from None


def _run(target: str, pipeline: Path | None, overrides: list[str] | None, actor: str | None, **options: Any) -> None:
    try:
        cfg, settings = _settings(target, pipeline, overrides, options)
        if settings.method == "grpo":
            if target != "critic":
                raise AmcError("GRPO (CTRL) trains critics: use `amc train critic --method grpo`")
            from amc.train.grpo import resolve_actor, train_grpo

            if actor is not None:
                settings = settings.model_copy(update={"grpo": settings.grpo.model_copy(update={"actor": actor})})
            grpo = train_grpo(settings, resolve_actor(settings.grpo.actor, cfg.models if cfg is not None else None))
        else:
            if actor is not None:
                raise AmcError("--actor is the fixed actor of GRPO; SFT needs none")
            from amc.train.sft import train_sft

            result = train_sft(settings)
    except ImportError as exc:
        fail(AmcError(f"{exc}; install the training extra: pip install -e '.[train]'"))
    except AmcError as exc:
        fail(exc)
    if settings.method == "grpo":
        typer.echo(grpo.summary_line())
    else:
        _echo_sft(result, str(settings.data), settings.config)


def _echo_sft(result: Any, data: str, config: str) -> None:
    logged = (
        f"loss {result.losses[0][1]:.4f} (step {result.losses[0][0]}) -> {result.losses[-1][1]:.4f} "
        f"(step {result.losses[-1][0]}), "
        if result.losses
        else ""
    )
    typer.echo(
        f"trained {result.steps} step(s) on {result.trained_examples} example(s) of {data} ({config}): "
        f"{logged}mean train loss {result.train_loss:.4f}"
    )
    for reason, n in result.dropped.items():
        typer.echo(f"dropped {n} example(s): {reason}")
    if result.eval_loss is not None:
        typer.echo(f"eval loss {result.eval_loss:.4f} on {result.evaluated_examples} test example(s)")
    for reason, n in result.eval_dropped.items():
        typer.echo(f"dropped {n} test example(s) from the evaluation: {reason}")
    typer.echo(
        f"saved {result.saved} and tokenizer to {result.output_dir} "
        f"(record: {result.output_dir / 'amc_train.json'}, report: {result.output_dir / 'report.md'})"
    )


def _command(target: str, help_text: str):
    def command(
        data: DataOpt = None,
        model: ModelOpt = None,
        output: OutputOpt = None,
        pipeline: PipelineOpt = None,
        overrides: SetOpt = None,
        method: Annotated[str | None, typer.Option("--method", help="sft, or grpo (critic only, CTRL).")] = None,
        actor: Annotated[
            str | None, typer.Option("--actor", help="GRPO: the fixed actor, a role of the pipeline or ENGINE:MODEL.")
        ] = None,
        lora: LoraOpt = None,
        merge: MergeOpt = None,
        epochs: EpochsOpt = None,
        lr: LrOpt = None,
        max_length: MaxLenOpt = None,
        batch_size: BatchOpt = None,
        max_steps: StepsOpt = None,
        seed: SeedOpt = None,
        limit: LimitOpt = None,
        save_steps: SaveOpt = None,
        resume: ResumeOpt = None,
        dtype: DtypeOpt = None,
        eval_: EvalOpt = None,
        correct_paths: Annotated[
            bool | None, typer.Option("--correct-paths", help="Actor: also train on the correct paths.")
        ] = None,
        quiet: QuietOpt = False,
    ) -> None:
        _run(
            target,
            pipeline,
            overrides,
            actor,
            data=data,
            model=model,
            output_dir=output,
            method=method,
            lora=lora,
            merge=merge,
            epochs=epochs,
            learning_rate=lr,
            max_length=max_length,
            batch_size=batch_size,
            max_steps=max_steps,
            seed=seed,
            limit=limit,
            save_steps=save_steps,
            resume=resume,
            dtype=dtype,
            eval=eval_,
            include_correct_paths=correct_paths,
            show_progress=False if quiet else None,
        )

    command.__doc__ = help_text
    return command


train_app.command("critic")(
    _command(
        "critic",
        "Train a critic: SFT on sft_critic (question and steps -> step-level critique), or --method grpo (CTRL).",
    )
)
train_app.command("actor")(
    _command("actor", "Train an actor: SFT on sft_refine (path and critique -> correct solution), --correct-paths.")
)


@train_app.command("sft")
def train_sft_command(
    data: Annotated[
        str, typer.Option("--data", help="Run directory, published folder, Hub id or prompt/completion file.")
    ],
    model: Annotated[str, typer.Option("--model", help="Base model: a named model, a local folder or a Hub id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the model and amc_train.json go.")],
    config: Annotated[str, typer.Option("--config", help="sft_critic or sft_refine.")] = "sft_critic",
    revision: Annotated[str | None, typer.Option("--revision", help="Dataset revision, e.g. v0.1.0.")] = None,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N steps.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Per device.")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens of prompt+completion kept.")] = 2048,
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter instead of every weight.")] = False,
    lora_r: Annotated[int, typer.Option("--lora-r")] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha")] = 32,
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16.")] = "auto",
    checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Less memory, slower.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Train on the first N examples only.")] = None,
    eval_: Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate on the test split if any.")] = True,
    logging_steps: Annotated[int, typer.Option("--logging-steps")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines.")] = False,
) -> None:
    """Supervised fine-tuning on any prompt/completion config (TRL SFTTrainer); see also `amc train critic|actor`."""
    from pydantic import ValidationError

    try:
        from amc.train.sft import SFTSettings, train_sft

        settings = SFTSettings(
            model=model,
            data=data,
            output_dir=output,
            config=config,
            revision=revision,
            epochs=epochs,
            max_steps=max_steps,
            learning_rate=lr,
            batch_size=batch_size,
            gradient_accumulation_steps=grad_accum,
            max_length=max_length,
            lora=lora,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            dtype=dtype,
            seed=seed,
            gradient_checkpointing=checkpointing,
            limit=limit,
            eval=eval_,
            logging_steps=logging_steps,
            show_progress=not quiet,
        )
        result = train_sft(settings)
    except ValidationError as exc:
        fail(AmcError(str(exc)))
    except ImportError as exc:
        fail(AmcError(f"{exc}; install the training extra: pip install -e '.[train]'"))
    except AmcError as exc:
        fail(exc)
    _echo_sft(result, data, config)
