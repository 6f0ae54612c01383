"""From a run directory to the tables of one dataset repository: one config per use, split by problem.

Configs (each a folder ``<config>/<split>-XXXXX-of-NNNNN.parquet`` in the repository):

- ``paths``       every reasoning path of the sample/inject stages, graded;
- ``critiques``   every parsed critique, flattened next to the path it judges;
- ``filtered``    the main dataset: critiques kept by correction-outcome filtering, with their refinements;
- ``sft_critic``  TRL conversational prompt/completion: the critic's prompt (question and numbered steps, never
  the annotator's hints) -> the critique;
- ``sft_refine``  prompt (question, flawed path, critique) -> a correct refinement;
- ``step_labels`` Math-Shepherd style labels, when the filter stage wrote them (``stages.filter.step_labels``);
- ``rejects``     optional: every stage's reject rows, with the stage and the reason.

Splits are made by problem: a problem's id hashes to train or test, so every row about one problem lands in the
same split, in every config and in every later version of the dataset (no test problem ever leaks into train).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from amc.config import STAGES, PipelineConfig
from amc.critique_format import render_text
from amc.engine.rundir import ManifestError, RunDir
from amc.engine.store import arrow_schema, arrow_struct, read_records
from amc.errors import AmcError
from amc.prompts import load_template
from amc.records import Critique, FilterDecision, ReasoningPath, Refinement, Reject, StepVerdict

SPLITS = ("train", "test")
CONFIG_ORDER = ("filtered", "paths", "critiques", "sft_critic", "sft_refine", "self_talk", "step_labels", "rejects")
CONFIG_DESCRIPTIONS = {
    "filtered": "The main dataset: critiques kept by correction-outcome filtering, flattened, with refinements.",
    "paths": "Every graded reasoning path (sampled, resampled, injected).",
    "critiques": "Every parsed step-level critique, before filtering.",
    "sft_critic": "TRL conversational prompt/completion for critic SFT: problem and steps -> critique.",
    "sft_refine": "TRL conversational prompt/completion for refinement SFT: path and critique -> correct solution.",
    "self_talk": "Optional (amc publish --self-talk): prompt/completion where each step is followed by its "
    "critique and, after the first wrong step, the correction and the rest of the solution.",
    "step_labels": "Per-step labels from Monte Carlo rollouts (Math-Shepherd style).",
    "rejects": "Rows a stage could not produce, with the stage and the reason.",
}
# Stages whose output becomes the ``paths`` config, latest first: ``inject`` passes the sampled paths through.
PATH_STAGES = ("inject", "sample")


class PublishError(AmcError):
    """An export or publish that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class ExportOptions:
    """Knobs of an export that are not part of the pipeline file (they shape the release, not the data)."""

    test_fraction: float = 0.1
    include_rejects: bool = False
    self_talk: bool = False  # the self_talk config (amc.loops.selftalk)
    shard_rows: int = 50_000
    license: str = "mit"
    pretty_name: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.test_fraction < 1.0:
            raise PublishError(f"test fraction must be in [0, 1), got {self.test_fraction}")
        if self.shard_rows < 1:
            raise PublishError(f"shard_rows must be at least 1, got {self.shard_rows}")


@dataclass
class RunData:
    """What an export reads from a run directory: records of the done stages and their manifests."""

    cfg: PipelineConfig
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    paths: list[ReasoningPath] = field(default_factory=list)
    critiques: list[Critique] = field(default_factory=list)
    kept: list[FilterDecision] = field(default_factory=list)
    dropped: list[FilterDecision] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    step_labels: pa.Table | None = None


