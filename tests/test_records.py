import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from amc.cli import app
from amc.engine.store import arrow_schema, read_records, write_records
from amc.records import RECORD_KINDS, Critique, FilterDecision, Problem, ReasoningPath, StepVerdict
from amc.schemas import schema_drift

ROOT = Path(__file__).resolve().parents[1]


def _path(**kw) -> ReasoningPath:
    base = dict(
        id="p/sample/0",
        problem_id="p",
        question="q",
        reference_answer="3",
        steps=["1 + 2 = 3"],
        strategy="sample",
        generator="m",
    )
    base.update(kw)
    return ReasoningPath(**base)


def test_problem_needs_question_and_answer():
    with pytest.raises(ValidationError):
        Problem(id="a", question="", answer="1", source="s")
    with pytest.raises(ValidationError):
        Problem(id="a", question="q", answer="", source="s")


def test_records_forbid_unknown_fields():
    with pytest.raises(ValidationError):
        _path(typo=1)


def test_error_step_conventions():
    assert _path().error_step is None  # unknown
    assert _path(error_step=-1).error_step == -1  # no error


def test_schemas_folder_matches_records():
    """schemas/ is exported from amc/records.py; this fails when the two drift apart."""
    assert schema_drift(ROOT / "schemas") == []


def test_schema_export_and_check_cli(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["schema", "export", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert {p.name for p in tmp_path.iterdir()} == {f"{k}.schema.json" for k in RECORD_KINDS}
    assert runner.invoke(app, ["schema", "check", "--dir", str(tmp_path)]).exit_code == 0
    data = json.loads((tmp_path / "problem.schema.json").read_text())
    data["properties"]["extra"] = {"type": "string"}
    (tmp_path / "problem.schema.json").write_text(json.dumps(data))
    res = runner.invoke(app, ["schema", "check", "--dir", str(tmp_path)])
    assert res.exit_code == 1 and "problem" in res.output


def test_nested_records_roundtrip_parquet(tmp_path):
    crit = Critique(
        id="p/sample/0/c0",
        path=_path(),
        annotator="a",
        step_verdicts=[StepVerdict(index=0, step="1 + 2 = 3", correct=True)],
        first_error_step=-1,
        final_verdict=None,
        raw="r",
        parse_status="partial",
    )
    dec = FilterDecision(
        id=crit.id,
        critique=crit,
        refinements=[],
        n=4,
        k=2,
        n_correct=0,
        kept=False,
        reason="too_few_correct_refinements",
    )
    f = tmp_path / "x.parquet"
    write_records(f, [dec], FilterDecision)
    assert read_records(f, FilterDecision) == [dec]
    # an all-null optional column keeps its declared type, so shards always share one schema
    assert pq.read_schema(f).equals(arrow_schema(FilterDecision), check_metadata=False)


def test_empty_shard_has_schema(tmp_path):
    f = tmp_path / "empty.parquet"
    write_records(f, [], ReasoningPath)
    assert pq.read_table(f).num_rows == 0
    assert pq.read_schema(f).names == list(ReasoningPath.model_fields)
