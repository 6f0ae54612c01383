"""The ``amc`` command line: thin. It parses, loads the pipeline file, calls the library and prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from amc.errors import AmcError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build step-level critique datasets for math.")
schema_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the record kinds.")
app.add_typer(schema_app, name="schema")
console = Console(stderr=True)
PIPELINES_DIR = Path(__file__).parent / "pipelines"

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Pipeline file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set stages.filter.k=2")]


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _load(config: Path, overrides: list[str] | None):
    from amc.config import load_config

    try:
        return load_config(config, overrides or [])
    except AmcError as exc:
        _fail(exc)


@app.command()
def build(
    config: ConfigOpt = Path("amc.yaml"),
    stage: Annotated[str, typer.Option("--stage", "-s", help="Build every stage up to and including it.")] = "filter",
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build the pipeline's stages up to STAGE, skipping stages that are up to date."""
    from amc.engine.runner import Runner

    cfg = _load(config, set_)
    try:
        reports = Runner(cfg, show_progress=not quiet).build(stage)
    except (AmcError, ValueError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished shards are kept in {cfg.run_path}; run the same command to resume")
        raise typer.Exit(code=130) from None
    table = Table(title=f"amc build {cfg.name}: stages up to '{stage}'")
    for col in ("stage", "action", "rows", "rejects", "dropped", "requests made", "from cache", "seconds"):
        table.add_column(col, justify="left" if col in ("stage", "action") else "right")
    for r in reports:
        table.add_row(r.name, r.action, str(r.rows), str(r.rejects), str(r.dropped), str(r.made), str(r.cached),
                      f"{r.seconds:.1f}")
    out = Console()
    out.print(table)
    if reports and reports[-1].funnel:
        out.print(_funnel_table(reports[-1].name, reports[-1].funnel))
    out.print(f"run directory: {cfg.run_path}")


def _funnel_table(stage: str, funnel: dict[str, int]) -> Table:
    table = Table(title=f"{stage} funnel")
    table.add_column("step")
    table.add_column("rows", justify="right")
    order = sorted(funnel, key=lambda k: (k != "in", k == "kept", k))  # rows in first, kept last
    for key in order:
        value = funnel[key]
        table.add_row(key.replace("dropped:", "dropped by "), str(value))
    return table


@app.command()
def status(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each stage as done, partial, stale or missing, with row counts, the funnel and request counts."""
    from amc.engine.status import run_status

    cfg = _load(config, set_)
    info = run_status(cfg)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(title=f"{cfg.name} ({info['run_dir']})")
    for col in ("stage", "state", "shards", "rows", "rejects", "dropped", "requests made", "from cache"):
        table.add_column(col)
    for name, s in info["stages"].items():
        req = s.get("requests", {})
        table.add_row(name, s["state"], s.get("shards", ""), str(s.get("rows", "")), str(s.get("rejects", "")),
                      str(s.get("dropped", "")), str(req.get("made", "")), str(req.get("cached", "")))
    out = Console()
    out.print(table)
    for name, s in info["stages"].items():
        if s.get("funnel") and name in ("sample", "inject", "critique", "filter"):
            out.print(_funnel_table(name, s["funnel"]))
    if info["building"]:
        out.print("a build is running in this run directory now: partial stages are being written")
    if info["last_build"]:
        req = info["last_build"]["requests"]
        out.print(f"last build: {req['made']} engine requests made, {req['cached']} served from the cache")


@app.command()
def init(
    template: Annotated[str, typer.Option("--template", "-t", help="One of the ready pipelines.")] = "quickstart",
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("amc.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented amc.yaml from one of the ready pipelines."""
    src = PIPELINES_DIR / f"{template}.yaml"
    if not src.is_file():
        names = sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml"))
        _fail(AmcError(f"no pipeline template '{template}'; choose one of: {', '.join(names)}"))
    if output.exists() and not force:
        _fail(AmcError(f"{output} exists; pass --force to overwrite it"))
    output.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    typer.echo(f"wrote {output} from the '{template}' pipeline; run `amc build --stage filter`")


@app.command()
def verify(gold: str, pred: str) -> None:
    """Print true (exit 0) when PRED is mathematically equivalent to GOLD, else false (exit 1)."""
    from amc.answers import verify as _verify

    same = _verify(gold, pred)
    typer.echo("true" if same else "false")
    if not same:
        raise typer.Exit(code=1)


@schema_app.command("export")
def schema_export(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the schemas.")] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every record kind into DIR."""
    from amc.schemas import export_schemas

    for path in export_schemas(directory):
        typer.echo(f"wrote {path}")


@schema_app.command("check")
def schema_check(directory: Annotated[Path, typer.Option("--dir")] = Path("schemas")) -> None:
    """Exit non-zero when the schemas in DIR differ from the records."""
    from amc.schemas import schema_drift

    drift = schema_drift(directory)
    if drift:
        typer.echo("out of date: " + ", ".join(drift) + " (run `amc schema export`)", err=True)
        raise typer.Exit(code=1)
    typer.echo("schemas are up to date")


# --------------------------------------------------------------------------------------------- releases
TestFractionOpt = Annotated[float, typer.Option("--test-fraction", help="Share of problems in the test split.")]
RejectsOpt = Annotated[bool, typer.Option("--rejects/--no-rejects", help="Also export every stage's rejects.")]
LicenseOpt = Annotated[str, typer.Option("--license", help="License id for the card (the sources' terms apply).")]


def _publication(cfg, test_fraction: float, rejects: bool, license_: str, repo_id: str | None = None):
    from amc.publish import ExportOptions, build_publication

    try:
        options = ExportOptions(test_fraction=test_fraction, include_rejects=rejects, license=license_)
        return build_publication(cfg, options, repo_id=repo_id)
    except AmcError as exc:
        _fail(exc)


def _warn_if_empty(pub) -> None:
    if "filtered" not in pub.splits:
        console.print("[yellow]warning:[/] the filter kept no critique: this version has no filtered, sft_critic or "
                      "sft_refine config (see `amc status` for the funnel)")


def _report_local(result, pub) -> None:
    _warn_if_empty(pub)
    if result.no_op:
        typer.echo(f"up to date: {result.directory} already holds {pub.name} {pub.tag} "
                   f"(fingerprint {pub.fingerprint}); nothing written")
        return
    typer.echo(f"wrote {len(result.written)} file(s), deleted {len(result.deleted)} stale, "
               f"{len(result.unchanged)} unchanged in {result.directory}")
    typer.echo(f"{pub.name} {pub.tag}, fingerprint {pub.fingerprint}: "
               + ", ".join(f"{c} ({'/'.join(f'{n} {s}' for s, n in splits.items())})"
                           for c, splits in pub.splits.items()))


@app.command()
def export(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder; default <run_dir>/export.")] = None,
    test_fraction: TestFractionOpt = 0.1,
    rejects: RejectsOpt = False,
    license_: LicenseOpt = "mit",
) -> None:
    """Lay out the built run as one dataset repository (configs, plots, card) in the Hub's folder layout."""
    from amc.publish import publish_local

    cfg = _load(config, set_)
    pub = _publication(cfg, test_fraction, rejects, license_)
    try:
        _report_local(publish_local(pub, out or cfg.run_path / "export"), pub)
    except AmcError as exc:
        _fail(exc)


@app.command()
def publish(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    repo_id: Annotated[str | None, typer.Option("--repo-id", help="Hub dataset repository, ORG/NAME.")] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Write the same layout into this folder instead.")] = None,
    revision: Annotated[str, typer.Option("--revision", help="Branch to commit to.")] = "main",
    tag: Annotated[str | None, typer.Option("--tag", help="Tag the commit, e.g. v0.1.0; never moved.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Folder only: replace other data of the same version.")
                     ] = False,
    test_fraction: TestFractionOpt = 0.1,
    rejects: RejectsOpt = False,
    license_: LicenseOpt = "mit",
) -> None:
    """Publish the dataset version to the Hub (one commit, then a tag) or to a folder; unchanged data is a no-op.

    The token comes from HF_TOKEN in the environment only.
    """
    import re

    from amc.publish import publish_hub, publish_local

    if (repo_id is None) == (to is None):
        _fail(AmcError("give exactly one of --repo-id ORG/NAME (the Hub) or --to DIR (a folder)"))
    cfg = _load(config, set_)
    if tag is not None:
        if to is not None:
            _fail(AmcError("--tag applies to the Hub; a folder records its version in amc_version.json"))
        if re.fullmatch(r"v?\d+\.\d+\.\d+.*", tag) and tag.removeprefix("v") != cfg.version:
            _fail(AmcError(f"tag {tag} does not match the dataset version {cfg.version} in {config}; "
                           f"bump `version:` there first"))
    pub = _publication(cfg, test_fraction, rejects, license_, repo_id=repo_id)
    if to is not None:
        try:
            _report_local(publish_local(pub, to, force=force), pub)
        except AmcError as exc:
            _fail(exc)
        return
    assert repo_id is not None
    try:
        _warn_if_empty(pub)
        result = publish_hub(pub, repo_id, revision=revision, tag=tag, private=private)
    except AmcError as exc:
        _fail(exc)
    except Exception as exc:  # HTTP and network errors (after retries): show the message, not a traceback
        if type(exc).__module__.split(".")[0] in ("huggingface_hub", "httpx", "httpx2"):
            _fail(exc)
        raise
    if result.no_op:
        typer.echo(f"up to date: {repo_id}@{revision} already holds {pub.name} {pub.tag} "
                   f"(fingerprint {pub.fingerprint}); no commit made")
        return
    if result.commit:
        typer.echo(f"committed {result.commit[:12]} to {repo_id}@{revision}: {len(result.uploaded)} file(s) changed, "
                   f"{len(result.deleted)} stale deleted (fingerprint {pub.fingerprint})")
    else:
        typer.echo(f"{repo_id}@{revision} already holds this content; no commit made")
    if result.tag_created:
        typer.echo(f"tagged {result.head[:12]} as {tag}")



# --------------------------------------------------------------------------------------------- training
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
            model=model, data=data, output_dir=output, config=config, revision=revision, epochs=epochs,
            max_steps=max_steps, learning_rate=lr, batch_size=batch_size, gradient_accumulation_steps=grad_accum,
            max_length=max_length, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, dtype=dtype, seed=seed,
            gradient_checkpointing=checkpointing,
            limit=limit, eval=eval_, logging_steps=logging_steps, show_progress=not quiet,
        )
        result = train_sft(settings)
    except ValidationError as exc:
        _fail(AmcError(str(exc)))
    except ImportError as exc:
        _fail(AmcError(f"{exc}; install the training extra: pip install -e '.[train]'"))
    except AmcError as exc:
        _fail(exc)
    logged = (f"loss {result.losses[0][1]:.4f} (step {result.losses[0][0]}) -> {result.losses[-1][1]:.4f} "
              f"(step {result.losses[-1][0]}), " if result.losses else "")
    typer.echo(f"trained {result.steps} step(s) on {result.trained_examples} example(s) of {data} ({config}): "
               f"{logged}mean train loss {result.train_loss:.4f}")
    if result.eval_loss is not None:
        typer.echo(f"eval loss {result.eval_loss:.4f} on {result.eval_examples} test example(s)")
    typer.echo(f"saved {'LoRA adapter' if lora else 'model'} and tokenizer to {result.output_dir} "
               f"(record: {result.output_dir / 'amc_train.json'})")

def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    app()
