"""The pipeline file: pydantic models of a YAML file, with ``--set a.b=c`` overrides.

An unknown key is an error that names its dotted path, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amc.errors import ConfigError
from amc.loopconfig import LoopConfig, SelftrainConfig
from amc.trainconfig import TrainConfig


def __getattr__(name: str) -> Any:
    # `amc.config.STAGES` was a second list of stage names; the one registry is `amc.stages` (STAGE_NAMES). The
    # alias stays for code written against it, read lazily so that config never imports the stages at load time.
    if name == "STAGES":
        from amc.stages import STAGE_NAMES

        return STAGE_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------- sources
MAX_SYNTHETIC_STEPS = 50  # longer chains ask sympy for nested expressions no word problem needs


class SyntheticSource(Strict):
    """Multi-step arithmetic word problems with sympy-checked answers; difficulty = number of steps."""

    kind: Literal["synthetic"] = "synthetic"
    count: int = Field(default=32, ge=1)
    min_steps: int = Field(default=2, ge=1, le=MAX_SYNTHETIC_STEPS)
    max_steps: int = Field(default=5, ge=1, le=MAX_SYNTHETIC_STEPS)
    seed: int | None = Field(default=None, description="Defaults to the run seed.")

    @model_validator(mode="after")
    def _steps_range(self) -> SyntheticSource:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) must not exceed max_steps ({self.max_steps})")
        return self


class FieldMap(Strict):
    """Which field of each input row holds what. ``answer`` may be absent when ``solution`` holds it."""

    id: str | None = None
    question: str = "question"
    answer: str | None = "answer"
    solution: str | None = None
    difficulty: str | None = None
    subject: str | None = None


AnswerFormat = Literal["plain", "gsm8k", "boxed"]


class FileSource(Strict):
    """Local jsonl, json (array) or parquet file with a field mapping."""

    kind: Literal["file"] = "file"
    path: str
    format: Literal["jsonl", "json", "parquet"] | None = Field(default=None, description="Inferred from suffix.")
    fields: FieldMap = Field(default_factory=FieldMap)
    answer_format: AnswerFormat = Field(
        default="plain",
        description="How the answer field holds the answer: 'plain' as is, 'gsm8k' after '####' (the text before "
        "it is the solution), 'boxed' the last \\boxed{} of the field.",
    )
    limit: int | None = Field(default=None, ge=1)


class HubSource(Strict):
    """A Hugging Face dataset through ``datasets.load_dataset``; presets for GSM8K and MATH."""

    kind: Literal["hub"] = "hub"
    preset: Literal["gsm8k", "math", "custom"] = "custom"
    dataset: str | None = Field(default=None, description="Hub id or local path; preset default when omitted.")
    name: str | None = Field(default=None, description="Dataset config name (GSM8K: 'main').")
    split: str = "test"
    revision: str | None = None
    fields: FieldMap | None = None
    answer_format: AnswerFormat | None = None
    limit: int | None = Field(default=None, ge=1)


SourceConfig = Annotated[SyntheticSource | FileSource | HubSource, Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------- models
# Settings that change how a model is run, not what it answers: left out of request-cache keys.
OPERATIONAL_FIELDS = frozenset(
    {
        "api_key_env",
        "max_concurrency",
        "timeout",
        "max_retries",
        "retry_backoff",
        "retry_max_backoff",
        "gpu_memory_utilization",
        "tensor_parallel_size",
        "batch_size",
        "enable_prefix_caching",
        "enforce_eager",
        "max_model_len",
    }
)


SimTask = Literal["*", "solve", "inject", "continue", "critique", "refine", "rollout"]


class ModelConfig(Strict):
    """One model block. The same pipeline runs on any engine by changing this block only."""

    engine: Literal["sim", "vllm", "openai", "transformers"] = "sim"
    model: str = "sim"
    revision: str | None = None
    # sim
    error_rate: float = Field(default=0.3, ge=0.0, le=1.0, description="sim: chance a sampled path goes wrong.")
    truncate: dict[SimTask, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict,
        description="sim: per task (solve, inject, continue, critique, refine, rollout; '*' for every task), the "
        "chance a completion runs on past its answer and is cut off by max_tokens (finish_reason 'length').",
    )
    malformed: dict[SimTask, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict,
        description="sim: per task, the chance a completion is malformed: a solution without an answer, an "
        "unreadable critique, an empty rewrite.",
    )
    # vllm
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    max_model_len: int | None = None
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool = Field(default=False, description="vllm: no CUDA graphs or compilation (starts faster).")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="vllm: further keyword arguments for vllm.LLM, e.g. {swap_space: 4}."
    )
    # openai
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="Name of the environment variable holding the key.")
    max_concurrency: int = Field(default=8, ge=1)
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    supports_n: bool = True
    retry_backoff: float = Field(default=1.0, gt=0, description="openai: first retry waits about this long (s).")
    retry_max_backoff: float = Field(default=60.0, gt=0, description="openai: longest wait between retries (s).")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="openai: JSON fields added to every request, e.g. {top_k: 20}."
    )
    # transformers
    device: str = "cpu"
    batch_size: int = Field(default=8, ge=1)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # a key pasted here by mistake must never be echoed: the message does not repeat the value
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
            raise ValueError(
                "must be the NAME of an environment variable (e.g. OPENAI_API_KEY); the value given "
                "is not one (is it the key itself? keep keys in the environment, never in the file)"
            )
        return value

    def identity(self) -> dict[str, Any]:
        """The settings besides engine, model and revision that change what the model answers (a server's URL,
        dtype, extra request fields, the sim's error rate): part of every request-cache key. Only values that
        differ from their defaults count, so a setting added later leaves existing cache keys as they were."""
        data = self.model_dump(exclude={"engine", "model", "revision"} | OPERATIONAL_FIELDS)
        defaults = ModelConfig(engine=self.engine).model_dump()
        found = {k: v for k, v in data.items() if v != defaults.get(k)}
        if self.engine in ("vllm", "transformers"):
            from amc.models import is_named, model_key

            if is_named(self.model):  # a named model's weights change with its package version: so does the key
                found["weights"] = model_key(self.model)
        return found


class Models(Strict):
    actor: ModelConfig = Field(default_factory=ModelConfig)
    injector: ModelConfig | None = Field(default=None, description="Defaults to the actor.")
    annotator: ModelConfig = Field(default_factory=ModelConfig)
    critic: ModelConfig | None = Field(
        default=None, description="The critic of `amc loop` / `amc selftrain`; defaults to the annotator."
    )

    def for_role(self, role: str) -> ModelConfig:
        if role in ("actor", "refiner"):
            return self.actor
        if role == "injector":
            return self.injector or self.actor
        if role == "critic":
            return self.critic or self.annotator
        return self.annotator


# --------------------------------------------------------------------------------------------- stages
class Sampling(Strict):
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=1024, ge=1)


class ErrorType(Strict):
    name: str
    description: str
    example: str = ""


DEFAULT_ERROR_TYPES: list[ErrorType] = [
    ErrorType(name="calculation", description="An arithmetic result is computed wrongly.", example="12 * 4 = 46"),
    ErrorType(
        name="wrong_operation",
        description="The wrong operation is applied to the right numbers.",
        example="adds the discount instead of subtracting it",
    ),
    ErrorType(
        name="misread_quantity",
        description="A number from the question is copied wrongly.",
        example="uses 15 apples where the question says 51",
    ),
    ErrorType(
        name="missing_condition",
        description="A condition of the question is ignored.",
        example="forgets that two of the eggs were broken",
    ),
    ErrorType(
        name="wrong_formula", description="A wrong formula or rule is used.", example="area of a circle = 2 * pi * r"
    ),
    ErrorType(
        name="logical_leap",
        description="A conclusion that does not follow from the previous steps.",
        example="so the train must arrive first",
    ),
    ErrorType(
        name="units_or_percentages",
        description="Units or percentages are mishandled.",
        example="20% of 50 = 20 * 50 = 1000",
    ),
    ErrorType(name="sign", description="A sign error.", example="5 - 8 = 3"),
]


KDistribution = Literal["uniform", "early", "late"]
"""How step k is drawn among a path's candidate steps: ``uniform``; ``early`` with weight m - i for the i-th of m
candidates (the first step m times as likely as the last); ``late`` with weight i + 1 (the mirror image)."""


class SampleStage(Strict):
    """RG1: n samples per problem from each actor; every path is split into steps and graded."""

    enabled: bool = Field(default=True, description="Off: no sampling (reference paths are still passed on).")
    n: int = Field(default=4, ge=1, description="Samples per problem and per actor, in one request each.")
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))
    template: str = "solve"
    actors: list[ModelConfig] = Field(
        default_factory=list,
        description="Model blocks that sample, each n paths per problem; empty: just models.actor. With more than "
        "one, path ids read '<problem>/sample/a<actor index>-<sample index>' and generator names the model.",
    )
    reference: bool = Field(
        default=False,
        description="Also pass each problem's reference solution on as a correct path (strategy 'reference', "
        "error_step -1) when the source has one; the symbolic strategy can perturb it.",
    )


class ResampleStrategy(Strict):
    """RG2: keep the steps before k of a correct path, let the actor (models.actor) continue at a high
    temperature; keep the path when its final answer turns wrong. The error step is the first step at or after k
    that differs from the correct path (k itself unless the actor repeated step k word for word)."""

    enabled: bool = True
    per_problem: int = Field(default=1, ge=0, description="Continuations per problem that has a correct path.")
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=1.0))
    k_distribution: KDistribution = Field(default="uniform", description="How the resampled step is drawn.")


PerturbMode = Literal["result", "operand", "operator"]
DEFAULT_PERTURB_MODES: list[PerturbMode] = ["result"]


class SymbolicStrategy(Strict):
    """Symbolic injection, no model: perturb an arithmetic claim of step k of a correct path (amc.perturb)."""

    enabled: bool = True
    per_problem: int = Field(default=1, ge=0, description="Perturbed paths per problem that has a correct path.")
    carry: bool = Field(
        default=True,
        description="Carry the wrong value through the later steps (the final answer turns wrong; a path whose "
        "answer stays right is rejected); false: later steps stay as they were (a wrong step, a right answer).",
    )
    base: Literal["auto", "sample", "reference"] = Field(
        default="auto",
        description="Which correct paths to perturb: 'reference' solutions (needs stages.sample.reference), "
        "'sample'd paths, or 'auto': the reference when the problem has one, else sampled paths.",
    )
    modes: list[PerturbMode] = Field(
        default_factory=lambda: list(DEFAULT_PERTURB_MODES),
        min_length=1,
        description="Mistakes to make, one drawn per path (amc.perturb): 'result' a wrong result (error_type "
        "'calculation'), 'operand' a wrong number on the left, result kept ('misread_quantity'; it changes no "
        "later value, so with carry the answer stays right), 'operator' a swapped operator with a consistent "
        "result ('wrong_operation').",
    )
    k_distribution: KDistribution = Field(default="uniform", description="How the perturbed step is drawn.")


class InjectStage(Strict):
    """Flawed paths from correct ones. The top-level keys are RG3 (the injector rewrites step k with a named error
    type, the actor continues); ``resample`` (RG2) and ``symbolic`` are strategies with their own blocks. The stage
    passes its input paths on, then deduplicates and balances everything it outputs."""

    enabled: bool = Field(default=True, description="RG3 on or off (resample and symbolic have their own switch).")
    per_problem: int = Field(default=1, ge=0, description="Injected paths per problem that has a correct path.")
    error_types: list[ErrorType] = Field(default_factory=lambda: list(DEFAULT_ERROR_TYPES))
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))
    template: str = "inject"
    k_distribution: KDistribution = Field(default="uniform", description="How the rewritten step is drawn.")
    resample: ResampleStrategy = Field(default_factory=ResampleStrategy)
    symbolic: SymbolicStrategy = Field(default_factory=SymbolicStrategy)
    dedup: bool = Field(
        default=True,
        description="Drop a path whose normalised text (lowercase, single spaces, one step per line) repeats an "
        "earlier path of the same problem; the first one is kept (input paths before constructed ones).",
    )
    balance: float | None = Field(
        default=None,
        ge=0.0,
        description="Target correct:flawed ratio: within each (source, strategy), correct paths beyond "
        "floor(balance * flawed paths) are dropped, chosen by a seeded hash of their ids; None keeps all. A path "
        "is flawed when its answer is wrong or it has a known error step.",
    )


class CritiqueHints(Strict):
    """What the annotator is told besides the path. A critic trained on the result never sees any of it."""

    reference_answer: bool = Field(default=True, description="The reference final answer.")
    reference_solution: bool = Field(
        default=False, description="The reference solution, when the source has one (SCRIT's contrastive mode)."
    )
    error_location: bool = Field(default=True, description="The known first error step and type (RG2, RG3).")
    verifier_feedback: bool = Field(
        default=False, description="The findings of the symbolic step checks (CTRL-style verifier feedback)."
    )
    stop_at_first_error: bool = Field(default=False, description="Ask to stop critiquing at the first error.")


class CritiqueStage(Strict):
    """The annotator critiques each path step by step, in the AutoMathCritique text format or as JSON."""

    n: int = Field(default=1, ge=1)
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.0))
    format: Literal["text", "json"] = Field(
        default="text", description="'json' asks for JSON with a schema (guided decoding / response_format)."
    )
    template: str | None = Field(default=None, description="Default: 'critique' (text) or 'critique_json'.")
    hints: CritiqueHints = Field(default_factory=CritiqueHints)
    include_correct_paths: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of correct paths that are critiqued too."
    )
    max_parse_retries: int = Field(default=1, ge=0, description="Resample an unparsable critique this often.")
    explanation_chars: int | None = Field(
        default=160,
        ge=20,
        description="Length budget of each explanation, stated in the prompt and, for 'json', enforced by the schema "
        "(maxLength; the list of steps is bounded by the path's step count too); null: no budget.",
    )

    @property
    def template_name(self) -> str:
        return self.template or ("critique_json" if self.format == "json" else "critique")


class FilterRules(Strict):
    """Each rule is switchable; a row it drops records the rule's name as its reason."""

    verdict_matches: bool = Field(default=True, description="Final verdict agrees with the true correctness.")
    error_step_matches: bool = Field(default=False, description="First Wrong step equals a known error step.")
    error_step_tolerance: int = Field(default=0, ge=0)
    shortcut_guard: bool = Field(default=True, description="A refinement with almost no working is no success.")
    min_refinement_steps: int = Field(default=2, ge=1, description="Fewer steps than this is a shortcut.")
    deduplicate: bool = Field(default=True, description="Drop a critique whose text repeats one of the same path.")


class StepLabels(Strict):
    """Math-Shepherd per-step labels: M rollouts from each step prefix of each path."""

    enabled: bool = False
    rollouts: int = Field(default=4, ge=1, description="M rollouts per step prefix.")
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))


