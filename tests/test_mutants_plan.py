"""The build plan's decisions (amc/engine/plan.py), each checked on its own: which manifest is stale, which shards
are left, what the plan visits, and that fingerprints do not depend on the order keys are written in a config.
Written for the mutants bench/mutation.sh found surviving (issue 16)."""

from __future__ import annotations

from pathlib import Path

from amc.config import load_config
from amc.engine.plan import expected_fingerprints, is_stale, plan, shards_to_run
from amc.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[1]


def _cfg(*extra: str):
    return load_config(ROOT / "pipelines" / "quickstart.yaml", ["source.count=4", *extra])


def test_a_manifest_is_stale_when_its_fingerprint_or_its_input_data_differs():
    m = {"fingerprint": "f1", "input_data": "d1"}
    assert is_stale(None, "f1", "d1") is False  # never started: nothing to throw away
    assert is_stale(m, "f1", "d1") is False
    assert is_stale(m, "f2", "d1") is True  # config changed, same input
    assert is_stale(m, "f1", "d2") is True  # input changed, same config
    assert is_stale(m, "f2", "d2") is True
    # the first stage has no input: a manifest without input_data is current under None
    assert is_stale({"fingerprint": "f1"}, "f1", None) is False
    assert is_stale({"fingerprint": "f1"}, "f1", "d1") is True


def test_shards_left_are_the_unlisted_ones_plus_those_to_redo():
    assert shards_to_run({"num_shards": 3}) == [0, 1, 2]  # a manifest written before any shard finished
    assert shards_to_run({"num_shards": 3, "shards": {}}) == [0, 1, 2]
    m = {"num_shards": 4, "shards": {"0": {}, "3": {}}}
    assert shards_to_run(m) == [1, 2]
    assert shards_to_run(m, {0}) == [0, 1, 2]
    assert shards_to_run(m, {1}) == [1, 2]  # asked to redo one that is left anyway: listed once
    assert shards_to_run({"num_shards": 2, "shards": {"0": {}, "1": {}}}) == []


def test_the_plan_visits_every_stage_by_default_each_with_its_fingerprint():
    cfg = _cfg()
    fps = expected_fingerprints(cfg)
    steps = plan(cfg)
    assert [p.stage.name for p in steps] == list(STAGE_NAMES)
    assert [p.fingerprint for p in steps] == [fps[n] for n in STAGE_NAMES]
    assert [p.stage.name for p in plan(cfg, "sample")] == ["problems", "sample"]


def test_reordering_keys_in_a_config_mapping_rebuilds_nothing():
    # extra request fields are a free mapping: the same fields written in another order are the same config
    a = _cfg('models.actor.extra_body={"top_k": 5, "min_p": 0.1}')
    b = _cfg('models.actor.extra_body={"min_p": 0.1, "top_k": 5}')
    assert list(a.models.for_role("actor").extra_body) != list(b.models.for_role("actor").extra_body)
    assert expected_fingerprints(a) == expected_fingerprints(b)
    c = _cfg('models.actor.extra_body={"min_p": 0.2, "top_k": 5}')
    assert expected_fingerprints(c)["problems"] == expected_fingerprints(a)["problems"]
    assert expected_fingerprints(c)["sample"] != expected_fingerprints(a)["sample"]
