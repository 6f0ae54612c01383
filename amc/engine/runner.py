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

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amc import __version__
from amc.backends import create
from amc.config import STAGES as STAGE_NAMES
from amc.config import FileSource, ModelConfig, PipelineConfig
from amc.engine.cache import CachedBackend, RequestCache
from amc.engine.rundir import (
    RETRYABLE_REASONS,
    RunDir,
    data_hash,
    os_error,
    retryable_rejects,
    shard_entry,
)
from amc.engine.store import atomic_write_bytes, encode_records, read_records, shard_name
from amc.prompts import load_template
from amc.records import Reject
from amc.redact import redact
from amc.stages import STAGE_ORDER, Stage, StageContext
from amc.stages.problems import ProblemsStage


def stages_until(until: str) -> list[Stage]:
    if until not in STAGE_NAMES:
        raise ValueError(f"unknown stage '{until}'; stages are {', '.join(STAGE_NAMES)}")
    return list(STAGE_ORDER[: STAGE_NAMES.index(until) + 1])


def _source_content(cfg: PipelineConfig) -> list[str | None]:
    """Hashes of local source files, so that editing a file makes the problems stage stale."""
    return [
        hashlib.sha256(Path(src.path).read_bytes()).hexdigest()
        if isinstance(src, FileSource) and Path(src.path).is_file()
        else None
        for src in cfg.sources
    ]


def template_refs(stage: Stage, cfg: PipelineConfig) -> list[str]:
    """``name@version#digest`` of each template a stage renders: its version label and its actual text."""
    refs = []
    for name in stage.templates(cfg):
        t = load_template(name, cfg.prompts_dir)
        refs.append(f"{t.ref}#{t.digest}")
    return refs


def stage_fingerprint(stage: Stage, cfg: PipelineConfig, input_fp: str | None) -> str:
    """Hash of what a stage's output depends on: its config slice, its input, its templates and code version."""
    payload: dict[str, Any] = {
        "stage": stage.name,
        "stage_version": stage.version,
        "code_version": __version__,
        "config": stage.config_slice(cfg),
        "input": input_fp,
        "templates": template_refs(stage, cfg),
    }
    if stage.name == "problems":
        payload["source_content"] = _source_content(cfg)
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expected_fingerprints(cfg: PipelineConfig) -> dict[str, str]:
    fps: dict[str, str] = {}
    prev = None
    for stage in STAGE_ORDER:
        prev = fps[stage.name] = stage_fingerprint(stage, cfg, prev)
    return fps


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


