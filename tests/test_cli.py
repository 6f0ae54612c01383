"""The command line: init, build in a project folder, status, verify."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from amc.cli import app

runner = CliRunner()


def test_init_then_build_in_a_project_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["init", "--template", "quickstart"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "amc.yaml").read_text()
    assert "# amc quickstart" in text and "engine: sim" in text
    assert runner.invoke(app, ["init"]).exit_code == 2  # refuses to overwrite
    assert runner.invoke(app, ["init", "--force"]).exit_code == 0

    res = runner.invoke(app, ["build", "--stage", "critique", "-q", "--set", "source.count=8"])
    assert res.exit_code == 0, res.output
    assert "critique" in res.output and (tmp_path / "runs" / "quickstart" / "critique" / "data").is_dir()
    assert not (tmp_path / "runs" / "quickstart" / "filter").exists()

    info = json.loads(runner.invoke(app, ["status", "--json", "--set", "source.count=8"]).output)
    states = {name: s["state"] for name, s in info["stages"].items()}
    assert states == {"problems": "done", "sample": "done", "inject": "done", "critique": "done", "filter": "missing"}
    table = runner.invoke(app, ["status", "--set", "source.count=8"])
    assert table.exit_code == 0 and "missing" in table.output


def test_init_unknown_template(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["init", "--template", "nope"])
    assert res.exit_code == 2 and "quickstart" in res.output


def test_build_without_a_pipeline_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["build"])
    assert res.exit_code == 2 and "amc.yaml" in res.output and "amc init" in res.output


def test_unknown_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner.invoke(app, ["init"])
    res = runner.invoke(app, ["build", "--stage", "critic"])
    assert res.exit_code == 2 and "unknown stage" in res.output


def test_verify_command():
    assert runner.invoke(app, ["verify", "\\frac{1}{2}", "0.5"]).output.strip() == "true"
    assert runner.invoke(app, ["verify", "3", "x = 3"]).output.strip() == "true"
    wrong = runner.invoke(app, ["verify", "3", "4"])
    assert wrong.output.strip() == "false" and wrong.exit_code == 1  # usable in shell scripts
    assert runner.invoke(app, ["verify", "3", "3"]).exit_code == 0


def test_bad_set_yaml_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner.invoke(app, ["init"])
    res = runner.invoke(app, ["build", "--set", "stages.filter={[}"])
    assert res.exit_code == 2 and "not valid YAML" in res.output
    res = runner.invoke(app, ["build", "--set", "stages.filter.k=abc"])
    assert res.exit_code == 2 and "(with --set)" in res.output


def test_publish_into_a_foreign_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner.invoke(app, ["init"])
    assert runner.invoke(app, ["build", "-q", "--set", "source.count=4"]).exit_code == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["publish", "--to", str(foreign), "--set", "source.count=4"])
    assert res.exit_code == 2 and "holds no amc publication" in res.output
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
