from pathlib import Path

import pytest

from amc.config import PipelineConfig, apply_overrides, config_from_dict, load_config
from amc.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_pipeline_validates():
    cfg = load_config(ROOT / "pipelines" / "quickstart.yaml")
    assert cfg.name == "quickstart"
    assert cfg.source.kind == "synthetic"
    assert cfg.models.actor.engine == "sim"
    assert cfg.run_path == Path("runs/quickstart")


def test_every_ready_pipeline_validates():
    files = sorted((ROOT / "pipelines").glob("*.yaml"))
    assert files
    for f in files:
        assert isinstance(load_config(f), PipelineConfig)


def test_unknown_key_names_its_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nstages:\n  filter:\n    kk: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert "stages.filter.kk" in str(err.value)
    assert str(f) in str(err.value)
    assert "unknown key" in str(err.value)


def test_set_overrides_any_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("name: x\n")
    cfg = load_config(f, ["stages.filter.k=3", "stages.filter.n=5", "source.count=7", "models.actor.model=m"])
    assert cfg.stages.filter.k == 3 and cfg.stages.filter.n == 5
    assert cfg.source.count == 7
    assert cfg.models.actor.model == "m"


def test_override_of_unknown_key_is_an_error(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("name: x\n")
    with pytest.raises(ConfigError, match="stages.filter.kay"):
        load_config(f, ["stages.filter.kay=3"])


def test_override_syntax_error():
    with pytest.raises(ConfigError):
        apply_overrides({}, ["no-equals-sign"])


def test_k_may_not_exceed_n():
    with pytest.raises(ConfigError, match="k"):
        config_from_dict({"name": "x", "stages": {"filter": {"n": 2, "k": 3}}})


def test_source_discriminator():
    cfg = config_from_dict({"name": "x", "source": {"kind": "file", "path": "a.jsonl"}})
    assert cfg.source.kind == "file" and cfg.source.fields.question == "question"
    with pytest.raises(ConfigError, match="source"):
        config_from_dict({"name": "x", "source": {"kind": "nope"}})


def test_injector_defaults_to_actor():
    cfg = config_from_dict({"name": "x", "models": {"actor": {"engine": "sim", "model": "a"}}})
    assert cfg.models.for_role("injector").model == "a"
    assert cfg.models.for_role("refiner").model == "a"


def test_override_never_replaces_a_list_silently(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("name: x\nsource:\n  - {kind: synthetic, count: 3}\n  - {kind: synthetic, count: 4, seed: 1}\n")
    with pytest.raises(ConfigError, match="'source' is a list"):
        load_config(f, ["source.count=8"])
    whole = load_config(f, ["source={kind: synthetic, count: 8}"])
    assert whole.sources[0].count == 8 and len(whole.sources) == 1
