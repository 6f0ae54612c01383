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

import fcntl
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amc import __version__
from amc.backends import create
from amc.config import STAGES as STAGE_NAMES
from amc.config import FileSource, ModelConfig, PipelineConfig
from amc.engine.cache import CachedBackend, RequestCache
from amc.engine.store import atomic_write_json, read_records, shard_name, write_records
from amc.errors import AmcError
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
    path = stage_dir / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class StageReport:
    name: str
    action: str  # built | resumed | skipped
    rows: int = 0
    rejects: int = 0
    dropped: int = 0
    made: int = 0
    cached: int = 0
    seconds: float = 0.0
    funnel: dict[str, int] = field(default_factory=dict)


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

    def __init__(self, cfg: PipelineConfig, show_progress: bool = True):
        self.cfg = cfg
        self.run_dir = cfg.run_path
        self.show_progress = show_progress

    # ------------------------------------------------------------------ build
    def build(self, until: str = "filter") -> list[StageReport]:
        plan = stages_until(until)
        # Bad input fails here, before any engine starts.
        problems = ProblemsStage().load(self.cfg)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.run_dir):
            return self._build(plan, until, problems)

    def _build(self, plan: list[Stage], until: str, problems: list[Any]) -> list[StageReport]:
        cache = RequestCache(self.run_dir / "cache.sqlite")
        backends = _Backends(self.cfg, cache)
        reports: list[StageReport] = []
        input_fp: str | None = None
        started = time.time()
        try:
            for pos, stage in enumerate(plan):
                fp = stage_fingerprint(stage, self.cfg, input_fp)
                reports.append(self._build_stage(stage, fp, problems, backends))
                # Free engines the next stage does not use: on one GPU, two big models seldom fit side by side,
                # and reloading one later costs less than running out of memory.
                backends.release_unused(plan[pos + 1 : pos + 2])
                input_fp = fp
        finally:
            backends.close()
            cache.close()
            atomic_write_json(
                self.run_dir / "build.json",
                {
                    "until": until,
                    "seconds": round(time.time() - started, 3),
                    "stages": [r.__dict__ for r in reports],
                    "requests": {"made": sum(r.made for r in reports), "cached": sum(r.cached for r in reports)},
                },
            )
        return reports

    def _build_stage(self, stage: Stage, fp: str, problems: list[Any], backends: _Backends) -> StageReport:
        stage_dir = self.run_dir / stage.name
        manifest = read_manifest(stage_dir)
        if manifest and manifest["fingerprint"] == fp and manifest["status"] == "done":
            return StageReport(
                stage.name,
                "skipped",
                rows=manifest["rows"],
                rejects=manifest["rejects"],
                dropped=manifest["dropped"],
                funnel=manifest["funnel"],
            )
        resumed = bool(manifest and manifest["fingerprint"] == fp)
        if manifest and not resumed:
            shutil.rmtree(stage_dir)  # stale: its config or input changed
        t0 = time.time()
        made0, cached0, failed0 = backends.counters()

        if stage.input_stage is None:
            size = self.cfg.shard_size
            problem_chunks = [problems[i : i + size] for i in range(0, len(problems), size)] or [[]]
            chunks: list[list[Any]] | None = problem_chunks
            num = len(problem_chunks)
        else:
            chunks = None
            in_manifest = read_manifest(self.run_dir / stage.input_stage)
            assert in_manifest is not None and in_manifest["status"] == "done", "input stage must be built first"
            num = in_manifest["num_shards"]
            in_dir = self.run_dir / stage.input_stage / "data"
            in_model = _output_model(stage.input_stage)

        if not resumed:
            manifest = {
                "stage": stage.name,
                "fingerprint": fp,
                "status": "partial",
                "num_shards": num,
                "shards": {},
                "config": redact(stage.config_slice(self.cfg)),
                "code_version": __version__,
                "templates": template_refs(stage, self.cfg),
                "models": redact(_stage_models(stage, self.cfg)),
            }
            atomic_write_json(stage_dir / "manifest.json", manifest)
        assert manifest is not None
        ctx = StageContext(cfg=self.cfg, get_backend=backends.get, problems={p.id: p for p in problems})
        todo = [i for i in range(num) if str(i) not in manifest["shards"]]
        with _progress(self.show_progress, f"{stage.name:<9}", num, num - len(todo)) as advance:
            for i in todo:
                name = shard_name(i, num)
                if chunks is not None:
                    rows = chunks[i]
                else:
                    rows = read_records(in_dir / name, in_model) if (in_dir / name).is_file() else []
                res = stage.run(rows, ctx)
                # A shard redone after a kill may differ from what the killed run left (a failed request now
                # answered): clear every output of the shard first, so no stale file survives beside the manifest.
                for folder in ("data", "rejects", "dropped", *stage.extra_outputs):
                    (stage_dir / folder / name).unlink(missing_ok=True)
                # An empty shard is not written at all: `datasets` cannot read a Parquet file with no rows.
                if res.rejects:
                    write_records(stage_dir / "rejects" / name, res.rejects, Reject)
                if stage.dropped_output is not None and res.dropped:
                    write_records(stage_dir / "dropped" / name, res.dropped, stage.dropped_output)
                for extra, rows_out in res.extra.items():
                    if rows_out:
                        write_records(stage_dir / extra / name, rows_out, stage.extra_outputs[extra])
                sha = write_records(stage_dir / "data" / name, res.rows, stage.output) if res.rows else None
                manifest["shards"][str(i)] = {
                    "rows": len(res.rows),
                    "rejects": len(res.rejects),
                    "dropped": len(res.dropped),
                    "counts": dict(res.counts),
                    "reject_reasons": dict(Counter(r.reason for r in res.rejects)),
                    "sha256": sha,
                }
                atomic_write_json(stage_dir / "manifest.json", manifest)
                advance()

        shards = manifest["shards"].values()
        funnel: Counter[str] = Counter()
        for s in shards:
            funnel.update(s["counts"])
        rejects_by_reason: Counter[str] = Counter()
        for s in shards:
            rejects_by_reason.update(s["reject_reasons"])
        made, cached, failed = backends.counters()
        manifest.update(
            {
                "status": "done",
                "rows": sum(s["rows"] for s in shards),
                "rejects": sum(s["rejects"] for s in shards),
                "dropped": sum(s["dropped"] for s in shards),
                "funnel": dict(sorted(funnel.items())),
                "rejects_by_reason": dict(sorted(rejects_by_reason.items())),
                "requests": {"made": made - made0, "cached": cached - cached0, "failed": failed - failed0},
                "usage": backends.usage(),
            }
        )
        atomic_write_json(stage_dir / "manifest.json", manifest)
        return StageReport(
            stage.name,
            "resumed" if resumed else "built",
            rows=manifest["rows"],
            rejects=manifest["rejects"],
            dropped=manifest["dropped"],
            made=made - made0,
            cached=cached - cached0,
            seconds=round(time.time() - t0, 3),
            funnel=manifest["funnel"],
        )


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """One build at a time per run directory: a second one would write the same shards. The lock is released by
    the operating system when the process dies, so a killed build never leaves a stale lock behind."""
    with open(run_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AmcError(f"another build is running in {run_dir}; wait for it or use another run_dir") from None
        yield


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
