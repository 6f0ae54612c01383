"""The row index of ``amc view``: one small Arrow table over every Parquet row of a run or a publication.

The index holds only what the table, the filters and the search need (ids, stage, status, strategy, error type,
verdict, difficulty, models, the question and a few numbers) plus where each row lives (file and row number), read
from Parquet with column projection (nested fields too: ``critique.path.strategy``). Filtering and paging are
Arrow compute over that table; a row page reads the one row group that holds its row. So a 100k-row run opens in
seconds and a page of the table costs milliseconds, whatever the size of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Record kinds told apart by their Parquet columns: run directories hold nested records (amc.records), published
# folders flat ones (amc.publish.exports). Each maps an index column to the column path it is read from.
_PATH_FIELDS = ("question", "strategy", "generator", "error_type", "difficulty", "error_step", "correct", "steps")
KINDS: dict[str, dict[str, str]] = {
    "decision": {
        "id": "id",
        **{f: f"critique.path.{f}" for f in _PATH_FIELDS},
        "annotator": "critique.annotator",
        "final_verdict": "critique.final_verdict",
        "first_error_step": "critique.first_error_step",
        "reason": "reason",
        "kept": "kept",
        "problem_id": "critique.path.problem_id",
    },
    "critique": {
        "id": "id",
        **{f: f"path.{f}" for f in _PATH_FIELDS},
        "annotator": "annotator",
        "final_verdict": "final_verdict",
        "first_error_step": "first_error_step",
        "problem_id": "path.problem_id",
    },
    "flat_filtered": {
        "id": "id",
        **{f: f for f in _PATH_FIELDS if f != "correct"},
        "correct": "path_correct",
        "annotator": "annotator",
        "final_verdict": "final_verdict",
        "first_error_step": "first_error_step",
        "problem_id": "problem_id",
    },
    "path": {"id": "id", **{f: f for f in _PATH_FIELDS}, "problem_id": "problem_id"},
    "problem": {"id": "id", "question": "question", "difficulty": "difficulty", "problem_id": "id"},
    "reject": {"id": "row_id", "reason": "reason", "question": "detail", "reject_stage": "stage"},
    "sft": {"id": "id", "problem_id": "problem_id"},
}
KINDS["flat_critique"] = KINDS["flat_filtered"]

INDEX_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("problem_id", pa.string()),
        ("stage", pa.string()),
        ("part", pa.string()),
        ("status", pa.string()),
        ("kind", pa.string()),
        ("strategy", pa.string()),
        ("error_type", pa.string()),
        ("difficulty", pa.int64()),
        ("generator", pa.string()),
        ("annotator", pa.string()),
        ("verdict", pa.string()),
        ("correct", pa.bool_()),
        ("reason", pa.string()),
        ("error_step", pa.int64()),
        ("first_error_step", pa.int64()),
        ("num_steps", pa.int64()),
        ("question", pa.string()),
        ("file", pa.int32()),
        ("row", pa.int64()),
    ]
)
FILTER_COLUMNS = ("stage", "status", "strategy", "error_type", "verdict", "difficulty", "model")


def kind_of(names: list[str]) -> str | None:
    """The record kind of a Parquet file from its top-level column names, or None for one amc does not show."""
    has = set(names)
    if {"critique", "refinements", "kept"} <= has:
        return "decision"
    if {"path", "step_verdicts"} <= has:
        return "critique"
    if {"step_verdicts", "refinements"} <= has:
        return "flat_filtered"
    if "step_verdicts" in has:
        return "flat_critique"
    if {"strategy", "steps"} <= has:
        return "path"
    if {"row_id", "reason"} <= has:
        return "reject"
    if {"prompt", "completion"} <= has:
        return "sft"
    if {"question", "answer"} <= has:
        return "problem"
    return None


def _has_path(schema: pa.Schema, path: str) -> bool:
    parts = path.split(".")
    if parts[0] not in schema.names:
        return False
    typ = schema.field(parts[0]).type
    for part in parts[1:]:
        if not pa.types.is_struct(typ) or typ.get_field_index(part) < 0:
            return False
        typ = typ.field(part).type
    return True


def _verdicts(values: pa.Array) -> pa.Array:
    text = pc.if_else(values, "Correct", "Wrong")
    return pc.fill_null(text, "none")


@dataclass(frozen=True)
class Part:
    """One Parquet file of a stage (or config) and what its rows are: stage, part (data, dropped, rejects, or a
    split name) and the status every row of it has (kept, dropped, rejected, ok)."""

    path: Path
    stage: str
    part: str
    status: str


def index_file(part: Part, file_no: int) -> pa.Table | None:
    """The index rows of one Parquet file; None when it holds no kind of row amc shows."""
    schema = pq.read_schema(part.path)
    kind = kind_of(schema.names)
    if kind is None:
        return None
    mapping = {k: v for k, v in KINDS[kind].items() if _has_path(schema, v)}
    wanted = list(dict.fromkeys(mapping.values()))
    table = pq.read_table(part.path, columns=wanted)
    # Columns come back in the order asked for, named by their leaf: address them by position.
    col = {key: table.column(wanted.index(src)) for key, src in mapping.items()}
    n = table.num_rows
    nulls = {f.name: pa.nulls(n, f.type) for f in INDEX_SCHEMA}
    out: dict[str, pa.Array | pa.ChunkedArray] = dict(nulls)
    for key in ("id", "problem_id", "strategy", "generator", "annotator", "error_type", "reason", "question"):
        if key in col:
            out[key] = pc.cast(col[key], pa.string())
    for key in ("difficulty", "error_step", "first_error_step"):
        if key in col:
            out[key] = pc.cast(col[key], pa.int64())
    if "correct" in col:
        out["correct"] = col["correct"]
    if "final_verdict" in col:
        out["verdict"] = _verdicts(col["final_verdict"])
    if "steps" in col:
        out["num_steps"] = pc.cast(pc.list_value_length(col["steps"]), pa.int64())
    stage = part.stage
    if kind == "reject" and "reject_stage" in col and stage not in _run_stage_names():
        # a published `rejects` config: each row says which stage rejected it
        out["stage"] = pc.cast(col["reject_stage"], pa.string())
    else:
        out["stage"] = pa.array([stage] * n, pa.string())
    out["part"] = pa.array([part.part] * n, pa.string())
    out["status"] = pa.array([part.status] * n, pa.string())
    out["kind"] = pa.array([kind] * n, pa.string())
    out["file"] = pa.array([file_no] * n, pa.int32())
    out["row"] = pa.array(range(n), pa.int64())
    return pa.table({f.name: out[f.name] for f in INDEX_SCHEMA}, schema=INDEX_SCHEMA)


def _run_stage_names() -> tuple[str, ...]:
    from amc.config import STAGES

    return tuple(STAGES)


def build_index(parts: list[Part]) -> pa.Table:
    """The index of every file in ``parts`` (in order), with the problem id of reject rows filled in."""
    tables = [t for i, p in enumerate(parts) if (t := index_file(p, i)) is not None]
    table = pa.concat_tables(tables) if tables else INDEX_SCHEMA.empty_table()
    # A reject's row id is '<problem id>/...' (or the problem id itself): enough to list a problem's rows.
    pid = table.column("problem_id")
    from_id = pc.list_element(pc.split_pattern(table.column("id"), "/", max_splits=1), 0)
    return table.set_column(table.schema.get_field_index("problem_id"), "problem_id", pc.coalesce(pid, from_id))


@dataclass(frozen=True)
class Query:
    """The filters of the rows table; empty strings mean "any"."""

    stage: str = ""
    status: str = ""
    strategy: str = ""
    error_type: str = ""
    verdict: str = ""
    difficulty: str = ""
    model: str = ""
    q: str = ""

    def mask(self, index: pa.Table) -> pa.Array:
        """A boolean mask of the index rows that pass every filter (text search: id, question, reason)."""
        mask = pa.array([True] * index.num_rows, pa.bool_())
        for key in ("stage", "status", "strategy", "error_type", "verdict"):
            value = getattr(self, key)
            if value:
                mask = pc.and_(mask, pc.fill_null(pc.equal(index.column(key), value), False))
        if self.difficulty:
            try:
                level = int(self.difficulty)
            except ValueError:
                return pa.array([False] * index.num_rows, pa.bool_())
            mask = pc.and_(mask, pc.fill_null(pc.equal(index.column("difficulty"), level), False))
        if self.model:
            either = pc.or_(
                pc.fill_null(pc.equal(index.column("generator"), self.model), False),
                pc.fill_null(pc.equal(index.column("annotator"), self.model), False),
            )
            mask = pc.and_(mask, either)
        if self.q:
            hit = pa.array([False] * index.num_rows, pa.bool_())
            for key in ("id", "question", "reason"):
                found = pc.match_substring(index.column(key), self.q, ignore_case=True)
                hit = pc.or_(hit, pc.fill_null(found, False))
            mask = pc.and_(mask, hit)
        return mask

    def params(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them."""
        return {k: v for k, v in self.__dict__.items() if v}


def choices(index: pa.Table, column: str) -> list[str]:
    """The distinct non-null values of an index column, sorted (numbers numerically)."""
    if column == "model":
        values = set(index.column("generator").drop_null().unique().to_pylist())
        values |= set(index.column("annotator").drop_null().unique().to_pylist())
        return sorted(str(v) for v in values)
    values = index.column(column).drop_null().unique().to_pylist()
    return [str(v) for v in sorted(values)]


def counts(index: pa.Table, column: str, by: str = "status") -> dict[str, dict[str, int]]:
    """value of ``column`` -> value of ``by`` -> rows, e.g. strategy -> {kept: 12, dropped: 3}."""
    if index.num_rows == 0:
        return {}
    grouped = pa.table({"v": pc.cast(index.column(column), pa.string()), "b": index.column(by)})
    grouped = grouped.group_by(["v", "b"]).aggregate([([], "count_all")])
    out: dict[str, dict[str, int]] = {}
    for v, b, n in zip(*(grouped.column(c).to_pylist() for c in ("v", "b", "count_all")), strict=True):
        out.setdefault("none" if v is None else v, {})[b] = n
    return dict(sorted(out.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))
