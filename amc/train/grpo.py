"""CTRL: a critic trained with GRPO to write critiques after which a fixed actor corrects the path.

Prompts are the critic prompts (``critic.jinja``: question and numbered steps, no hints) of reasoning paths from a
run directory or a publication's ``paths`` config, flawed and correct in equal numbers. For each prompt TRL's
``GRPOTrainer`` samples a group of critiques; each is scored by the reward components of :mod:`amc.train.rewards`
(correction by the fixed actor through any amc engine and the request cache, verdict, first error, format),
weighted by ``train.grpo.rewards``. Start from an SFT critic (``amc train critic``) or a base model.

Beside the model: ``rewards.jsonl`` (every reward of every sampled critique, by step and component),
``amc_train.json`` and the report (``rewards.png``: each component's mean per step).

>>> result = train_grpo(SFTSettings(method="grpo", model="critics/sft", data="runs/quickstart",
...                                 output_dir="critics/grpo"), resolve_actor("sim", None))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from amc.config import ModelConfig, Models
from amc.errors import AmcError
from amc.train.common import (
    last_checkpoint,
    lora_config,
    quiet_libraries,
    resolve_base_model,
    save_model,
    trainer_args,
    write_record,
)
from amc.train.data import TrainError, source_kind
from amc.train.report import curves_from_history, write_report
from amc.train.rewards import CorrectionJudge, RewardComponent, mean_by_step
from amc.train.sft import SFTSettings

REWARD_LOG = "rewards.jsonl"


@dataclass(frozen=True)
class GRPOResult:
    """What a GRPO run produced; ``rewards`` is each component's mean reward per step (from ``rewards.jsonl``)."""

    output_dir: Path
    steps: int
    prompts: int
    flawed: int
    correct: int
    rewards: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    actor: dict[str, Any] = field(default_factory=dict)
    actor_requests: dict[str, int] = field(default_factory=dict)
    saved: str = "model"

    def summary_line(self) -> str:
        parts = [
            f"{name} {pts[0][1]:.3f} (step {pts[0][0]}) -> {pts[-1][1]:.3f} (step {pts[-1][0]})"
            for name, pts in self.rewards.items()
            if pts
        ]
        return (
            f"GRPO: {self.steps} step(s) on {self.prompts} path(s) ({self.flawed} flawed, {self.correct} correct); "
            f"mean reward {'; '.join(parts) or 'none logged'}\nsaved {self.saved} and tokenizer to {self.output_dir} "
            f"(rewards: {self.output_dir / REWARD_LOG}, report: {self.output_dir / 'report.md'})"
        )


def resolve_actor(spec: str | dict[str, Any], models: Models | None) -> ModelConfig:
    """The fixed actor's model block: a whole block, ``ENGINE`` or ``ENGINE:MODEL`` (``sim``,
    ``transformers:DIR``, ``vllm:DIR``, ``openai:MODEL``), or a role of the pipeline file's models.

    >>> resolve_actor("transformers:tiny-llama", None).engine
    'transformers'
    """
    from amc.backends import ENGINES

    if isinstance(spec, dict):
        return ModelConfig.model_validate(spec)
    engine, _, model = spec.partition(":")
    if engine in ENGINES:
        if engine != "sim" and not model:
            raise AmcError(f"actor '{spec}': name the model, e.g. {engine}:smollm2-135m-instruct")
        return ModelConfig(engine=engine, model=model or "sim")  # type: ignore[arg-type]
    if models is None:
        raise AmcError(f"actor '{spec}' is a role of a pipeline file: give --config FILE, or ENGINE:MODEL")
    if spec not in Models.model_fields:
        raise AmcError(f"actor '{spec}': no such role in models ({', '.join(Models.model_fields)}) nor an engine")
    block = getattr(models, spec)
    return block if block is not None else models.for_role(spec)