def split_of(problem_id: str, test_fraction: float) -> str:
    """'test' for a stable ``test_fraction`` share of problems, else 'train'; depends on the id only.

    >>> split_of("gsm8k-train-00017", 0.0)
    'train'
    """
    digest = hashlib.sha256(f"amc-split\x1f{problem_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


# ----------------------------------------------------------------------------------------------- reading a run
def _records(stage_dir: Path, sub: str, model: type[Any]) -> list[Any]:
    return [r for f in sorted((stage_dir / sub).glob("*.parquet")) for r in read_records(f, model)]


def read_run(cfg: PipelineConfig, expected: dict[str, str] | None = None) -> RunData:
    """Read the done stages of ``cfg``'s run directory; a stale or half-built stage is an error.

    ``expected`` maps stage names to the fingerprints the current config gives them; a stage whose manifest
    differs was built from another config, so publishing it under this config's card would misstate its origin.
    """
    run_dir = cfg.run_path
    rundir = RunDir(run_dir)
    run = RunData(cfg=cfg)
    for name in dict.fromkeys([*STAGES, *(expected or {})]):
        stage_dir = run_dir / name
        try:
            manifest = rundir.read_manifest(name)
        except ManifestError as exc:
            raise PublishError(str(exc)) from None
        if manifest is None:
            continue
        if manifest.get("status") == "incomplete":
            raise PublishError(
                f"stage '{name}' in {run_dir} is incomplete: an engine outage left rows unanswered; "
                f"run `amc build` again to ask for them"
            )
        if manifest.get("status") != "done":
            raise PublishError(f"stage '{name}' in {run_dir} is not finished; run `amc build` to complete it")
        # every shard is checked against its manifest entry (bytes and sha256) before anything is published
        damaged = rundir.damaged_shards(name, manifest, full=True)
        if damaged:
            idx, what = next(iter(sorted(damaged.items())))
            raise PublishError(
                f"stage '{name}' in {run_dir} is damaged (shard {idx}: {what}); run `amc build` "
                f"to rebuild it from the cache"
            )
        if expected and name in expected and manifest.get("fingerprint") != expected[name]:
            raise PublishError(
                f"stage '{name}' in {run_dir} was built from another config (stale); run `amc build` first"
            )
        run.manifests[name] = manifest
        run.rejects.extend(_records(stage_dir, "rejects", Reject))
    for name in PATH_STAGES:
        if name in run.manifests:
            run.paths = _records(run_dir / name, "data", ReasoningPath)
            break
    if "critique" in run.manifests:
        run.critiques = _records(run_dir / "critique", "data", Critique)
    if "filter" in run.manifests:
        run.kept = _records(run_dir / "filter", "data", FilterDecision)
        run.dropped = _records(run_dir / "filter", "dropped", FilterDecision)
    # Math-Shepherd labels are an optional output of the filter stage (stages.filter.step_labels).
    label_files = sorted((run_dir / "filter" / "step_labels").glob("*.parquet"))
    if "filter" in run.manifests and label_files:
        run.step_labels = pa.concat_tables([pq.read_table(f) for f in label_files], promote_options="default")
    if not run.paths:
        raise PublishError(f"no reasoning paths in {run_dir}; run `amc build --stage filter` first")
    return run


# ----------------------------------------------------------------------------------------------- schemas
MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
PATHS_SCHEMA = arrow_schema(ReasoningPath).append(pa.field("num_steps", pa.int64(), nullable=False))
CRITIQUES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("path_id", pa.string()),
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("reference_answer", pa.string()),
        ("steps", pa.list_(pa.string())),
        ("num_steps", pa.int64()),
        ("predicted_answer", pa.string()),
        ("path_correct", pa.bool_()),
        ("strategy", pa.string()),
        ("generator", pa.string()),
        ("error_step", pa.int64()),
        ("error_type", pa.string()),
        ("difficulty", pa.int64()),
        ("source", pa.string()),
        ("annotator", pa.string()),
        ("step_verdicts", pa.list_(arrow_struct(StepVerdict))),
        ("first_error_step", pa.int64()),
        ("final_verdict", pa.bool_()),
        ("final_explanation", pa.string()),
        ("critique", pa.string()),
        ("parse_status", pa.string()),
        ("format", pa.string()),
        ("hints", pa.list_(pa.string())),
    ]
)
FILTERED_SCHEMA = pa.schema(
    [
        *CRITIQUES_SCHEMA,
        ("n", pa.int64()),
        ("k", pa.int64()),
        ("n_correct", pa.int64()),
        ("refinements", pa.list_(arrow_struct(Refinement))),
    ]
)
SFT_SCHEMA = pa.schema(
    [("id", pa.string()), ("problem_id", pa.string()), ("prompt", MESSAGES), ("completion", MESSAGES)]
)
REJECTS_SCHEMA = arrow_schema(Reject)