class _Backends:
    """Cache-wrapped engines by model block, created on first use and closed when no later stage needs them."""

    def __init__(self, cfg: PipelineConfig, cache: RequestCache):
        self.cfg, self.cache = cfg, cache
        self._live: dict[str, CachedBackend] = {}

    @staticmethod
    def _key(model_cfg: Any) -> str:
        return json.dumps(model_cfg.model_dump(), sort_keys=True)

    def get(self, role: str | ModelConfig) -> CachedBackend:
        """The engine of a role ('actor', 'annotator', ...) or of an explicit model block."""
        model_cfg = role if isinstance(role, ModelConfig) else self.cfg.models.for_role(role)
        key = self._key(model_cfg)
        if key not in self._live:
            self._live[key] = CachedBackend(
                None,
                self.cache,
                factory=lambda: create(model_cfg),
                engine=model_cfg.engine,
                model=model_cfg.model,
                revision=model_cfg.revision,
                identity=model_cfg.identity(),
            )
        return self._live[key]

    def counters(self) -> tuple[int, int, int]:
        live = self._live.values()
        return sum(b.made for b in live), sum(b.cached for b in live), sum(b.failed for b in live)

    def usage(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for b in self._live.values():
            if b.started:
                total.update(getattr(b.backend, "usage", None) or {})
        return dict(total)

    def release_unused(self, later: list[Stage]) -> None:
        """Free engines (and their GPU memory) that none of ``later`` uses."""
        needed = {self._key(self.cfg.models.for_role(r)) for s in later for r in s.roles}
        for key in [k for k in self._live if k not in needed]:
            self._live.pop(key).close()

    def close(self) -> None:
        self.release_unused([])


class Runner:
    """Builds a pipeline's stages. ``Runner(cfg).build("filter")`` builds every stage up to the filter."""

    def __init__(
        self, cfg: PipelineConfig, show_progress: bool = True, *, verify: bool = False, retry_rejects: bool = False
    ):
        self.cfg = cfg
        self.run_dir = cfg.run_path
        self.rundir = RunDir(self.run_dir)
        self.show_progress = show_progress
        self.verify = verify  # check every shard's sha256, not just its size
        self.retry_rejects = retry_rejects  # redo the shards of every reject, not only engine outages

    # ------------------------------------------------------------------ build
    def build(self, until: str = "filter") -> list[StageReport]:
        plan = stages_until(until)
        # Bad input fails here, before any engine starts.
        problems = ProblemsStage().load(self.cfg)
        with self.rundir.lock():
            self.rundir.clean_tmp()  # what a killed write left behind
            return self._build(plan, until, problems)

    def _build(self, plan: list[Stage], until: str, problems: list[Any]) -> list[StageReport]:
        cache = RequestCache(self.run_dir / "cache.sqlite")
        backends = _Backends(self.cfg, cache)
        reports: list[StageReport] = []
        input_fp: str | None = None
        input_data: str | None = None
        started = time.time()
        try:
            for pos, stage in enumerate(plan):
                fp = stage_fingerprint(stage, self.cfg, input_fp)
                report = self._build_stage(stage, fp, input_data, problems, backends)
                reports.append(report)
                if report.retryable:
                    break  # an outage: later stages would be built on missing rows; the next build resumes here
                # Free engines the next stage does not use: on one GPU, two big models seldom fit side by side,
                # and reloading one later costs less than running out of memory.
                backends.release_unused(plan[pos + 1 : pos + 2])
                input_fp = fp
                input_data = data_hash(self.rundir.read_manifest(stage.name) or {})
        finally:
            backends.close()
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

    def _write_shard(self, stage: Stage, manifest: dict[str, Any], i: int, res: Any) -> None:
        """Write one shard's outputs, then record them (rows, bytes, sha256 per file) in the stage's manifest."""
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
        manifest["shards"][str(i)] = shard_entry(
            stage_dir,
            files,
            rows=len(res.rows),
            rejects=len(res.rejects),
            dropped=len(res.dropped),
            counts=dict(res.counts),
            reject_reasons=dict(Counter(r.reason for r in res.rejects)),
        )
        self.rundir.write_manifest(stage.name, manifest)

    def _build_stage(
        self, stage: Stage, fp: str, input_data: str | None, problems: list[Any], backends: _Backends
    ) -> StageReport:
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
        made0, cached0, failed0 = backends.counters()

        if stage.input_stage is None:
            size = self.cfg.shard_size
            problem_chunks = [problems[i : i + size] for i in range(0, len(problems), size)] or [[]]
            chunks: list[list[Any]] | None = problem_chunks
            num = len(problem_chunks)
        else:
            chunks = None
            in_manifest = self.rundir.read_manifest(stage.input_stage)
            assert in_manifest is not None and in_manifest["status"] == "done", "input stage must be built first"
            num = in_manifest["num_shards"]
            in_dir = self.rundir.stage_dir(stage.input_stage) / "data"
            in_model = _output_model(stage.input_stage)

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
                "models": redact(_stage_models(stage, self.cfg)),
            }
            self.rundir.write_manifest(stage.name, manifest)
        ctx = StageContext(cfg=self.cfg, get_backend=backends.get, problems={p.id: p for p in problems})
        todo = [i for i in range(num) if str(i) not in manifest["shards"]]
        with _progress(self.show_progress, f"{stage.name:<9}", num, num - len(todo)) as advance:
            for i in todo:
                name = shard_name(i, num)
                if chunks is not None:
                    rows = chunks[i]
                else:
                    # the input shard is checked against its manifest entry as it is read (cheap: read anyway)
                    self.rundir.check_file(stage.input_stage, in_manifest, f"data/{name}")
                    rows = read_records(in_dir / name, in_model) if (in_dir / name).is_file() else []
                res = stage.run(rows, ctx)
                self._write_shard(stage, manifest, i, res)
                advance()

        shards = manifest["shards"].values()
        funnel: Counter[str] = Counter()
        for s in shards:
            funnel.update(s["counts"])
        rejects_by_reason: Counter[str] = Counter()
        for s in shards:
            rejects_by_reason.update(s["reject_reasons"])
        made, cached, failed = backends.counters()
        retryable = retryable_rejects(manifest)
        manifest.update(
            {
                "status": "incomplete" if retryable else "done",
                "rows": sum(s["rows"] for s in shards),
                "rejects": sum(s["rejects"] for s in shards),
                "dropped": sum(s["dropped"] for s in shards),
                "funnel": dict(sorted(funnel.items())),
                "rejects_by_reason": dict(sorted(rejects_by_reason.items())),
                "requests": {"made": made - made0, "cached": cached - cached0, "failed": failed - failed0},
                "usage": backends.usage(),
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
            made=made - made0,
            cached=cached - cached0,
            seconds=round(time.time() - t0, 3),
            funnel=manifest["funnel"],
            retryable=retryable,
            damaged=damaged,
        )


def _stage_models(stage: Stage, cfg: PipelineConfig) -> dict[str, Any]:
    """The model blocks a stage uses, by role (the sample stage may use several actors)."""
    models: dict[str, Any] = {r: cfg.models.for_role(r).model_dump() for r in stage.roles}
    if stage.name == "sample" and cfg.stages.sample.actors:
        models["actor"] = [m.model_dump() for m in cfg.stages.sample.actors]
    return models


def _output_model(stage_name: str) -> Any:
    return next(s.output for s in STAGE_ORDER if s.name == stage_name)


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
