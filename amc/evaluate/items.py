"""What a critic is evaluated on: solutions split into steps, with the first wrong step when it is known.

One record kind, :class:`EvalItem`, read from four sources:

- ProcessBench (``problem``, ``steps``, ``label`` 0-based with -1 for no error, ``final_answer_correct``): a JSON
  array or JSON-lines file, a folder of such files (one subset per file), or the Hub id ``Qwen/ProcessBench``
  (one subset per split);
- PRMBench (``modified_question``/``question``, ``modified_process``, ``error_steps`` 1-based, ``classification``
  as the subset);
- amc's own paths: a run directory (``inject/data`` holds every path, sampled ones included) or a publish folder
  (its ``paths`` config). The known first error of resampled, injected and symbolic paths is the label; a correct
  path with no known error counts as error-free (-1); a wrong sampled path's first error is not known
  (``label=None``: left out of first-error metrics), but its correctness is, for verdict accuracy;
- a ``.parquet`` file of any of these row shapes.

Bad rows fail fast with the file, row and field named (:class:`amc.errors.InputError`).

>>> item_from_row({"problem": "1+1?", "steps": ["1+1=3"], "label": 0, "final_answer_correct": False}, "f", 0)
EvalItem(id='f-0', subset='f', problem='1+1?', steps=['1+1=3'], label=0, final_answer_correct=False, \
reference_answer=None, strategy=None, error_type=None, difficulty=None)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amc.errors import AmcError, InputError

__all__ = ["EvalItem", "amc_label", "item_from_row", "load_items", "read_rows"]


@dataclass
class EvalItem:
    """One solution to critique. ``label``: 0-based first wrong step, -1 no error, ``None`` not known."""

    id: str
    subset: str
    problem: str
    steps: list[str]
    label: int | None
    final_answer_correct: bool | None = None
    reference_answer: str | None = None
    strategy: str | None = None
    error_type: str | None = None
    difficulty: int | None = field(default=None)


def _field(row: Mapping[str, Any], name: str, file: str, index: int) -> Any:
    if name not in row or row[name] is None:
        raise InputError(file, index, name, "missing")
    return row[name]


def _steps(value: Any, name: str, file: str, index: int) -> list[str]:
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InputError(file, index, name, f"expected a list of strings, got {type(value).__name__}")
    if not value:
        raise InputError(file, index, name, "no steps")
    return list(value)


def _int(value: Any, name: str, file: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InputError(file, index, name, f"expected an integer, got {value!r}")
    return int(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None or (isinstance(value, float) and value != value) else int(value)


def amc_label(error_step: Any, correct: Any) -> int | None:
    """An amc path's label: its known first error; a correct path with none known counts as error-free (-1, amc's
    own convention: the critique stage and the filter's error_step_matches rule read it so); else ``None``."""
    known = _opt_int(error_step)
    return known if known is not None else (-1 if correct else None)


