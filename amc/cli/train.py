"""`amc train`: fine-tuning on the datasets amc builds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import app, fail
from amc.errors import AmcError

train_app = typer.Typer(no_args_is_help=True, help="Train on a published dataset (SFT of a critic or refiner).")
app.add_typer(train_app, name="train")


@train_app.command("sft")
def train_sft_command(
    data: Annotated[str, typer.Option("--data", help="Published dataset: a folder (amc publish --to) or Hub id.")],
    model: Annotated[str, typer.Option("--model", help="Base model: a local folder or a Hub id.")],
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
    dtype: Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto.")] = "float32",
    checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Less memory, slower.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Train on the first N examples only.")] = None,
    eval_: Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate on the test split if any.")] = True,
    logging_steps: Annotated[int, typer.Option("--logging-steps")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines.")] = False,
) -> None:
    """Supervised fine-tuning on the completions of a prompt/completion config (TRL SFTTrainer)."""
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
    if result.eval_loss is not None:
        typer.echo(f"eval loss {result.eval_loss:.4f} on {result.eval_examples} test example(s)")
    typer.echo(
        f"saved {'LoRA adapter' if lora else 'model'} and tokenizer to {result.output_dir} "
        f"(record: {result.output_dir / 'amc_train.json'})"
    )
