"""Parquet shards of records, written atomically, with an explicit Arrow schema per record kind.

The schema comes from the pydantic record, never from the data: a shard whose optional column happens to be all
null still has the same schema as its siblings, so ``datasets.load_dataset("parquet", data_files=...)`` reads every
shard of a stage as one table.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

R = TypeVar("R", bound=BaseModel)

_SCALARS: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Map a pydantic field annotation to (arrow type, nullable)."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {annotation}")
        return _arrow_type(args[0])[0], True
    if origin is Literal:
        values = get_args(annotation)
        return _SCALARS[type(values[0])], False
    if origin is list:
        (item,) = get_args(annotation)
        return pa.list_(pa.field("item", *_arrow_type(item))), False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return arrow_struct(annotation), False
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    raise TypeError(f"no Arrow type for {annotation!r}")


def arrow_struct(model: type[BaseModel]) -> pa.StructType:
    return pa.struct(arrow_fields(model))


def arrow_fields(model: type[BaseModel]) -> list[pa.Field]:
    hints = typing.get_type_hints(model)
    fields = []
    for name in model.model_fields:
        typ, nullable = _arrow_type(hints[name])
        fields.append(pa.field(name, typ, nullable=nullable))
    return fields


@functools.lru_cache(maxsize=256)
def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of a record kind, e.g. ``arrow_schema(ReasoningPath)``: built once per record kind (it
    was a quarter of encoding a shard), a schema being immutable."""
    return pa.schema(arrow_fields(model))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a dataset is read by others too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def encode_records(records: Sequence[BaseModel], model: type[BaseModel]) -> bytes:
    """Records as the bytes of one Parquet file (zstd), with the record kind's explicit schema."""
    table = pa.Table.from_pylist([r.model_dump(mode="python") for r in records], schema=arrow_schema(model))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_records(path: Path, records: Sequence[BaseModel], model: type[BaseModel]) -> str:
    """Write records as one Parquet file atomically; return the file's sha256."""
    data = encode_records(records, model)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_records(path: Path, model: type[R]) -> list[R]:
    table = pq.read_table(path, schema=arrow_schema(model))
    return [model.model_validate(row) for row in table.to_pylist()]


def shard_name(index: int, total: int) -> str:
    return f"{index:05d}-of-{total:05d}.parquet"