class FilterStage(Strict):
    """Correction-outcome filtering: N refinements per critique, keep when at least k are correct."""

    n: int = Field(default=4, ge=1, description="Refinements per critique (N).")
    k: int = Field(default=1, ge=1, description="Correct refinements needed to keep a critique.")
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))
    template: str = "refine"
    rules: FilterRules = Field(default_factory=FilterRules)
    step_labels: StepLabels = Field(default_factory=StepLabels)

    @model_validator(mode="after")
    def _k_at_most_n(self) -> FilterStage:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self


class Stages(Strict):
    sample: SampleStage = Field(default_factory=SampleStage)
    inject: InjectStage = Field(default_factory=InjectStage)
    critique: CritiqueStage = Field(default_factory=CritiqueStage)
    filter: FilterStage = Field(default_factory=FilterStage)


class PipelineConfig(Strict):
    """A whole pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    version: str = Field(default="0.1.0", pattern=r"^\d+\.\d+\.\d+([-+].*)?$", description="Dataset version.")
    description: str = ""
    seed: int = 0
    run_dir: str | None = Field(default=None, description="Defaults to runs/<name>, relative to the working dir.")
    shard_size: int = Field(default=64, ge=1, description="Rows per output shard (the unit of resume).")
    prompts_dir: str | None = Field(default=None, description="A folder of your own prompt templates.")
    source: SourceConfig | list[SourceConfig] = Field(
        default_factory=SyntheticSource, description="One source, or a list whose problems are concatenated."
    )
    models: Models = Field(default_factory=Models)
    stages: Stages = Field(default_factory=Stages)
    loop: LoopConfig = Field(default_factory=LoopConfig, description="`amc loop`: critique-in-the-loop at test time.")
    selftrain: SelftrainConfig = Field(default_factory=SelftrainConfig, description="`amc selftrain`.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="`amc train critic|actor` settings.")

    @model_validator(mode="before")
    @classmethod
    def _default_source_kind(cls, data: Any) -> Any:
        # `source: {count: 8}` means the synthetic source, as when `source` is left out.
        if isinstance(data, dict):
            src = data.get("source")
            if isinstance(src, dict) and "kind" not in src:
                data = {**data, "source": {"kind": "synthetic", **src}}
            elif isinstance(src, list):
                data = {
                    **data,
                    "source": [
                        {"kind": "synthetic", **x} if isinstance(x, dict) and "kind" not in x else x for x in src
                    ],
                }
        return data

    @field_validator("name")
    @classmethod
    def _not_a_dot_folder(cls, value: str) -> str:
        # runs/<name> must be a folder of its own: '.' and '..' would put amc's files among the user's
        if set(value) == {"."}:
            raise ValueError("a name made only of dots ('.', '..') is not allowed: it names an existing folder")
        return value

    @property
    def sources(self) -> list[SyntheticSource | FileSource | HubSource]:
        """The problem sources, in order (``source`` may be one or a list)."""
        return list(self.source) if isinstance(self.source, list) else [self.source]

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")


# --------------------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=c`` into (['a', 'b'], value); the value is read as YAML, so ``k=3`` is an int."""
    if "=" not in text:
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. stages.filter.k=2")
    key, _, raw = text.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key.strip()):
        raise ConfigError("--set", key, "keys are dotted names, e.g. stages.filter.k")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError("--set", key.strip(), f"the value is not valid YAML: {' '.join(str(exc).split())}") from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``data`` with each ``a.b=c`` applied; intermediate mappings are created as needed."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for depth, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                # never replace a list or a value silently: `source.count=8` on a list of sources is a mistake
                where = ".".join(path[: depth + 1])
                raise ConfigError(
                    "--set",
                    text,
                    f"'{where}' is a {type(nxt).__name__}, not a mapping; "
                    f"set it whole instead, e.g. --set '{where}=...'",
                )
            node = nxt
        node[path[-1]] = value
    return data