# ----------------------------------------------------------------------------------------------- rows
Row = tuple[str, dict[str, Any]]  # (problem id, row): the problem id decides the split


def path_rows(paths: Iterable[ReasoningPath]) -> list[Row]:
    return [(p.problem_id, {**p.model_dump(), "num_steps": len(p.steps)}) for p in sorted(paths, key=lambda p: p.id)]


def flat_critique(c: Critique) -> dict[str, Any]:
    """A critique as one flat row: the path's fields beside the verdicts, so a table viewer shows both."""
    p = c.path
    return {
        "id": c.id,
        "path_id": p.id,
        "problem_id": p.problem_id,
        "question": p.question,
        "reference_answer": p.reference_answer,
        "steps": p.steps,
        "num_steps": len(p.steps),
        "predicted_answer": p.predicted_answer,
        "path_correct": p.correct,
        "strategy": p.strategy,
        "generator": p.generator,
        "error_step": p.error_step,
        "error_type": p.error_type,
        "difficulty": p.difficulty,
        "source": p.source,
        "annotator": c.annotator,
        "step_verdicts": [v.model_dump() for v in c.step_verdicts],
        "first_error_step": c.first_error_step,
        "final_verdict": c.final_verdict,
        "final_explanation": c.final_explanation,
        "critique": c.raw,
        "parse_status": c.parse_status,
        "format": c.format,
        "hints": list(c.hints),
    }


def critique_rows(critiques: Iterable[Critique]) -> list[Row]:
    return [(c.path.problem_id, flat_critique(c)) for c in sorted(critiques, key=lambda c: c.id)]


def filtered_rows(kept: Iterable[FilterDecision]) -> list[Row]:
    return [
        (
            d.critique.path.problem_id,
            {
                **flat_critique(d.critique),
                "id": d.id,
                "n": d.n,
                "k": d.k,
                "n_correct": d.n_correct,
                "refinements": [r.model_dump() for r in d.refinements],
            },
        )
        for d in sorted(kept, key=lambda d: d.id)
    ]