def item_from_row(row: Mapping[str, Any], subset: str, index: int, file: str | None = None) -> EvalItem:
    """One row of ProcessBench, PRMBench or amc's paths as an :class:`EvalItem` (the format is told by its keys)."""
    file = file or subset
    rid = str(row.get("id") or row.get("idx") or f"{subset}-{index}")
    if "modified_process" in row:  # PRMBench
        steps = _steps(row["modified_process"], "modified_process", file, index)
        errors = row.get("error_steps")
        errors = errors.tolist() if hasattr(errors, "tolist") else errors
        if not isinstance(errors, list):
            raise InputError(file, index, "error_steps", f"expected a list of 1-based step numbers, got {errors!r}")
        numbers = [_int(e, "error_steps", file, index) for e in errors]
        if any(n < 1 or n > len(steps) for n in numbers):
            raise InputError(file, index, "error_steps", f"{numbers} not within steps 1..{len(steps)}")
        question = row.get("modified_question") or row.get("question") or row.get("original_question")
        if not question:
            raise InputError(file, index, "modified_question", "missing (also no 'question')")
        kind = str(row.get("classification") or subset)
        return EvalItem(
            id=rid,
            subset=kind,
            problem=str(question),
            steps=steps,
            label=min(numbers) - 1 if numbers else -1,
            error_type=kind,
        )
    if "strategy" in row and "steps" in row:  # amc's ReasoningPath rows
        steps = _steps(row["steps"], "steps", file, index)
        correct = row.get("correct")
        return EvalItem(
            id=rid,
            subset=str(row.get("source") or "amc"),
            problem=str(_field(row, "question", file, index)),
            steps=steps,
            label=amc_label(row.get("error_step"), correct),
            final_answer_correct=None if correct is None else bool(correct),
            reference_answer=row.get("reference_answer"),
            strategy=str(row["strategy"]),
            error_type=row.get("error_type"),
            difficulty=_opt_int(row.get("difficulty")),
        )
    steps = _steps(_field(row, "steps", file, index), "steps", file, index)
    label = _int(_field(row, "label", file, index), "label", file, index)
    if label < -1 or label >= len(steps):
        raise InputError(file, index, "label", f"{label} is not -1 or a step index below {len(steps)}")
    fac = row.get("final_answer_correct")
    return EvalItem(
        id=rid,
        subset=subset,
        problem=str(_field(row, "problem", file, index)),
        steps=steps,
        label=label,
        final_answer_correct=None if fac is None else bool(fac),
        reference_answer=row.get("answer") or row.get("reference_answer"),
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.json`` array, ``.jsonl`` or ``.parquet`` file (a clear error naming the file otherwise)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(str(path), n, None, f"invalid JSON: {exc}") from None
        return rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(str(path), None, None, f"invalid JSON: {exc}") from None
        if isinstance(data, dict):  # {"gsm8k": [...]} or {"data": [...]}
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise InputError(str(path), None, None, "expected a JSON array of rows")
        return data
    raise InputError(str(path), None, None, "expected a .json, .jsonl or .parquet file")


def _from_rows(rows: Iterable[Mapping[str, Any]], subset: str, file: str) -> list[EvalItem]:
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(file, i, None, f"expected an object, got {type(row).__name__}")
        items.append(item_from_row(row, subset, i, file))
    return items


def _parquet_rows(files: list[Path]) -> list[dict[str, Any]]:
    return [row for f in files for row in read_rows(f)]


def _load_folder(folder: Path, subset: str | None) -> list[EvalItem]:
    for stage in ("inject", "sample"):  # a run directory: inject/data holds every path, sampled ones included
        files = sorted((folder / stage / "data").glob("*.parquet"))
        if files:
            return _from_rows(_parquet_rows(files), "amc", str(folder / stage / "data"))
    files = sorted((folder / "paths").glob("*.parquet"))  # a publish folder (every split)
    if files:
        return _from_rows(_parquet_rows(files), "amc", str(folder / "paths"))
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".json", ".jsonl", ".parquet"))
    if subset is not None:
        files = [p for p in files if p.stem == subset]
    if not files:
        what = f"no file named {subset}.json(l)" if subset else "no run directory, publish folder or data file"
        raise AmcError(f"{folder}: {what}")
    return [item for p in files for item in _from_rows(read_rows(p), p.stem, str(p))]


def _load_hub(repo_id: str, subset: str | None) -> list[EvalItem]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        raise AmcError(f"reading {repo_id} from the Hub needs the datasets package: {exc}") from exc
    try:
        loaded = datasets.load_dataset(repo_id, split=subset) if subset else datasets.load_dataset(repo_id)
    except Exception as exc:  # offline, unknown id, unknown split: one clear line
        raise AmcError(f"could not load {repo_id!r} from the Hub: {type(exc).__name__}: {exc}") from exc
    splits = {subset: loaded} if subset else dict(loaded)
    return [item for name, ds in splits.items() for item in _from_rows(ds, str(name), f"{repo_id}:{name}")]


def load_items(
    data: str | Path, subset: str | None = None, limit: int | None = None, balanced: bool = False
) -> list[EvalItem]:
    """Every solution in ``data`` (a file, a folder, a run directory, a publish folder or a Hub id).

    ``subset`` picks one file of a folder, one split of a Hub dataset, one source or strategy of amc's paths, or one
    PRMBench classification, and names the subset of a ProcessBench file (its stem otherwise). ``limit`` keeps
    the first N items of each subset; with ``balanced`` those N are the first ceil(N/2) erroneous solutions and
    the first floor(N/2) correct ones (ProcessBench's files list erroneous solutions first, so a plain prefix
    measures one class only). Items whose label is unknown count as neither and are left out when balancing.
    """
    path = Path(data)
    if path.is_dir():
        items = _load_folder(path, subset)
    elif path.is_file():
        items = _from_rows(read_rows(path), subset or path.stem, str(path))
    elif "/" in str(data) and not str(data).startswith((".", "/")) and str(data).count("/") == 1:
        items = _load_hub(str(data), subset)
    else:
        raise AmcError(f"{data}: no such file or folder (nor a Hub id ORG/NAME)")
    if subset is not None:  # rows that carry their own subset (amc's strategy, PRMBench's classification)
        items = [i for i in items if subset in (i.subset, i.strategy)]
    if balanced and limit is None:
        raise AmcError("--balanced needs --limit N (N solutions per subset, half of each class)")
    if limit is not None:
        quota = {True: (limit + 1) // 2, False: limit // 2}
        kept: dict[tuple[str, object], int] = {}
        out = []
        for item in items:
            if balanced and item.label is None:
                continue
            key = (item.subset, (item.label != -1) if balanced else None)
            if kept.get(key, 0) < (quota[item.label != -1] if balanced else limit):
                kept[key] = kept.get(key, 0) + 1
                out.append(item)
        items = out
    if not items:
        raise AmcError(f"{data}: no solution to evaluate" + (f" in subset {subset!r}" if subset else ""))
    return items
