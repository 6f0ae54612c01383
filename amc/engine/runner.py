"""The run engine: builds stages in order like make, shard by shard, resumable, through the request cache.

Layout of a run directory (default ``runs/<name>/``)::

    cache.sqlite              request cache (every engine answer, by content hash)
    build.json                the last build: per stage built/skipped, requests made and served from cache
    <stage>/manifest.json     fingerprint, status, per-shard counts, funnel, models, templates
    <stage>/data/*.parquet    the stage's output (for ``filter``: the kept rows)
    <stage>/rejects/*.parquet rows the stage could not produce, with reasons
    <stage>/dropped/*.parquet rows a filter rule dropped, with the rule (``filter`` only)
    filter/step_labels/*.parquet  Math-Shepherd per-step labels, when switched on

Shard i of every stage is made from shard i of the stage before it, so all paths of a problem stay together and
a killed build resumes at the first shard its manifest does not list.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amc import __version__
from amc.config import PipelineConfig
from amc.engine.cache import RequestCache
from amc.engine.executors import Executor, LocalExecutor, ShardTask
from amc.engine.plan import (  # re-exported: status, publish and tests import them from here
    expected_fingerprints,
    output_model,
    source_stage,
    stage_fingerprint,
    stages_until,
    template_refs,
)
from amc.engine.rundir import (
    NOT_FROM_ANSWERS,
    RETRYABLE_REASONS,
    RunDir,
    data_hash,
    os_error,
    retryable_rejects,
    shard_entry,
    stage_totals,
)
from amc.engine.store import atomic_write_bytes, encode_records, read_records, shard_name
from amc.records import Reject
from amc.redact import redact
from amc.stages import Stage

__all__ = [
    "Runner",
    "StageReport",
    "expected_fingerprints",
    "read_manifest",
    "stage_fingerprint",
    "stages_until",
    "template_refs",
]


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """A stage folder's manifest, or None (see :meth:`amc.engine.rundir.RunDir.read_manifest`)."""
    return RunDir(stage_dir.parent).read_manifest(stage_dir.name)


@dataclass
class StageReport:
    name: str
    action: str  # built | resumed | repaired | skipped
    rows: int = 0
    rejects: int = 0
    dropped: int = 0
    made: int = 0
    cached: int = 0
    seconds: float = 0.0
    funnel: dict[str, int] = field(default_factory=dict)
    retryable: int = 0  # rejects from engine outages: the stage is incomplete until a rerun answers them
    damaged: int = 0  # shards found missing or altered on disk, rebuilt from the cache