def _messages(messages: Iterable[Any]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def critic_target(c: Critique) -> str:
    """The critique a critic learns to write: the annotator's text as is, or, for a critique the annotator gave
    as JSON, the same verdicts in the text format, because ``critic.jinja`` asks for the text format."""
    if c.format == "text" or c.final_verdict is None:
        return c.raw.strip()
    return render_text(c.step_verdicts, c.final_verdict, c.final_explanation).strip()


def sft_critic_rows(kept: Iterable[FilterDecision], cfg: PipelineConfig) -> list[Row]:
    """The critic's prompt is ``critic.jinja`` (question and numbered steps): the annotator's hints (reference
    answer, error location) are what made its critiques good and are exactly what a critic never gets."""
    critic = load_template("critic", cfg.prompts_dir)
    rows = []
    for d in sorted(kept, key=lambda d: d.id):
        p = d.critique.path
        prompt = _messages(critic.render(question=p.question, steps=p.steps))
        rows.append(
            (
                p.problem_id,
                {
                    "id": d.id,
                    "problem_id": p.problem_id,
                    "prompt": prompt,
                    "completion": [{"role": "assistant", "content": critic_target(d.critique)}],
                },
            )
        )
    return rows


def sft_refine_rows(kept: Iterable[FilterDecision], cfg: PipelineConfig) -> list[Row]:
    """One row per kept critique of a flawed path: its first correct, non-shortcut refinement is the target."""
    refine = load_template(cfg.stages.filter.template, cfg.prompts_dir)
    rows = []
    for d in sorted(kept, key=lambda d: d.id):
        p = d.critique.path
        good = next((r for r in sorted(d.refinements, key=lambda r: r.index) if r.correct and not r.shortcut), None)
        if p.correct or good is None:
            continue
        prompt = _messages(refine.render(question=p.question, steps=p.steps, critique=d.critique.raw))
        rows.append(
            (
                p.problem_id,
                {
                    "id": f"{d.id}/r{good.index}",
                    "problem_id": p.problem_id,
                    "prompt": prompt,
                    "completion": [{"role": "assistant", "content": good.text.strip()}],
                },
            )
        )
    return rows


def _problem_of_row_id(row_id: str) -> str:
    # Row ids are '<problem id>/<strategy>/<index>[/...]'; a reject of the problems stage is the problem id itself.
    return row_id.split("/", 1)[0]


def step_label_problem_ids(table: pa.Table) -> list[str]:
    """The problem of each step-label row: a ``problem_id`` column, else the prefix of its ``id``."""
    if "problem_id" in table.column_names:
        return [str(v) for v in table.column("problem_id").to_pylist()]
    if "id" in table.column_names:
        return [_problem_of_row_id(str(v)) for v in table.column("id").to_pylist()]
    raise PublishError("step_labels rows need a 'problem_id' or an 'id' column to be split by problem")


# ----------------------------------------------------------------------------------------------- tables
def _split(rows: list[Row], schema: pa.Schema, test_fraction: float) -> dict[str, pa.Table]:
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for problem_id, row in rows:
        by_split[split_of(problem_id, test_fraction)].append(row)
    # An empty split is left out: `datasets` cannot read a Parquet file with no rows.
    return {s: pa.Table.from_pylist(r, schema=schema) for s, r in by_split.items() if r}


def build_tables(run: RunData, options: ExportOptions) -> dict[str, dict[str, pa.Table]]:
    """config -> split -> table, in :data:`CONFIG_ORDER`; configs with no rows are left out."""
    f = options.test_fraction
    tables: dict[str, dict[str, pa.Table]] = {}
    if "filter" in run.manifests:
        tables["filtered"] = _split(filtered_rows(run.kept), FILTERED_SCHEMA, f)
    tables["paths"] = _split(path_rows(run.paths), PATHS_SCHEMA, f)
    if "critique" in run.manifests:
        tables["critiques"] = _split(critique_rows(run.critiques), CRITIQUES_SCHEMA, f)
    if "filter" in run.manifests:
        tables["sft_critic"] = _split(sft_critic_rows(run.kept, run.cfg), SFT_SCHEMA, f)
        tables["sft_refine"] = _split(sft_refine_rows(run.kept, run.cfg), SFT_SCHEMA, f)
        if options.self_talk:
            from amc.loops.selftalk import self_talk_rows

            tables["self_talk"] = _split(self_talk_rows(run.kept, run.cfg), SFT_SCHEMA, f)
    if run.step_labels is not None and run.step_labels.num_rows:
        labels = run.step_labels
        masks = {s: pa.array([split_of(pid, f) == s for pid in step_label_problem_ids(labels)]) for s in SPLITS}
        tables["step_labels"] = {s: labels.filter(m) for s, m in masks.items() if labels.filter(m).num_rows}
    if options.include_rejects:
        rejects = sorted(run.rejects, key=lambda r: (r.stage, r.row_id, r.reason))
        # Split by problem like every other config, so that no row about a test problem sits in train.
        tables["rejects"] = _split([(_problem_of_row_id(r.row_id), r.model_dump()) for r in rejects], REJECTS_SCHEMA, f)
    return {
        name: tables[name]
        for name in CONFIG_ORDER
        if tables.get(name) and any(t.num_rows for t in tables[name].values())
    }


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as Parquet bytes; the same table always gives the same bytes (no timestamps are written)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=10_000)
    return sink.getvalue().to_pybytes()


def shard_files(config: str, split: str, table: pa.Table, shard_rows: int) -> dict[str, bytes]:
    """The Hub layout of one split: ``<config>/<split>-00000-of-00002.parquet``, ... (at least one shard)."""
    starts = list(range(0, table.num_rows, shard_rows)) or [0]
    total = len(starts)
    return {
        f"{config}/{split}-{i:05d}-of-{total:05d}.parquet": parquet_bytes(table.slice(start, shard_rows))
        for i, start in enumerate(starts)
    }
