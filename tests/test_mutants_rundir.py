"""The run directory's decisions (amc/engine/rundir.py), each on a hand-made directory: what a shard's entry and a
stage's data hash say, which state a stage is in, which shard is damaged and why, which files amc may delete, what
a failed write says. Written for the mutants bench/mutation.sh found surviving (issue 16)."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
import time
import unittest.mock
from pathlib import Path

import pytest

from amc.engine.rundir import (
    ManifestError,
    RunDir,
    RunDirError,
    append_line,
    data_hash,
    os_error,
    retryable_rejects,
    shard_entry,
)
from amc.errors import AmcError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ entries, hashes
def test_a_shard_entry_lists_written_files_and_takes_its_hash_from_the_data_file(tmp_path):
    entry = shard_entry(
        tmp_path,
        {
            "rejects/00000-of-00001.parquet": (2, b"rj"),
            "data/00000-of-00001.parquet": (5, b"data!"),
            "dropped/00000-of-00001.parquet": (0, None),
        },
        rows=5,
        rejects=2,
    )
    assert entry["rows"] == 5 and entry["rejects"] == 2
    assert entry["files"] == {
        "rejects/00000-of-00001.parquet": {"rows": 2, "bytes": 2, "sha256": _sha(b"rj")},
        "data/00000-of-00001.parquet": {"rows": 5, "bytes": 5, "sha256": _sha(b"data!")},
    }
    assert entry["sha256"] == _sha(b"data!")  # the data file's, not the first file's
    only_rejects = shard_entry(tmp_path, {"rejects/00000-of-00001.parquet": (1, b"r")}, rows=0)
    assert only_rejects["sha256"] is None


def test_the_data_hash_follows_shard_number_order_and_every_shard_hash():
    a = {"shards": {"2": {"sha256": "b"}, "10": {"sha256": "c"}, "1": {"sha256": "a"}}}
    same = {"shards": {"1": {"sha256": "a"}, "10": {"sha256": "c"}, "2": {"sha256": "b"}}}
    expected = hashlib.sha256(b"1:a\n2:b\n10:c").hexdigest()[:16]  # numeric order: 10 after 2
    assert data_hash(a) == data_hash(same) == expected
    assert data_hash({"shards": {**a["shards"], "10": {"sha256": "d"}}}) != expected
    assert data_hash({"shards": {**a["shards"], "10": {}}}) != expected  # a shard without data rows still counts
    assert data_hash({}) == hashlib.sha256(b"").hexdigest()[:16]


def test_only_engine_outages_count_as_retryable_rejects():
    manifest = {
        "shards": {
            "0": {"reject_reasons": {"engine_unavailable": 2, "engine_error": 5}},
            "1": {},
            "2": {"reject_reasons": {"engine_unavailable": 3, "grading_undecided": 1}},
        }
    }
    assert retryable_rejects(manifest) == 5
    assert retryable_rejects({}) == 0


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        (errno.ENOSPC, "the disk is full; free space and run the same command again (finished shards are kept)"),
        (errno.EDQUOT, "the disk quota is exceeded; free space and run the same command again"),
        (errno.EROFS, "the file system is read-only; choose a writable run_dir (--set run_dir=...)"),
        (errno.EACCES, "permission denied; make the run directory writable or choose another run_dir"),
        (errno.EPERM, "permission denied; make the run directory writable or choose another run_dir"),
        (errno.ENAMETOOLONG, "a file name is too long for the file system; choose a shorter name or run_dir"),
    ],
)
def test_a_failed_write_says_what_to_do(code, needle):
    err = os_error(OSError(code, "raw", "/runs/x/data/f.parquet"), "/runs/x")
    assert isinstance(err, RunDirError)
    assert str(err) == f"/runs/x/data/f.parquet: {needle}"


def test_a_failed_write_of_another_kind_keeps_its_own_words_and_names_the_path_when_the_error_does_not():
    assert str(os_error(OSError(errno.EIO, "I/O error"), "/runs/x")) == "/runs/x: I/O error"
    assert str(os_error(OSError("odd"), Path("/runs/y"))) == "/runs/y: odd"


# ------------------------------------------------------------------------------------------------ manifests
def _stage(tmp_path: Path, files: dict[str, bytes], status: str = "done") -> tuple[RunDir, dict]:
    """A stage 'sample' of two shards whose files are written as given."""
    rd = RunDir(tmp_path)
    shards: dict[str, dict] = {}
    for rel, data in files.items():
        (tmp_path / "sample" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sample" / rel).write_bytes(data)
        idx = str(int(rel.rsplit("/", 1)[-1][:5]))
        shards.setdefault(idx, {"rows": 1, "files": {}})["files"][rel] = {
            "rows": 1,
            "bytes": len(data),
            "sha256": _sha(data),
        }
    manifest = {"fingerprint": "fp", "input_data": "in", "status": status, "num_shards": 2, "shards": shards}
    rd.write_manifest("sample", manifest)
    return rd, manifest


TWO = {
    "data/00000-of-00002.parquet": b"zero",
    "rejects/00000-of-00002.parquet": b"zero rejects",
    "data/00001-of-00002.parquet": b"one!",
}


@pytest.mark.parametrize(
    ("field", "value", "typ"),
    [("fingerprint", 3, "str"), ("status", None, "str"), ("num_shards", "2", "int"), ("shards", [], "dict")],
)
def test_a_manifest_field_of_the_wrong_type_is_named(tmp_path, field, value, typ):
    rd, manifest = _stage(tmp_path, TWO)
    manifest[field] = value
    rd.manifest_path("sample").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=rf"field '{field}' is missing or not a {typ} .*amc clean --stage sample"):
        rd.read_manifest("sample")


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"  \n", "empty"),
        (b'{\n"a": }', "not valid JSON at line 2"),
        (b"\xff\xfe", "not a text file"),
        (b"[1]", "not a JSON object"),
    ],
)
def test_a_corrupt_manifest_says_what_is_wrong_with_it(tmp_path, content, what):
    rd, _ = _stage(tmp_path, TWO)
    rd.manifest_path("sample").write_bytes(content)
    with pytest.raises(
        ManifestError,
        match=rf"^{tmp_path}/sample/manifest\.json: {what} \(corrupt manifest\); "
        r"remove the stage with `amc clean --stage sample` and build again$",
    ):
        rd.read_manifest("sample")


@pytest.mark.parametrize("shard", [{"x": "1"}, {"1": []}, {"1": {"rows": "3"}}])
def test_a_malformed_shard_entry_is_named(tmp_path, shard):
    rd, manifest = _stage(tmp_path, TWO)
    manifest["shards"] = shard
    rd.manifest_path("sample").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=rf"shard '{next(iter(shard))}' is malformed"):
        rd.read_manifest("sample")


def test_a_never_started_stage_has_no_manifest_and_the_manifest_round_trips(tmp_path):
    rd, manifest = _stage(tmp_path, TWO)
    assert rd.read_manifest("critique") is None
    assert rd.read_manifest("sample") == manifest
    assert rd.manifest_path("sample") == tmp_path / "sample" / "manifest.json"
    assert rd.journal_path("sample") == tmp_path / "sample" / "manifest.journal"
    assert rd.cache_path == tmp_path / "cache.sqlite"


def test_journal_lines_of_another_manifest_or_of_no_manifest_token_are_not_applied(tmp_path):
    rd, manifest = _stage(tmp_path, {"data/00000-of-00002.parquet": b"zero"}, status="partial")
    token = manifest["journal"]
    lines = [
        {"journal": "other", "shard": "1", "entry": {"rows": 9}},
        [1, 2],
        {"journal": token, "shard": "1", "entry": {"rows": 4}},
    ]
    rd.journal_path("sample").write_bytes(b"\n".join(json.dumps(x).encode() for x in lines) + b"\n\n")
    assert rd.read_manifest("sample")["shards"]["1"] == {"rows": 4}
    # a manifest written without a token (by hand, or by an older amc) applies no journal line
    bare = {k: v for k, v in manifest.items() if k != "journal"}
    rd.manifest_path("sample").write_text(json.dumps(bare))
    assert "1" not in rd.read_manifest("sample")["shards"]
    # a later journal line for the same shard replaces the earlier one
    rd.write_manifest("sample", bare)
    rd.record_shard("sample", bare, 1, {"rows": 1})
    rd.record_shard("sample", bare, 1, {"rows": 2})
    assert rd.read_manifest("sample")["shards"]["1"] == {"rows": 2}


def test_each_manifest_write_draws_a_new_journal_token_and_removes_the_journal(tmp_path):
    rd, manifest = _stage(tmp_path, TWO, status="partial")
    first = manifest["journal"]
    rd.record_shard("sample", manifest, 1, {"rows": 1})
    assert rd.journal_path("sample").is_file()
    rd.write_manifest("sample", manifest)
    assert manifest["journal"] != first and len(manifest["journal"]) == 16
    assert not rd.journal_path("sample").exists()
    with pytest.raises(AssertionError):
        rd.record_shard("sample", {"shards": {}}, 0, {"rows": 1})  # journal lines belong to a written manifest


def test_a_journal_line_is_appended_on_a_line_of_its_own(tmp_path):
    path = tmp_path / "j"
    append_line(path, b"a\n")
    append_line(path, b"b\n")
    assert path.read_bytes() == b"a\nb\n"
    path.write_bytes(b"torn")
    append_line(path, b"c\n")
    assert path.read_bytes() == b"torn\nc\n"


def test_the_build_side_file_is_a_report_an_unreadable_one_is_none(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.read_build() is None
    rd.write_build({"stages": [1]})
    assert rd.read_build() == {"stages": [1]}
    (tmp_path / "build.json").write_text("[1]")
    assert rd.read_build() is None
    (tmp_path / "build.json").write_text("{half")
    assert rd.read_build() is None


# ------------------------------------------------------------------------------------------------ integrity
def test_a_missing_or_resized_file_is_damaged_and_an_altered_one_is_found_by_its_hash(tmp_path):
    rd, manifest = _stage(tmp_path, TWO)
    assert rd.damaged_shards("sample", manifest) == {} and rd.damaged_shards("sample", manifest, full=True) == {}
    (tmp_path / "sample" / "data" / "00001-of-00002.parquet").write_bytes(b"ONE!")  # same size, other bytes
    assert rd.damaged_shards("sample", manifest) == {}
    assert rd.damaged_shards("sample", manifest, full=True) == {
        1: "data/00001-of-00002.parquet does not match its sha256"
    }
    (tmp_path / "sample" / "rejects" / "00000-of-00002.parquet").write_bytes(b"short")
    assert rd.damaged_shards("sample", manifest) == {
        0: "rejects/00000-of-00002.parquet has 5 bytes, the manifest says 12"
    }
    (tmp_path / "sample" / "data" / "00000-of-00002.parquet").unlink()
    assert rd.damaged_shards("sample", manifest, full=True) == {
        0: "data/00000-of-00002.parquet is missing",
        1: "data/00001-of-00002.parquet does not match its sha256",
    }


def test_reading_a_listed_file_checks_it_against_its_own_shard(tmp_path):
    files = {**TWO, "data/extra.parquet": b"x"}
    rd, manifest = _stage_with_extra(tmp_path, files)
    for rel in files:
        rd.check_file("sample", manifest, rel)  # all intact
    rd.check_file("sample", manifest, "data/00007-of-00008.parquet")  # listed nowhere: nothing to check
    (tmp_path / "sample" / "data" / "00001-of-00002.parquet").write_bytes(b"ONE!")
    with pytest.raises(
        ManifestError,
        match=r"00001-of-00002\.parquet: shard 1 of stage 'sample' is missing or "
        r"damaged; run `amc build` to rebuild it from the cache",
    ):
        rd.check_file("sample", manifest, "data/00001-of-00002.parquet")
    rd.check_file("sample", manifest, "data/00000-of-00002.parquet")
    (tmp_path / "sample" / "data" / "extra.parquet").unlink()
    with pytest.raises(ManifestError, match="shard 0 of stage 'sample'"):
        rd.check_file("sample", manifest, "data/extra.parquet")


def _stage_with_extra(tmp_path: Path, files: dict[str, bytes]) -> tuple[RunDir, dict]:
    shard_named = {k: v for k, v in files.items() if k != "data/extra.parquet"}
    rd, manifest = _stage(tmp_path, shard_named)
    (tmp_path / "sample" / "data" / "extra.parquet").write_bytes(files["data/extra.parquet"])
    manifest["shards"]["0"]["files"]["data/extra.parquet"] = {"rows": 1, "bytes": 1, "sha256": _sha(b"x")}
    rd.write_manifest("sample", manifest)
    return rd, manifest


@pytest.mark.parametrize(
    ("status", "fingerprint", "input_data", "state"),
    [
        ("done", "fp", "in", "done"),
        ("partial", "fp", "in", "partial"),
        ("incomplete", "fp", "in", "incomplete"),
        ("done", "other", "in", "stale"),
        ("done", "fp", "other", "stale"),
        ("done", "fp", None, "stale"),
    ],
)
def test_the_state_of_a_stage(tmp_path, status, fingerprint, input_data, state):
    rd, _ = _stage(tmp_path, TWO, status=status)
    got, manifest, damaged = rd.stage_state("sample", fingerprint, input_data)
    assert (got, damaged) == (state, {}) and manifest["status"] == status
    assert rd.stage_state("critique", "fp", "in") == ("missing", None, {})


def test_a_damaged_stage_says_which_shard_and_a_hash_check_only_with_full(tmp_path):
    rd, _ = _stage(tmp_path, TWO, status="incomplete")
    (tmp_path / "sample" / "data" / "00001-of-00002.parquet").write_bytes(b"ONE!")
    assert rd.stage_state("sample", "fp", "in")[0] == "incomplete"
    state, manifest, damaged = rd.stage_state("sample", "fp", "in", full=True)
    assert state == "damaged" and list(damaged) == [1] and manifest is not None


# ------------------------------------------------------------------------------------------------ cleanup
def test_only_files_amc_wrote_are_removed_with_a_stage(tmp_path):
    rd, manifest = _stage_with_extra(tmp_path, {**TWO, "data/extra.parquet": b"x"})
    stage = tmp_path / "sample"
    rd.record_shard("sample", manifest, 1, manifest["shards"]["1"])
    amcs = [
        stage / "step_labels" / "00003-of-00004.parquet",  # shard-named, listed nowhere
        stage / "dropped" / ".00000-of-00002.parquet.k3j.tmp",
        stage / ".manifest.json.a1b2.tmp",
    ]
    users = [stage / "notes.txt", stage / "data" / "mine.parquet", stage / "data" / ".x.tmp", stage / "other" / "f"]
    for p in amcs + users:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"?")
    owned = rd.owned_files("sample")
    expected = sorted([stage / rel for rel in (*TWO, "data/extra.parquet")] + amcs)
    expected += [stage / "manifest.journal", stage / "manifest.json"]
    assert owned == sorted(expected)
    removed: list[str] = []
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        removed.append(self.name)
        real_unlink(self, missing_ok=missing_ok)

    with unittest.mock.patch.object(Path, "unlink", unlink):
        assert rd.remove_stage("sample") == len(expected)
    assert removed[-2:] == ["manifest.journal", "manifest.json"]  # a kill half-way leaves a damaged stage
    assert all(p.exists() for p in users) and not any(p.exists() for p in expected)
    assert not (stage / "rejects").exists() and not (stage / "dropped").exists()  # emptied folders go
    assert (stage / "data").is_dir()  # the user's file keeps its folder


def test_a_stage_with_a_corrupt_manifest_is_still_removed(tmp_path):
    rd, _ = _stage(tmp_path, TWO)
    rd.manifest_path("sample").write_text("{")
    assert rd.remove_stage("sample") == 4 and not (tmp_path / "sample").exists()
    assert rd.remove_stage("never") == 0


def test_removing_a_shard_removes_it_from_every_output_folder_only(tmp_path):
    rd, _ = _stage(tmp_path, TWO)
    rd.remove_shard("sample", "00000-of-00002.parquet")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet")) == [
        "sample/data/00001-of-00002.parquet"
    ]
    _stage(tmp_path, TWO)
    rd.remove_shard("sample", "00000-of-00002.parquet", folders=("rejects",))
    assert (tmp_path / "sample" / "data" / "00000-of-00002.parquet").exists()
    assert not (tmp_path / "sample" / "rejects" / "00000-of-00002.parquet").exists()


def test_temporary_files_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    rd = RunDir(tmp_path)
    assert RunDir(tmp_path / "nowhere").clean_tmp() == []
    tmps = [
        tmp_path / ".build.json.x1.tmp",
        tmp_path / "sample" / ".manifest.json.x2.tmp",
        tmp_path / "sample" / "data" / ".00000-of-00001.parquet.x3.tmp",
        tmp_path / "sample" / "step_labels" / ".00000-of-00001.parquet.x4.tmp",
    ]
    others = [
        tmp_path / ".notes.txt.x5.tmp",  # not a name amc writes
        tmp_path / "sample" / "data" / "00000-of-00001.parquet",
        tmp_path / "sample" / "other" / ".00000-of-00001.parquet.x6.tmp",  # not an output folder
        tmp_path / "sample" / "data" / "x.parquet.tmp",
    ]
    for p in tmps + others:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"?")
    (tmp_path / "sample" / "rejects" / ".00000-of-00001.parquet.dir.tmp").mkdir(parents=True)  # not a file
    assert sorted(rd.clean_tmp()) == sorted(tmps)
    assert all(p.exists() for p in others) and not any(p.exists() for p in tmps)


def test_removing_the_cache_takes_sqlites_side_files_too(tmp_path):
    rd = RunDir(tmp_path)
    names = ["cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm", "cache.sqlite-journal"]
    for n in names + ["cache.sqlite.bak"]:
        (tmp_path / n).write_bytes(b"?")
    assert rd.remove_cache() == 4
    assert [p.name for p in tmp_path.iterdir()] == ["cache.sqlite.bak"]
    assert rd.remove_cache() == 0


# ------------------------------------------------------------------------------------------------ lock
def test_one_build_at_a_time_and_building_says_so(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.building() is False
    with rd.lock():
        assert rd.building() is True
        assert RunDir(tmp_path / "run").building() is True
        second = RunDir(tmp_path / "run").lock()
        with pytest.raises(AmcError, match="another build is running in .*; wait for it or use another run_dir"):
            second.__enter__()
    assert rd.building() is False
    with rd.lock():  # released: the next build takes it
        pass


def test_a_build_in_another_process_is_seen_and_locks_this_one_out(tmp_path):
    ready = tmp_path / "ready"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom amc.engine.rundir import RunDir\n"
        f"with RunDir({str(tmp_path / 'run')!r}).lock():\n"
        f"    Path({str(ready)!r}).write_text('1')\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists()
        rd = RunDir(tmp_path / "run")
        assert rd.building() is True
        with pytest.raises(AmcError, match="another build is running"):
            rd.lock().__enter__()
    finally:
        proc.kill()
        proc.wait()
    assert rd.building() is False  # the operating system released the dead build's lock
