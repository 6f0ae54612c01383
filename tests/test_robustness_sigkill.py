"""SIGKILL at random points of every stage, again and again: the finished dataset is byte-identical to an
uninterrupted build's, with no duplicate and no lost row, and no temporary file survives.

Each build runs in a forked child (no interpreter start-up per kill, so dozens of kills take seconds). The child
kills itself with SIGKILL (no cleanup of any kind runs) at a randomly drawn "event": before, in the middle of (the
temporary file written, not yet renamed) or after a file write, before, in the middle of (half the line on disk) or
after a journal append (a finished shard's record), or after a request-cache commit. The draws are
seeded, so a failure replays.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from amc.config import load_config
from amc.engine import store
from amc.engine.cache import RequestCache
from amc.engine.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"
STAGES = ("problems", "sample", "inject", "critique", "filter")
SETS = [
    "source.count=8",
    "shard_size=2",
    "stages.filter.step_labels.enabled=true",
    "stages.filter.step_labels.rollouts=2",
]


def _child(run_dir: Path, kill_at: int | None, log: Path) -> None:
    """Build in this (forked) process; SIGKILL itself at event number ``kill_at``. Never returns."""
    code = 1
    try:
        from amc.engine import rundir, runner

        events = {"n": 0}
        real_write = store.atomic_write_bytes
        real_put = RequestCache.put_many

        def event(where: str) -> None:
            events["n"] += 1
            if events["n"] == kill_at:
                with open(log, "a") as fh:  # where the kill fell (the parent tallies the stages)
                    fh.write(where + "\n")
                os.kill(os.getpid(), signal.SIGKILL)

        def write(path: Path, data: bytes) -> None:
            stage = next((s for s in STAGES if s in Path(path).parts), "run")
            event(f"{stage} before-write {Path(path).name}")
            if kill_at is not None and events["n"] + 1 == kill_at:  # mid-write: a temporary file, no rename
                path.parent.mkdir(parents=True, exist_ok=True)
                (path.parent / f".{path.name}.killed.tmp").write_bytes(data[: len(data) // 2])
            event(f"{stage} mid-write {Path(path).name}")
            real_write(path, data)
            event(f"{stage} after-write {Path(path).name}")

        def put(self, items):
            real_put(self, items)
            if items:
                event("cache after-commit")

        real_append = rundir.append_line

        def append(path: Path, line: bytes) -> None:  # a finished shard's journal line
            stage = next((s for s in STAGES if s in Path(path).parts), "run")
            event(f"{stage} before-append {Path(path).name}")
            if kill_at is not None and events["n"] + 1 == kill_at:  # mid-append: half the line on disk
                with open(path, "ab") as fh:
                    fh.write(line[: len(line) // 2])
            event(f"{stage} mid-append {Path(path).name}")
            real_append(path, line)
            event(f"{stage} after-append {Path(path).name}")

        runner.atomic_write_bytes = write
        store.atomic_write_bytes = write
        rundir.append_line = append
        RequestCache.put_many = put
        runner.Runner(load_config(QUICKSTART, [f"run_dir={run_dir}", *SETS]), show_progress=False).build()
        code = 0
    finally:
        os._exit(code)


def _run(run_dir: Path, kill_at: int | None, log: Path) -> str:
    """Fork a build; 'killed', 'finished' or 'failed'."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        _child(run_dir, kill_at, log)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:  # pragma: no cover - a hung child fails the test, never hangs it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.01)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "finished" if os.WEXITSTATUS(status) == 0 else "failed"


def _dataset(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.glob("*/*/*.parquet"))}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_twenty_and_more_sigkills_in_every_stage_leave_the_dataset_identical(tmp_path):
    log = tmp_path / "kills.log"
    reference = tmp_path / "reference"
    assert _run(reference, None, log) == "finished"
    expected = _dataset(reference)
    assert any(k.startswith("filter/step_labels/") for k in expected)

    rng = random.Random(20241116)
    kills = 0
    for campaign in range(4):  # campaigns until at least 20 kills (one is usually enough)
        if kills >= 20:
            break
        run_dir = tmp_path / f"run{campaign}"
        for _ in range(200):  # bounded: each kill falls at a later event than the build could reach before
            outcome = _run(run_dir, rng.randint(1, 30), log)
            assert outcome in ("killed", "finished"), outcome
            if outcome == "finished":
                break
            kills += 1
        else:  # pragma: no cover
            pytest.fail("the build never finished")
        assert _run(run_dir, None, log) == "finished"  # and a last plain build changes nothing
        assert _dataset(run_dir) == expected
        assert not [p for p in run_dir.rglob("*.tmp")], "a temporary file survived"
        assert not [p for p in run_dir.rglob("manifest.journal")], "a journal was not folded into its manifest"
        rd = RunDir(run_dir)
        for stage in STAGES:
            manifest = rd.read_manifest(stage)
            assert manifest is not None and manifest["status"] == "done"
            assert rd.damaged_shards(stage, manifest, full=True) == {}
        import pyarrow.parquet as pq

        for stage in STAGES:  # no duplicate row (and, by the byte equality above, no lost one)
            ids = [
                i
                for f in sorted((run_dir / stage / "data").glob("*.parquet"))
                for i in pq.read_table(f)["id"].to_pylist()
            ]
            assert len(ids) == len(set(ids))
    where = log.read_text().splitlines()
    print(f"{kills} kills:", sorted({w.split()[0] for w in where}))
    assert kills >= 20 and len(where) == kills
    stages_hit = {line.split()[0] for line in where}
    assert set(STAGES) <= stages_hit, stages_hit
    assert any("mid-write" in line for line in where) and any("cache" in line for line in where)
    assert any("mid-append" in line for line in where), "no kill tore a journal line"
