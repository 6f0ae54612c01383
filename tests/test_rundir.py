"""The run directory: integrity of what is on disk, broken state and bad input give one clear line, safety."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amc.cli import app
from amc.config import load_config
from amc.engine import store
from amc.engine.rundir import ManifestError, RunDir
from amc.engine.runner import Runner
from amc.engine.status import run_status
from amc.errors import AmcError, ConfigError, InputError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def _sets(run_dir: Path, *extra: str) -> list[str]:
    return [f"run_dir={run_dir}", "source.count=8", "shard_size=4", *extra]


def _cfg(run_dir: Path, *extra: str):
    return load_config(QUICKSTART, _sets(run_dir, *extra))


def _cli(run_dir: Path, *args: str, sets: tuple[str, ...] = ()):
    argv = [*args, "--config", str(QUICKSTART)]
    for s in _sets(run_dir, *sets):
        argv += ["--set", s]
    return CliRunner().invoke(app, argv)


def _data(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.glob("*/*/*.parquet"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    run_dir = tmp_path_factory.mktemp("rd") / "run"
    Runner(_cfg(run_dir), show_progress=False).build()
    return run_dir, _data(run_dir)


def _copy(built, tmp_path: Path) -> Path:
    import shutil

    src, _ = built
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------ integrity
def test_manifests_list_each_shard_file_with_rows_bytes_and_sha256(built):
    run_dir, _ = built
    rd = RunDir(run_dir)
    for stage in ("problems", "sample", "inject", "critique", "filter"):
        m = rd.read_manifest(stage)
        assert m is not None and m["status"] == "done"
        for shard in m["shards"].values():
            for rel, info in shard["files"].items():
                data = (run_dir / stage / rel).read_bytes()
                assert info["bytes"] == len(data)
                import hashlib

                assert info["sha256"] == hashlib.sha256(data).hexdigest()
            data_files = [v for k, v in shard["files"].items() if k.startswith("data/")]
            assert sum(v["rows"] for v in data_files) == shard["rows"]


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
def test_a_damaged_shard_is_shown_damaged_rebuilt_from_the_cache_and_export_refuses_it(built, tmp_path, damage):
    run_dir = _copy(built, tmp_path)
    shard = sorted((run_dir / "critique" / "data").glob("*.parquet"))[0]
    if damage == "delete":
        shard.unlink()
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:100])
    else:  # same size, other bytes: only the hash sees it
        shard.write_bytes(b"\0" * shard.stat().st_size)
    cfg = _cfg(run_dir)
    state = run_status(cfg, verify=damage == "garbage")["stages"]["critique"]
    assert state["state"] == "damaged" and state["damaged"]
    if damage == "garbage":  # a plain status checks sizes only
        assert run_status(cfg)["stages"]["critique"]["state"] == "done"
    # export reads every file anyway, so it checks every hash, and refuses
    from amc.publish import PublishError
    from amc.publish.exports import read_run

    with pytest.raises(PublishError, match="damaged"):
        read_run(cfg)
    res = _cli(run_dir, "build", "-q", *(["--verify"] if damage == "garbage" else []))
    assert res.exit_code == 0, res.output
    assert "rebuilt from the cache" in res.output
    last = json.loads((run_dir / "build.json").read_text())
    assert last["requests"]["made"] == 0
    assert {s["name"]: s["action"] for s in last["stages"]}["critique"] == "repaired"
    assert {s["name"]: s["action"] for s in last["stages"]}["filter"] == "skipped"  # same content: not stale
    assert _data(run_dir) == built[1]


def test_temporary_files_of_a_killed_write_are_cleaned_at_the_next_build(built, tmp_path):
    run_dir = _copy(built, tmp_path)
    tmp = run_dir / "sample" / "data" / ".00000-of-00002.parquet.abc123.tmp"
    tmp.write_bytes(b"half")
    mine = run_dir / "sample" / "data" / "notes.txt"
    mine.write_text("the user's")
    Runner(_cfg(run_dir), show_progress=False).build()
    assert not tmp.exists() and mine.read_text() == "the user's"


def test_a_stale_stage_deletes_only_files_amc_wrote(built, tmp_path):
    run_dir = _copy(built, tmp_path)
    keep = [run_dir / "filter" / "README.txt", run_dir / "filter" / "data" / "mine.parquet"]
    for p in keep:
        p.write_text("not amc's")
    Runner(_cfg(run_dir, "stages.filter.k=3"), show_progress=False).build()
    assert all(p.read_text() == "not amc's" for p in keep)
    assert "'k': 3" in str(RunDir(run_dir).read_manifest("filter")["config"])


def test_a_name_of_dots_is_refused(tmp_path):
    for name in (".", ".."):
        with pytest.raises(ConfigError, match="dots"):
            load_config(QUICKSTART, [f"name={name}"])


# ------------------------------------------------------------------------------------------------ broken state
@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"fingerprint": 3}', b"\xff\xfe"])
def test_a_corrupt_manifest_is_one_line_naming_the_file_and_the_way_out(built, tmp_path, content):
    run_dir = _copy(built, tmp_path)
    (run_dir / "inject" / "manifest.json").write_bytes(content)
    with pytest.raises(ManifestError) as info:
        RunDir(run_dir).read_manifest("inject")
    message = str(info.value)
    assert str(run_dir / "inject" / "manifest.json") in message and "amc clean --stage inject" in message
    for command in ("build", "status"):
        res = _cli(run_dir, command)
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "amc clean --stage inject" in " ".join(res.output.split())
    res = _cli(run_dir, "clean", "--stage", "inject")
    assert res.exit_code == 0, res.output
    assert _cli(run_dir, "build", "-q").exit_code == 0
    assert _data(run_dir) == built[1]


def test_a_corrupt_cache_is_named_and_a_stage_without_engine_still_builds(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "cache.sqlite").write_bytes(b"this is not a database, not even close" * 100)
    assert _cli(run_dir, "build", "-q", "--stage", "problems").exit_code == 0
    res = _cli(run_dir, "build", "-q")
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and "cache.sqlite" in message and "amc clean --cache" in message
    assert "Traceback" not in res.output
    assert _cli(run_dir, "clean", "--cache").exit_code == 0
    assert _cli(run_dir, "build", "-q").exit_code == 0


def test_a_full_disk_is_one_clear_line_and_a_rerun_finishes(built, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real = store.atomic_write_bytes
    calls = {"n": 0}

    def full_after_some(path, data):
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    import amc.engine.runner as runner_mod

    monkeypatch.setattr(runner_mod, "atomic_write_bytes", full_after_some)
    monkeypatch.setattr(store, "atomic_write_bytes", full_after_some)
    with pytest.raises(AmcError, match="disk is full") as info:
        Runner(_cfg(run_dir), show_progress=False).build()
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    Runner(_cfg(run_dir), show_progress=False).build()  # the disk has space again: the same command finishes
    assert _data(run_dir) == built[1]


def test_a_read_only_run_directory_is_one_clear_line(built, tmp_path, monkeypatch):
    run_dir = _copy(built, tmp_path)
    before = _data(run_dir)
    if os.geteuid() == 0:  # root writes into read-only folders: the file system's answer is simulated
        import builtins

        from amc.engine import rundir

        def read_only(file, mode="r", *args, **kwargs):
            if "w" in mode:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
            return builtins.open(file, mode, *args, **kwargs)

        monkeypatch.setattr(rundir, "open", read_only, raising=False)
    for p in [run_dir, *run_dir.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    try:
        res = _cli(run_dir, "build", "-q", sets=("stages.filter.k=3",))
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "permission denied" in res.output or "read-only" in res.output
    finally:
        for p in [run_dir, *run_dir.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
    assert _data(run_dir) == before


def test_a_long_name_is_refused_and_a_long_run_dir_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="at most 100"):
        load_config(QUICKSTART, ["name=" + "a" * 300])
    res = _cli(tmp_path / ("b" * 300), "build", "-q")
    assert res.exit_code == 2 and "too long" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"question": "q", "answer": "1"}\n{"question": "\xff", "answer": "2"}\n', "row 2: not valid UTF-8"),
        (b'{"question": "q", "answer": ' + b"9" * 5000 + b"}\n", "more than 4300 digits"),
        (b'{"question": "q", "answer": NaN}\n', "NaN is not an answer"),
        (b'{"question": "q", "answer": Infinity}\n', "Infinity is not an answer"),
        (b'{"question": "q", "answer": -Infinity}\n', "Infinity is not an answer"),
        (b"", "no problem"),
        (b"\n\n", "no problem"),
    ],
)
def test_bad_source_rows_name_the_file_and_row(tmp_path, content, needle):
    from amc.sources import load_problems

    path = tmp_path / "p.jsonl"
    path.write_bytes(content)
    cfg = load_config(QUICKSTART, [f"source={{kind: file, path: '{path}'}}"])
    with pytest.raises(InputError) as info:
        load_problems(cfg.sources[0], seed=0)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_a_json_array_with_bad_utf8_or_huge_numbers_names_the_file(tmp_path):
    from amc.sources import load_problems

    for content in (b'[{"question": "\xff", "answer": "1"}]', b'[{"question": "q", "answer": ' + b"7" * 5000 + b"}]"):
        path = tmp_path / "p.json"
        path.write_bytes(content)
        cfg = load_config(QUICKSTART, [f"source={{kind: file, path: '{path}'}}"])
        with pytest.raises(InputError, match=str(path)):
            load_problems(cfg.sources[0], seed=0)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("source.count=0", "(with --set): source.count: Input should be greater than or equal to 1"),
        ("source.min_steps=6", "(with --set): source: min_steps (6) must not exceed max_steps (5)"),
        ("source.max_steps=100000", "source.max_steps: Input should be less than or equal to 50"),
        ("source=[{count: 0}]", "source.0.count"),
    ],
)
def test_config_errors_are_short_and_say_when_set_caused_them(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, [override])
    message = str(info.value)
    assert needle in message and "tagged-union" not in message and "list[" not in message
    assert len(message) < 200


def test_a_key_in_api_key_env_is_never_echoed():
    key = "sk-abcdefghijklmnopqrstuvwxyz0123456789"
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, [f"models.annotator.api_key_env={key}"])
    assert key not in str(info.value) and "abcdefghij" not in str(info.value)
    assert "environment variable" in str(info.value)


def test_a_publish_cut_short_by_a_full_disk_is_resumed_without_deleting_by_hand(built, tmp_path, monkeypatch):
    from amc.publish import ExportOptions, PublishError, build_publication, publish_local
    from amc.publish import local as local_mod

    run_dir, _ = built
    pub = build_publication(_cfg(run_dir), ExportOptions(test_fraction=0.25))
    real = local_mod.atomic_write_bytes
    calls = {"n": 0}

    def full_after_two(path, data):
        calls["n"] += 1
        if calls["n"] > 2:
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / f".{path.name}.x1.tmp").write_bytes(data[:10])  # what a cut write leaves
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(local_mod, "atomic_write_bytes", full_after_two)
    out = tmp_path / "out"
    with pytest.raises(PublishError, match="disk is full") as info:
        publish_local(pub, out)
    assert "\n" not in str(info.value) and any(out.rglob("*.parquet"))
    monkeypatch.undo()
    publish_local(pub, out)  # the same command, once there is space: resumed, not refused
    clean = tmp_path / "clean"
    publish_local(pub, clean)
    files = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}  # noqa: E731
    assert files(out) == files(clean)
