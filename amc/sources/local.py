"""Problems from local jsonl, json (an array of objects) or parquet files, through a field mapping.

Bad input fails fast, before any engine starts: every ``InputError`` names the file, the row and the field. Rows
are 0-based indices for json and parquet, and 1-based line numbers for jsonl (what an editor shows); the message
says which. ``problem_from_row`` is the one row-to-``Problem`` mapping, shared with the Hub loader.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from amc.answers import last_boxed, split_gsm8k
from amc.config import AnswerFormat, FieldMap, FileSource
from amc.errors import InputError
from amc.records import Problem

log = logging.getLogger(__name__)
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_LEVEL = re.compile(r"-?\d+")
# Python refuses to convert ints of more digits than this to text (sys.get_int_max_str_digits): such an answer
# could never be compared, so it is a bad row, named as such.
_MAX_DIGITS = 4300
_MAX_INT_BITS = int(_MAX_DIGITS * 3.32)


class RowPlace:
    """Where a row sits in its input, so errors point at it the way the user will look for it."""

    def __init__(self, file: str, row: int, kind: str):
        self.file, self.row, self.kind = file, row, kind

    def error(self, field: str | None, message: str) -> InputError:
        return InputError(self.file, self.row, field, f"{message} (row {self.row} is the {self.kind})")


def _blank(value: Any) -> bool:
    # Parquet and pandas write missing values as None or NaN; both mean "no value" here.
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and not value.strip())


def _text(row: Mapping[str, Any], field: str, place: RowPlace, what: str) -> str:
    """The non-empty text of a required field; numbers are accepted as text (an answer of 18 reads as '18')."""
    if field not in row:
        raise place.error(field, f"row has no field '{field}' for the {what}; fields present: {sorted(row)}")
    value = row[field]
    if isinstance(value, float) and math.isnan(value) and what == "reference answer":
        raise place.error(field, f"NaN is not an answer: the {what} must be a number or a text")
    if _blank(value):
        raise place.error(field, f"the {what} is empty")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise place.error(field, f"the {what} must be text, got {type(value).__name__}")
    if isinstance(value, float) and math.isinf(value):
        raise place.error(field, f"Infinity is not an answer: the {what} must be a finite number or a text")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise place.error(field, f"the {what} is a number of more than {_MAX_DIGITS} digits; amc cannot grade it")
    return str(value).strip()


def _optional_text(row: Mapping[str, Any], field: str | None) -> str | None:
    if field is None or _blank(row.get(field)):
        return None
    return str(row[field]).strip()


def _difficulty(row: Mapping[str, Any], field: str | None, place: RowPlace) -> int | None:
    """An int level from 3, 3.0 or 'Level 3'; MATH has a few 'Level ?' rows, which mean "not known", not bad input."""
    if field is None or _blank(row.get(field)):
        return None
    value = row[field]
    if isinstance(value, bool):
        raise place.error(field, f"difficulty must be a number or a 'Level N' text, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        found = _LEVEL.search(value)
        return int(found.group()) if found else None
    raise place.error(field, f"difficulty must be a number or a 'Level N' text, got {value!r}")


def _answer_and_solution(
    row: Mapping[str, Any], fields: FieldMap, answer_format: AnswerFormat, place: RowPlace
) -> tuple[str, str | None]:
    """The reference answer (never empty) and the reference solution, read as ``answer_format`` says."""
    solution = _optional_text(row, fields.solution)
    if answer_format == "plain":
        if fields.answer is None:
            raise place.error(None, "answer_format 'plain' needs an answer field (fields.answer)")
        return _text(row, fields.answer, place, "reference answer"), solution
    if answer_format == "gsm8k":
        if fields.answer is None:
            raise place.error(None, "answer_format 'gsm8k' needs an answer field holding 'solution #### answer'")
        before, answer = split_gsm8k(_text(row, fields.answer, place, "reference answer"))
        if answer is None:
            raise place.error(fields.answer, "no reference answer after '####'")
        return answer, solution or before or None
    answer_field = fields.answer or fields.solution
    if answer_field is None:
        raise place.error(None, "answer_format 'boxed' needs an answer or a solution field")
    boxed = last_boxed(_text(row, answer_field, place, "reference answer"))
    if boxed is None:
        raise place.error(answer_field, "no complete \\boxed{...} answer to extract")
    return boxed, solution


def problem_from_row(
    row: Mapping[str, Any],
    *,
    fields: FieldMap,
    answer_format: AnswerFormat,
    default_id: str,
    source: str,
    place: RowPlace,
) -> Problem:
    """Map one input row to a ``Problem``; raise ``InputError`` naming the row and field when it cannot.

    ``answer_format`` says where the reference answer is: ``plain`` the answer field as is; ``gsm8k`` after the
    ``####`` of the answer field, whose text before it is the solution; ``boxed`` the last ``\\boxed{}`` of the
    answer field, or of the solution field when no answer field is mapped (MATH keeps its answer only there).
    A mapped solution field always wins over the text before ``####``.
    """
    if not isinstance(row, Mapping):
        raise place.error(None, f"expected an object, got {type(row).__name__}")
    question = _text(row, fields.question, place, "question")
    answer, solution = _answer_and_solution(row, fields, answer_format, place)
    problem_id = default_id
    if fields.id is not None:
        problem_id = _text(row, fields.id, place, "id")
    return Problem(
        id=problem_id,
        question=question,
        answer=answer,
        solution=solution,
        source=source,
        difficulty=_difficulty(row, fields.difficulty, place),
        subject=_optional_text(row, fields.subject),
    )


def warn_unmapped_id(columns: list[str], fields: FieldMap, where: str, example: str) -> bool:
    """Warn (and return True) when the rows have an ``id`` column that ``fields.id`` does not map: their ids would
    silently be replaced by generated ones such as ``example``."""
    if fields.id is not None or "id" not in columns:
        return False
    log.warning(
        "%s: the rows have an 'id' column that the source does not map, so amc gives them generated ids (%s, ...); "
        "set `fields: {id: id}` in the source to keep yours",
        where,
        example,
    )
    return True


def check_unique_ids(problems: list[Problem], places: list[RowPlace], fields: FieldMap) -> None:
    """Ids address every later record, so a duplicate would silently merge two problems' samples."""
    seen: dict[str, int] = {}
    for index, (problem, place) in enumerate(zip(problems, places, strict=True)):
        if problem.id in seen:
            first = places[seen[problem.id]].row
            raise place.error(fields.id or "id", f"duplicate id '{problem.id}' (first seen at row {first})")
        seen[problem.id] = index