_SOURCE_KINDS = ("synthetic", "file", "hub")


def _format_validation(file: str, err: ValidationError) -> ConfigError:
    lines = []
    first_path = ""
    errors = err.errors()
    # `source` is one source or a list: an error in one form makes pydantic report the other form too; keep the
    # form the input has, and drop pydantic's internal union names from the key path
    wrong_form = {"list_type", "dict_type", "model_type", "model_attributes_type"}
    errors = [
        e
        for e in errors
        if not (e["type"] in wrong_form and len(e["loc"]) == 2 and str(e["loc"][1]).startswith(("list[", "tagged-")))
    ] or errors
    for e in errors:
        parts = [str(p) for p in e["loc"] if "[" not in str(p) and not str(p).startswith("function-")]
        # the discriminator's tag ('synthetic', 'file', 'hub') is pydantic's, not a key of the file
        parts = [p for i, p in enumerate(parts) if not (i and p in _SOURCE_KINDS and parts[i - 1] != "kind")]
        path = ".".join(parts)
        first_path = first_path or path
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}")
    error = ConfigError(file, "", "; ".join(lines))
    error.path = first_path
    return error


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline file. Errors name the file and the dotted key path.

    >>> cfg = load_config("pipelines/quickstart.yaml", ["stages.filter.k=2"])  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(p), "", "pipeline file not found (create one with `amc init`)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), "", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(str(p), "", "the top level must be a mapping")
    data = apply_overrides(data, overrides or [])
    try:
        return config_from_dict(data, str(p))
    except ConfigError as exc:
        keys = [parse_override(o)[0] for o in overrides or []]
        where = exc.path.split(".")
        if any(where[: len(k)] == k or (exc.path and k[: len(where)] == where) for k in keys):
            error = ConfigError(f"{p} (with --set)", "", exc.message)
            error.path = exc.path
            raise error from None
        raise


def config_from_dict(data: dict[str, Any], origin: str = "<config>") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(origin, exc) from None
