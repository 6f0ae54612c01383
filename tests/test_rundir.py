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


# ------------------------------------------------------------------------------------------------ journal
def test_each_shard_is_a_journal_line_and_the_manifest_is_written_twice_per_stage(tmp_path, monkeypatch):
    """Finished shards are appended to a journal; the manifest is written at a stage's start and end only, so a
    stage's bookkeeping grows linearly with its shards (it was rewritten after every shard: quadratic)."""
    writes: list[str] = []
    journaled: list[tuple[str, int]] = []
    real_write, real_record = RunDir.write_manifest, RunDir.record_shard

    def write(self, stage, manifest):
        writes.append(stage)
        real_write(self, stage, manifest)

    def record(self, stage, manifest, idx, entry):
        real_record(self, stage, manifest, idx, entry)
        journaled.append((stage, idx))
        # the line is on disk before the shard counts as done, and readers see it through read_manifest
        assert self.journal_path(stage).is_file()
        assert str(idx) in self.read_manifest(stage)["shards"]
        assert str(idx) not in json.loads(self.manifest_path(stage).read_text())["shards"]

    monkeypatch.setattr(RunDir, "write_manifest", write)
    monkeypatch.setattr(RunDir, "record_shard", record)
    run_dir = tmp_path / "run"
    Runner(_cfg(run_dir, "source.count=24", "shard_size=2"), show_progress=False).build()
    rd = RunDir(run_dir)
    for stage in ("problems", "sample", "inject", "critique", "filter"):
        assert writes.count(stage) == 2, (stage, writes)
        assert sorted(i for s, i in journaled if s == stage) == list(range(12))
        assert not rd.journal_path(stage).exists()  # folded into the manifest at the stage's end
        manifest = json.loads(rd.manifest_path(stage).read_text())
        assert manifest["status"] == "done" and sorted(map(int, manifest["shards"])) == list(range(12))


def _journaled(tmp_path: Path) -> tuple[RunDir, dict]:
    rd = RunDir(tmp_path)
    (tmp_path / "sample").mkdir(parents=True)
    manifest = {"stage": "sample", "fingerprint": "f", "status": "partial", "num_shards": 4, "shards": {}}
    rd.write_manifest("sample", manifest)
    for i in (0, 1):
        rd.record_shard("sample", manifest, i, {"rows": i + 1, "files": {}, "sha256": None})
    return rd, manifest


