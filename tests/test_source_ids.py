"""A source whose rows carry an `id` column that the field mapping leaves out is warned about, never silently
renumbered; mapped, the ids are used."""

from __future__ import annotations

import json
import logging

from amc.config import FieldMap, FileSource, HubSource
from amc.sources import load_problems

ROWS = [{"id": "q-17", "question": "What is 2+3?", "answer": "5"}, {"id": "q-42", "question": "2*4?", "answer": "8"}]


def _write(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_an_unmapped_id_column_is_warned_about(tmp_path, caplog):
    path = _write(tmp_path)
    with caplog.at_level(logging.WARNING, logger="amc.sources"):
        problems = load_problems(FileSource(path=str(path)), seed=0)
    assert [p.id for p in problems] == ["mine-00000", "mine-00001"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(path) in warned[0] and "`fields: {id: id}`" in warned[0]
    assert "mine-00000" in warned[0]


def test_a_mapped_id_column_is_used_without_a_warning(tmp_path, caplog):
    path = _write(tmp_path)
    with caplog.at_level(logging.WARNING, logger="amc.sources"):
        problems = load_problems(FileSource(path=str(path), fields=FieldMap(id="id")), seed=0)
    assert [p.id for p in problems] == ["q-17", "q-42"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_hub_sources_warn_too(tmp_path, caplog):
    path = _write(tmp_path)
    with caplog.at_level(logging.WARNING, logger="amc.sources"):
        load_problems(HubSource(dataset=str(path), split="train"), seed=0)
    assert any("'id' column" in r.getMessage() for r in caplog.records)