def _infer_format(path: Path, given: str | None) -> str:
    if given is not None:
        return given
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(str(path), None, None, f"cannot tell the format from suffix '{path.suffix}'; set format")
    return fmt


def _loads(text: str, place: RowPlace | None, path: Path) -> Any:
    """JSON text to Python, with one clear error (file, row) for bad JSON and for numbers Python cannot read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f" (column {exc.colno})" if place is not None else f" at line {exc.lineno}"
        message = f"not valid JSON: {exc.msg}{where}"
    except ValueError:  # an int of more than 4300 digits: "Exceeds the limit ... for integer string conversion"
        message = f"a number has more than {_MAX_DIGITS} digits, which Python will not read; amc cannot grade it"
    if place is not None:
        raise place.error(None, message)
    raise InputError(str(path), None, None, message)


def _utf8(data: bytes, place: RowPlace | None, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); save the file as UTF-8"
        if place is not None:
            raise place.error(None, message) from None
        raise InputError(str(path), None, None, message) from None


def _jsonl_rows(path: Path, limit: int | None) -> Iterator[tuple[RowPlace, Any]]:
    count = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if limit is not None and count >= limit:
                return
            place = RowPlace(str(path), number, "1-based line number")
            line = _utf8(raw, place, path)
            if not line.strip():
                continue  # a trailing newline or blank separator line is not a row
            yield place, _loads(line, place, path)
            count += 1


def _json_rows(path: Path) -> Iterator[tuple[RowPlace, Any]]:
    data = _loads(_utf8(path.read_bytes(), None, path), None, path)
    if not isinstance(data, list):
        raise InputError(str(path), None, None, f"expected a JSON array of objects, got {type(data).__name__}")
    for index, row in enumerate(data):
        yield RowPlace(str(path), index, "0-based index"), row


def _parquet_rows(path: Path) -> Iterator[tuple[RowPlace, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise InputError(str(path), None, None, f"not a readable parquet file: {exc}") from exc
    # to_pylist keeps nulls as None (pandas would turn them into NaN and ints into floats).
    for index, row in enumerate(table.to_pylist()):
        yield RowPlace(str(path), index, "0-based index"), row


def load_file_problems(cfg: FileSource) -> list[Problem]:
    """Read a local jsonl/json/parquet file into problems, failing fast on the first bad row.

    >>> load_file_problems(FileSource(path="gsm8k/test.jsonl", answer_format="gsm8k"))[0].answer  # doctest: +SKIP
    '18'
    """
    path = Path(cfg.path)
    if not path.is_file():
        # relative paths are read from the working directory, not from the pipeline file's folder: say where
        raise InputError(str(path), None, None, f"file not found (looked at {path.resolve()})")
    fmt = _infer_format(path, cfg.format)
    if fmt == "jsonl":
        rows: Iterator[tuple[RowPlace, Any]] = _jsonl_rows(path, cfg.limit)
    elif fmt == "json":
        rows = _json_rows(path)
    else:
        rows = _parquet_rows(path)
    problems: list[Problem] = []
    places: list[RowPlace] = []
    for index, (place, row) in enumerate(rows):
        if cfg.limit is not None and index >= cfg.limit:
            break
        problems.append(
            problem_from_row(
                row,
                fields=cfg.fields,
                answer_format=cfg.answer_format,
                default_id=f"{path.stem}-{index:05d}",
                source=str(path),
                place=place,
            )
        )
        places.append(place)
        if index == 0 and isinstance(row, Mapping):
            warn_unmapped_id(list(row), cfg.fields, str(path), problems[0].id)
    check_unique_ids(problems, places, cfg.fields)
    return problems