def test_a_journal_line_torn_by_a_kill_is_ignored_and_the_next_line_is_kept(tmp_path):
    rd, manifest = _journaled(tmp_path)
    line = json.dumps({"journal": manifest["journal"], "shard": "2", "entry": {"rows": 3, "files": {}}})
    with open(rd.journal_path("sample"), "ab") as fh:
        fh.write(line[: len(line) // 2].encode())  # killed mid-append
    assert sorted(rd.read_manifest("sample")["shards"]) == ["0", "1"]
    # a later append starts a new line instead of joining the torn one
    rd.record_shard("sample", manifest, 3, {"rows": 4, "files": {}, "sha256": None})
    assert sorted(rd.read_manifest("sample")["shards"]) == ["0", "1", "3"]
    assert rd.read_manifest("sample")["shards"]["3"]["rows"] == 4


def test_a_journal_left_beside_a_newer_manifest_is_not_applied_again(tmp_path):
    """Killed between the manifest's rename and the journal's removal: the old lines carry the old token."""
    rd, manifest = _journaled(tmp_path)
    stale = rd.journal_path("sample").read_bytes()
    merged = rd.read_manifest("sample")
    del merged["shards"]["1"]  # e.g. a damaged shard dropped at a resume, to be redone
    rd.write_manifest("sample", merged)
    assert not rd.journal_path("sample").exists()
    rd.journal_path("sample").write_bytes(stale)  # as if the removal never happened
    assert sorted(rd.read_manifest("sample")["shards"]) == ["0"]


def test_a_malformed_journal_entry_is_one_line_naming_the_journal(tmp_path):
    rd, manifest = _journaled(tmp_path)
    with open(rd.journal_path("sample"), "ab") as fh:
        fh.write(json.dumps({"journal": manifest["journal"], "shard": "x", "entry": []}).encode() + b"\n")
    with pytest.raises(ManifestError, match=r"manifest\.journal.*amc clean --stage sample"):
        rd.read_manifest("sample")


def test_a_stage_killed_with_a_journal_resumes_from_it_and_cleaning_removes_it(tmp_path):
    """A partial stage whose shards are only in its journal: status counts them, a build resumes after them
    (their files untouched) and gives the same data as an uninterrupted build; clean removes the journal."""
    run_dir = tmp_path / "run"
    sets = ("source.count=24", "shard_size=2")
    Runner(_cfg(run_dir, *sets), show_progress=False).build("critique")
    rd = RunDir(run_dir)
    full = rd.read_manifest("critique")
    # as a build killed after its fifth critique shard leaves it: the stage's start manifest plus five lines
    start = {k: v for k, v in full.items() if k in ("stage", "fingerprint", "input_data", "num_shards", "config")}
    start.update(status="partial", shards={})
    rd.write_manifest("critique", start)
    for i in range(5):
        rd.record_shard("critique", start, i, full["shards"][str(i)])
    for i in range(5, full["num_shards"]):
        rd.remove_shard("critique", store.shard_name(i, full["num_shards"]))
    kept = {p: p.stat().st_mtime_ns for p in (run_dir / "critique" / "data").glob("*.parquet")}
    status = run_status(_cfg(run_dir, *sets))["stages"]["critique"]
    assert status["state"] == "partial"
    reports = Runner(_cfg(run_dir, *sets), show_progress=False).build("critique")
    assert reports[-1].action == "resumed"
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    reference = tmp_path / "reference"
    Runner(_cfg(reference, *sets), show_progress=False).build("critique")
    assert _data(run_dir) == _data(reference)
    assert not rd.journal_path("critique").exists()
    rd.record_shard("critique", rd.read_manifest("critique"), 0, rd.read_manifest("critique")["shards"]["0"])
    assert rd.remove_stage("critique") > 0 and not (run_dir / "critique").exists()


def test_status_of_a_killed_stage_counts_the_rejects_and_drops_of_its_finished_shards(tmp_path):
    """A stage's totals are written when it ends: `amc status` of a killed build showed 0 rejects for a stage whose
    finished shards had rejected hundreds of paths. Until the end they are the sums of the finished shards."""
    run_dir = tmp_path / "run"
    sets = ("source.count=24", "shard_size=2")
    Runner(_cfg(run_dir, *sets), show_progress=False).build("filter")
    rd = RunDir(run_dir)
    for stage, key in (
        ("filter", "dropped"),
        ("inject", "rejects"),
    ):  # downstream first: a partial stage makes those after it stale
        full = rd.read_manifest(stage)
        start = {k: v for k, v in full.items() if k in ("stage", "fingerprint", "input_data", "num_shards", "config")}
        start.update(status="partial", shards={})
        rd.write_manifest(stage, start)
        for i in range(4):
            rd.record_shard(stage, start, i, full["shards"][str(i)])
        done = [full["shards"][str(i)] for i in range(4)]
        status = run_status(_cfg(run_dir, *sets))["stages"][stage]
        assert status["state"] == "partial" and status["shards"] == f"4/{full['num_shards']}"
        assert status[key] == sum(e[key] for e in done) > 0, (stage, status)
        assert status["rows"] == sum(e["rows"] for e in done)
        if key == "rejects":
            assert sum(status["rejects_by_reason"].values()) == status["rejects"]


# ------------------------------------------------------------------------------------------------ lock
def test_a_killed_builds_leftover_child_does_not_lock_its_rerun_out(tmp_path):
    """The build lock is a POSIX record lock: a child forked while it was held (grading pool, forked workers)
    does not inherit it, so a build killed while its child lives on does not lock its rerun out (with flock the
    orphan kept the lock: "another build is running")."""
    import signal
    import subprocess
    import sys

    pid_file = tmp_path / "orphan.pid"
    code = (
        "import os, time\nfrom pathlib import Path\nfrom amc.engine.rundir import RunDir\n"
        f"with RunDir({str(tmp_path)!r}).lock():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
        f"    Path({str(pid_file)!r}).write_text(str(pid))\n    os.kill(os.getpid(), 9)\n"
    )
    # no pipes: the orphan would keep them open
    subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    orphan = int(pid_file.read_text())
    try:
        os.kill(orphan, 0)  # the orphan still lives
        assert RunDir(tmp_path).building() is False
        with RunDir(tmp_path).lock():
            assert RunDir(tmp_path).building() is True
            with pytest.raises(AmcError, match="another build is running"), RunDir(tmp_path).lock():
                pass  # a second build from this process is refused too
            assert RunDir(tmp_path).building() is True  # and checking did not drop the lock
        assert RunDir(tmp_path).building() is False
    finally:
        os.kill(orphan, signal.SIGKILL)