# ----------------------------------------------------------------------------------------------- prompts
def path_rows(data: str, settings: SFTSettings) -> list[dict[str, Any]]:
    """Reasoning paths of a run directory or a publication (train split), as plain dicts."""
    kind = source_kind(data)
    if kind == "file":
        raise TrainError(f"{data}: GRPO needs reasoning paths (a run directory or a publication), not an SFT file")
    if kind == "run":
        from amc.config import PipelineConfig
        from amc.publish.exports import read_run, split_of

        cfg = PipelineConfig.model_validate({"name": "run", "run_dir": data, "prompts_dir": settings.prompts_dir})
        paths = [p.model_dump() for p in read_run(cfg).paths]
        return [p for p in paths if split_of(p["problem_id"], settings.test_fraction) == "train"]
    from amc.publish import load

    return list(load(data, "paths", settings.revision, split="train"))


def balanced(paths: list[dict[str, Any]], seed: int, limit: int | None, balance: bool) -> list[dict[str, Any]]:
    """Flawed and correct paths in equal numbers (when ``balance``), chosen by a seeded hash, interleaved."""

    def order(p: dict[str, Any]) -> str:
        return hashlib.sha256(f"{seed}\x1f{p['id']}".encode()).hexdigest()

    usable = [p for p in paths if p["steps"] and p["strategy"] != "reference"]
    flawed = sorted((p for p in usable if not p["correct"]), key=order)
    correct = sorted((p for p in usable if p["correct"]), key=order)
    if balance:
        n = min(len(flawed), len(correct))
        flawed, correct = flawed[:n], correct[:n]
    mixed = [p for pair in zip(flawed, correct, strict=False) for p in pair]
    rest = flawed[len(correct) :] + correct[len(flawed) :]
    chosen = mixed + rest
    return chosen[:limit] if limit else chosen


