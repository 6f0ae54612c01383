"""The whole pipeline on the transformers engine with a tiny Llama built offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from _engine_pipeline import build_and_check, engine_pipeline

from amc.testing import build_tiny_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny"), max_position_embeddings=2048)


@pytest.mark.parametrize(("fmt", "all_on"), [("text", False), ("json", False), ("text", True)])
def test_every_stage_runs_on_transformers(tiny, tmp_path, fmt, all_on):
    model = {"engine": "transformers", "model": str(tiny), "device": "cpu", "batch_size": 8}
    built = build_and_check(engine_pipeline(model, tmp_path / "run", critique_format=fmt, all_on=all_on))
    sample = built["manifests"]["sample"]
    assert sample["models"]["actor"]["engine"] == "transformers"
    # noise never parses as a critique: each is asked again once, then becomes a reject with its reason
    reasons = built["manifests"]["critique"]["rejects_by_reason"]
    assert (
        set(reasons) <= {"unparsable", "truncated"}
        and sum(reasons.values()) == built["manifests"]["critique"]["rejects"]
    )
    assert {p.generator for p in built["paths"] if p.strategy == "resample"} <= {str(tiny)}
    manifests = built["manifests"]
    assert manifests["critique"]["requests"]["made"] > 0
    if fmt == "json":
        # constrained to the schema (xgrammar), even the random model's critiques are JSON that parses, so the
        # filter stage gets critiques, asks the actor for refinements and decides each critique
        assert built["critiques"], reasons
        assert all(c.parse_status in ("ok", "partial") for c in built["critiques"])
        assert manifests["filter"]["requests"]["made"] > 0
        assert len(built["decisions"]) == len(built["critiques"])
