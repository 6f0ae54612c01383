"""JSON Schemas of the record kinds, exported from :mod:`amc.records` into ``schemas/``."""

from __future__ import annotations

import json
from pathlib import Path

from amc.records import RECORD_KINDS


def schema_text(kind: str) -> str:
    return json.dumps(RECORD_KINDS[kind].model_json_schema(), indent=2, sort_keys=True) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in RECORD_KINDS:
        path = directory / f"{kind}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        written.append(path)
    return written


def schema_drift(directory: Path) -> list[str]:
    """Record kinds whose schema file is missing or differs from the record, plus stray files."""
    drift = []
    for kind in RECORD_KINDS:
        path = directory / f"{kind}.schema.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != schema_text(kind):
            drift.append(kind)
    known = {f"{k}.schema.json" for k in RECORD_KINDS}
    drift += [p.name for p in directory.glob("*.schema.json") if p.name not in known]
    return drift