def prompt_dataset(paths: list[dict[str, Any]], prompts_dir: str | None):
    """A ``datasets.Dataset``: the critic prompt of each path, with the columns the rewards read."""
    import datasets

    from amc.prompts import load_template

    critic = load_template("critic", prompts_dir)
    rows = [
        {
            "prompt": [
                {"role": m.role, "content": m.content} for m in critic.render(question=p["question"], steps=p["steps"])
            ],
            "path_id": p["id"],
            "question": p["question"],
            "reference_answer": p["reference_answer"],
            "steps": list(p["steps"]),
            "path_correct": bool(p["correct"]),
            "error_step": p["error_step"],
        }
        for p in paths
    ]
    features = datasets.Features(
        {
            "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
            "path_id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "reference_answer": datasets.Value("string"),
            "steps": [datasets.Value("string")],
            "path_correct": datasets.Value("bool"),
            "error_step": datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


# ----------------------------------------------------------------------------------------------- training
def train_grpo(settings: SFTSettings, actor: ModelConfig) -> GRPOResult:
    """GRPO of the critic ``settings.model`` against the fixed ``actor``; save, record and report it."""
    from amc.backends import create
    from amc.engine.cache import CachedBackend, RequestCache

    g = settings.grpo
    weights = g.rewards.active()
    if not weights:
        raise TrainError("every reward weight is 0: set at least one of train.grpo.rewards")
    if settings.batch_size % g.num_generations:
        raise TrainError(
            f"batch_size ({settings.batch_size}) must be a multiple of grpo.num_generations ({g.num_generations}): "
            f"each step scores whole groups of critiques"
        )
    quiet_libraries(not settings.show_progress)
    settings = settings.model_copy(update={"model": resolve_base_model(settings.model)})
    paths = balanced(path_rows(settings.data, settings), settings.seed, g.max_prompts or settings.limit, g.balance)
    if not paths:
        raise TrainError(f"{settings.data}: no reasoning path with steps to critique")
    dataset = prompt_dataset(paths, settings.prompts_dir)

    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / REWARD_LOG
    if not last_checkpoint(settings):
        log_path.unlink(missing_ok=True)  # a fresh run; a resumed one appends
    cache = RequestCache(Path(g.cache) if g.cache else out / "requests.sqlite")
    backend = CachedBackend(
        None,
        cache,
        factory=lambda: create(actor),
        engine=actor.engine,
        model=actor.model,
        revision=actor.revision,
        identity=actor.identity(),
    )
    judge = None
    if "correction" in weights:
        s = g.refine_sampling
        judge = CorrectionJudge(
            backend.generate,
            seed=settings.seed,
            refinements=g.refinements,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            min_refinement_steps=g.min_refinement_steps,
            prompts_dir=settings.prompts_dir,
        )
    funcs = [RewardComponent(name, judge if name == "correction" else None, log_path) for name in weights]
    try:
        trainer = _trainer(settings, dataset, funcs, list(weights.values()))
        trainer.train(resume_from_checkpoint=last_checkpoint(settings))
        saved = save_model(trainer, out, lora=settings.lora, merge=settings.merge)
    finally:
        if backend.started:
            backend.close()
        cache.close()

    rewards = mean_by_step(log_path)
    result = GRPOResult(
        output_dir=out,
        steps=int(trainer.state.global_step),
        prompts=len(paths),
        flawed=sum(not p["correct"] for p in paths),
        correct=sum(bool(p["correct"]) for p in paths),
        rewards={k: rewards[k] for k in weights if k in rewards},
        actor={"engine": actor.engine, "model": actor.model, "revision": actor.revision},
        actor_requests={"made": backend.made, "cached": backend.cached, "failed": backend.failed},
        saved=saved,
    )
    identity = {"source": settings.data, "kind": source_kind(settings.data), "config": "paths", "prompts": len(paths)}
    write_record(out, settings, identity, {k: v for k, v in asdict(result).items() if k != "output_dir"})
    if settings.report:
        _report(out, settings, result, trainer.state.log_history, weights)
    return result


def _trainer(settings: SFTSettings, dataset, funcs: list[RewardComponent], weights: list[float]):
    import trl
    from transformers import AutoTokenizer, PrinterCallback

    tokenizer = AutoTokenizer.from_pretrained(settings.model, revision=settings.model_revision)
    if not tokenizer.chat_template:
        raise TrainError(f"{settings.model} has no chat template; the critic prompts are conversations")
    trainer = trl.GRPOTrainer(
        model=settings.model,
        reward_funcs=funcs,
        args=_grpo_config(settings, weights),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings) if settings.lora else None,
    )
    if not settings.show_progress:
        trainer.remove_callback(PrinterCallback)
    return trainer


def _grpo_config(settings: SFTSettings, weights: list[float]):
    from trl import GRPOConfig

    g = settings.grpo
    return GRPOConfig(
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        beta=g.beta,
        reward_weights=weights,
        **trainer_args(settings, GRPOConfig),
    )


def _report(out: Path, settings: SFTSettings, result: GRPOResult, history: list[dict], weights: dict) -> None:
    curves = {f"{k} reward": v for k, v in result.rewards.items()}
    curves.update(curves_from_history(history, {"loss": "loss", "kl": "kl", "total reward (TRL)": "reward"}))
    summary = {
        "method": "grpo (CTRL)",
        "model": settings.model,
        "data": settings.data,
        "actor": f"{result.actor['engine']}:{result.actor['model']}",
        "actor requests": result.actor_requests,
        "saved": result.saved,
        "steps": result.steps,
        "prompts": f"{result.prompts} ({result.flawed} flawed, {result.correct} correct)",
        "group size": settings.grpo.num_generations,
        "kl coefficient": settings.grpo.beta,
        "learning rate": settings.learning_rate,
        "reward weights": weights,
    }
    plots = {
        "rewards.png": ([f"{k} reward" for k in result.rewards], "mean reward per step"),
        "loss.png": (["loss", "kl"], "loss / kl"),
    }
    write_report(out, "GRPO critic", summary, curves, plots)