class Runner:
    """Builds a pipeline's stages. ``Runner(cfg).build("filter")`` builds every stage up to the filter."""

    def __init__(
        self,
        cfg: PipelineConfig,
        show_progress: bool = True,
        *,
        verify: bool = False,
        retry_rejects: bool = False,
        executor: Executor | None = None,
    ):
        self.cfg = cfg
        self.executor = executor or LocalExecutor()  # runs shard tasks; only this driver writes the run dir
        self.run_dir = cfg.run_path
        self.rundir = RunDir(self.run_dir)
        self.show_progress = show_progress
        self.verify = verify  # check every shard's sha256, not just its size
        self.retry_rejects = retry_rejects  # redo the shards of every reject, not only engine outages

    # ------------------------------------------------------------------ build
    def build(self, until: str = "filter") -> list[StageReport]:
        plan = stages_until(until)
        with self.rundir.lock():
            self.rundir.clean_tmp()  # what a killed write left behind
            return self._build(plan, until)

    def _problems(self, cache: RequestCache) -> list[Any]:
        """Load the problems and start the executor, once, when the first stage that is not up to date begins.

        Bad input fails here, before any engine starts; a rerun of a finished build never loads them (generating
        or reading 100k problems would cost more than checking every manifest)."""
        if self._loaded is None:
            self._loaded = source_stage().load(self.cfg)
            # The problems live until the build ends (every stage looks rows up in them): move them, and what the
            # imports made, out of the cyclic collector's sight, so that its full collections do not walk a heap
            # that grows with the problem count (unfrozen when the build ends).
            gc.collect()
            gc.freeze()
            self.executor.start(self.cfg, cache, self._loaded)
        return self._loaded

    def _build(self, plan: list[Stage], until: str) -> list[StageReport]:
        self._loaded: list[Any] | None = None
        self._reask: frozenset[str] = frozenset()  # --retry-rejects: reject rows whose requests skip the cache
        cache = RequestCache(self.run_dir / "cache.sqlite")
        reports: list[StageReport] = []
        input_fp: str | None = None
        input_data: str | None = None
        started = time.time()
        try:
            for pos, stage in enumerate(plan):
                fp = stage_fingerprint(stage, self.cfg, input_fp)
                report = self._build_stage(stage, fp, input_data, cache)
                reports.append(report)
                if report.retryable:
                    break  # an outage: later stages would be built on missing rows; the next build resumes here
                # Free engines the next stage does not use: on one GPU, two big models seldom fit side by side,
                # and reloading one later costs less than running out of memory.
                self.executor.release_unused(plan[pos + 1 : pos + 2])
                input_fp = fp
                input_data = data_hash(self.rundir.read_manifest(stage.name) or {})
        finally:
            if self._loaded is not None:  # loaded, then frozen (_problems)
                gc.unfreeze()
            self.executor.close()
            cache.close()
            self.rundir.write_build(
                {
                    "until": until,
                    "seconds": round(time.time() - started, 3),
                    "stages": [r.__dict__ for r in reports],
                    "requests": {"made": sum(r.made for r in reports), "cached": sum(r.cached for r in reports)},
                    "incomplete": {r.name: r.retryable for r in reports if r.retryable},
                },
            )
        return reports

    def _stage_start(self, stage: Stage, fp: str, input_data: str | None) -> tuple[dict[str, Any] | None, str, int]:
        """Read a stage's manifest and decide: (manifest to resume or None to start afresh, action, damaged)."""
        state, manifest, damaged = self.rundir.stage_state(stage.name, fp, input_data, full=self.verify)
        # --retry-rejects: the rows rejected on cached answers are asked again, also where the stage is rebuilt
        # because its input changed (the same requests would find the same cached answers)
        self._reask = self._reasked_rows(stage, manifest, damaged) if self.retry_rejects and manifest else frozenset()
        if state in ("missing", "stale"):
            if manifest is not None:
                self.rundir.remove_stage(stage.name)  # stale: its config or input changed; only amc's files go
            return None, "built", 0
        assert manifest is not None
        redo = set(damaged)
        for idx, shard in manifest["shards"].items():
            reasons = shard.get("reject_reasons", {})
            if any(r in RETRYABLE_REASONS for r in reasons) or (self.retry_rejects and reasons):
                redo.add(int(idx))
        if state == "done" and not redo:
            return manifest, "skipped", 0
        action = "repaired" if damaged and manifest["status"] == "done" else "resumed"
        for idx in redo:
            del manifest["shards"][str(idx)]
        manifest["status"] = "partial"
        for key in ("rows", "rejects", "dropped", "funnel", "rejects_by_reason", "data_hash"):
            manifest.pop(key, None)
        self.rundir.write_manifest(stage.name, manifest)
        return manifest, action, len(damaged)

    def _reasked_rows(self, stage: Stage, manifest: dict[str, Any], damaged: Collection[int]) -> frozenset[str]:
        """Row ids of a stage's rejects that came from cached answers (an unparsable critique, a cut-off or
        answerless output...): ``--retry-rejects`` sends the requests that made them to the engine again. Outage
        rejects were never cached and an undecided grading needs no new answer, so neither is listed; a damaged
        shard's rejects are not read (it is rebuilt from the cache as it was)."""
        rows: set[str] = set()
        for idx, shard in manifest.get("shards", {}).items():
            if int(idx) in damaged or not set(shard.get("reject_reasons", {})) - RETRYABLE_REASONS - NOT_FROM_ANSWERS:
                continue
            path = self.rundir.stage_dir(stage.name) / "rejects" / shard_name(int(idx), manifest["num_shards"])
            try:
                self.rundir.check_file(stage.name, manifest, f"rejects/{path.name}")
                rejects = read_records(path, Reject) if path.is_file() else []
            except Exception:  # noqa: BLE001 - an unreadable rejects file: that shard's rows are not asked again
                continue
            rows.update(r.row_id for r in rejects if r.reason not in RETRYABLE_REASONS | NOT_FROM_ANSWERS)
        return frozenset(rows)

    def _write_shard(self, stage: Stage, manifest: dict[str, Any], i: int, res: Any) -> None:
        """Write one shard's outputs, then record them (rows, bytes, sha256 per file) in the stage's journal."""
        name = shard_name(i, manifest["num_shards"])
        stage_dir = self.rundir.stage_dir(stage.name)
        # A shard redone after a kill may differ from what the killed run left (a failed request now
        # answered): clear every output of the shard first, so no stale file survives beside the manifest.
        self.rundir.remove_shard(stage.name, name, ("data", "rejects", "dropped", *stage.extra_outputs))
        outputs: list[tuple[str, list[Any], Any]] = [("rejects", res.rejects, Reject)]
        if stage.dropped_output is not None:
            outputs.append(("dropped", res.dropped, stage.dropped_output))
        outputs += [(extra, rows, stage.extra_outputs[extra]) for extra, rows in res.extra.items()]
        outputs.append(("data", res.rows, stage.output))  # data last: its presence marks a finished write
        files: dict[str, tuple[int, bytes | None]] = {}
        for folder, rows, model in outputs:
            # An empty shard is not written at all: `datasets` cannot read a Parquet file with no rows.
            data = encode_records(rows, model) if rows else None
            if data is not None:
                try:
                    atomic_write_bytes(stage_dir / folder / name, data)
                except OSError as exc:
                    raise os_error(exc, stage_dir / folder / name) from None
            files[f"{folder}/{name}"] = (len(rows), data)
        entry = shard_entry(
            stage_dir,
            files,
            rows=len(res.rows),
            rejects=len(res.rejects),
            dropped=len(res.dropped),
            counts=dict(res.counts),
            reject_reasons=dict(Counter(r.reason for r in res.rejects)),
        )
        # one line appended to the stage's journal (O(1)); the manifest itself is written at the stage's end
        self.rundir.record_shard(stage.name, manifest, i, entry)

    def _build_stage(self, stage: Stage, fp: str, input_data: str | None, cache: RequestCache) -> StageReport:
        manifest, action, damaged = self._stage_start(stage, fp, input_data)
        if action == "skipped":
            assert manifest is not None
            return StageReport(
                stage.name,
                "skipped",
                rows=manifest["rows"],
                rejects=manifest["rejects"],
                dropped=manifest["dropped"],
                funnel=manifest["funnel"],
            )
        t0 = time.time()
        problems = self._problems(cache)
        made = cached = failed = 0
        usage: Counter[str] = Counter()

        if stage.input_stage is None:
            chunks: list[list[Any]] | None = stage.shards(problems, self.cfg.shard_size)
            num = len(chunks)
        else:
            chunks = None
            in_manifest = self.rundir.read_manifest(stage.input_stage)
            assert in_manifest is not None and in_manifest["status"] == "done", "input stage must be built first"
            num = in_manifest["num_shards"]
            in_dir = self.rundir.stage_dir(stage.input_stage) / "data"
            in_model = output_model(stage.input_stage)

        if manifest is None:
            manifest = {
                "stage": stage.name,
                "fingerprint": fp,
                "input_data": input_data,
                "status": "partial",
                "num_shards": num,
                "shards": {},
                "config": redact(stage.config_slice(self.cfg)),
                "code_version": __version__,
                "templates": template_refs(stage, self.cfg),
                "models": redact(stage.models(self.cfg)),
            }
            self.rundir.write_manifest(stage.name, manifest)
        todo = [i for i in range(num) if str(i) not in manifest["shards"]]

        def tasks() -> Iterator[ShardTask]:
            # Input shards are read as the executor asks for them, by this driver: workers need no shared disk.
            for i in todo:
                name = shard_name(i, num)
                if chunks is not None:
                    rows = chunks[i]
                else:
                    # the input shard is checked against its manifest entry as it is read (cheap: read anyway)
                    self.rundir.check_file(stage.input_stage, in_manifest, f"data/{name}")
                    rows = read_records(in_dir / name, in_model) if (in_dir / name).is_file() else []
                yield ShardTask(stage.name, i, rows, refresh=self._reask)

        with _progress(self.show_progress, f"{stage.name:<9}", num, num - len(todo)) as advance:
            for out in self.executor.run(stage, tasks()):
                # a remote worker's new answers go into the cache before its shard is recorded as done
                cache.put_many(out.cache_entries)
                self._write_shard(stage, manifest, out.index, out.result)
                made, cached, failed = made + out.made, cached + out.cached, failed + out.failed
                usage.update(out.usage)
                advance()

        retryable = retryable_rejects(manifest)
        manifest.update(
            {
                "status": "incomplete" if retryable else "done",
                **stage_totals(manifest),
                "requests": {"made": made, "cached": cached, "failed": failed},
                "usage": dict(usage),
                "data_hash": data_hash(manifest),
            }
        )
        self.rundir.write_manifest(stage.name, manifest)
        return StageReport(
            stage.name,
            action,
            rows=manifest["rows"],
            rejects=manifest["rejects"],
            dropped=manifest["dropped"],
            made=made,
            cached=cached,
            seconds=round(time.time() - t0, 3),
            funnel=manifest["funnel"],
            retryable=retryable,
            damaged=damaged,
        )


class _progress:
    """A rich progress bar over a stage's shards (silent when disabled)."""

    def __init__(self, enabled: bool, label: str, total: int, completed: int):
        self.enabled, self.label, self.total, self.completed = enabled, label, total, completed

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("shards"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._p.start()
        task = self._p.add_task(self.label, total=self.total, completed=self.completed)
        return lambda: self._p.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.stop()
