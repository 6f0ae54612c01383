"""What ``amc view`` shows, read from disk: a run directory or a published dataset folder, read-only.

A run directory has one folder per stage with ``data/`` (``filter/data`` are the kept rows), ``dropped/`` and
``rejects/`` Parquet shards and a ``manifest.json``; a publish folder has one folder per config with
``<split>-*.parquet`` shards, ``plots/`` and ``amc_version.json``. Either becomes a list of :class:`Part` files,
indexed once (:mod:`amc.view.index`); rows are read back one row group at a time.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amc.errors import AmcError
from amc.view.index import Part, Query, build_index, choices

RUN_PARTS = (("data", "ok"), ("dropped", "dropped"), ("rejects", "rejected"))
CONFIG_STATUS = {"filtered": "kept", "rejects": "rejected"}
PATH_STAGES = ("inject", "sample")


class ViewError(AmcError):
    """A folder ``amc view`` cannot show; the message says what it expected."""


def _stage_names() -> list[str]:
    from amc.config import STAGES

    return list(STAGES)


def read_manifest(run_dir: Path, stage: str) -> dict[str, Any] | None:
    """A stage's manifest through the run directory's one reader (:class:`amc.engine.rundir.RunDir`): None when
    the stage was never started; a corrupt one is an error naming the file and how to clean it."""
    from amc.engine.rundir import RunDir

    return RunDir(run_dir).read_manifest(stage)


def listed_files(stage_dir: Path, manifest: dict[str, Any], folder: str) -> list[Path] | None:
    """The shard files of ``folder`` that the manifest lists (so a stray or half-written file is never shown), in
    shard order; None for a manifest that lists no files (then every shard-named file of the folder is read)."""
    shards = manifest.get("shards") or {}
    if not any(isinstance(e, dict) and e.get("files") for e in shards.values()):
        return None
    out = []
    for key in sorted(shards, key=lambda k: int(k) if str(k).isdigit() else 0):
        for rel in sorted((shards[key] or {}).get("files", {})):
            if rel.split("/", 1)[0] == folder and (stage_dir / rel).is_file():
                out.append(stage_dir / rel)
    return out


def _shards(folder: Path, pattern: str = "*.parquet") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


class ViewSource:
    """A run directory or a publish folder, indexed for the viewer. Thread-safe for readers."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ViewError(f"{root}: no such folder; give a run directory (runs/<name>) or a publish folder")
        self.manifests: dict[str, dict[str, Any]] = {}
        self.version_info: dict[str, Any] = {}
        if (self.root / "amc_version.json").is_file() or self._config_folders():
            self.kind = "publication"
            self.parts = self._publication_parts()
        else:
            self.kind = "run"
            self.parts = self._run_parts()
        if not self.parts:
            raise ViewError(
                f"{self.root} holds no amc data: expected a run directory (<stage>/manifest.json, "
                f"<stage>/data/*.parquet) or a publish folder (amc_version.json, <config>/*.parquet)"
            )
        self.index = build_index(self.parts)
        self._lock = threading.Lock()
        self._queries: OrderedDict[Query, pa.Array] = OrderedDict()
        self._plots: dict[str, bytes] | None = None
        self._by_id: dict[str, list[int]] | None = None
        self._choices: dict[str, list[str]] = {}
        self._pages: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------- layout
    def _config_folders(self) -> list[Path]:
        return [d for d in sorted(self.root.iterdir()) if d.is_dir() and _shards(d, "*-*-of-*.parquet")]

    def _run_parts(self) -> list[Part]:
        parts = []
        for stage in _stage_names():
            stage_dir = self.root / stage
            manifest = read_manifest(self.root, stage)
            if manifest is None:
                continue
            self.manifests[stage] = manifest
            for sub, status in RUN_PARTS:
                status = "kept" if (stage == "filter" and sub == "data") else status
                files = listed_files(stage_dir, manifest, sub)
                parts += [Part(f, stage, sub, status) for f in (_shards(stage_dir / sub) if files is None else files)]
        return parts

    def _publication_parts(self) -> list[Part]:
        try:
            self.version_info = json.loads((self.root / "amc_version.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.version_info = {}
        parts = []
        for folder in self._config_folders():
            for f in _shards(folder, "*-*-of-*.parquet"):
                split = f.name.split("-", 1)[0]
                parts.append(Part(f, folder.name, split, CONFIG_STATUS.get(folder.name, "ok")))
        return parts

    @property
    def name(self) -> str:
        return str(self.version_info.get("name") or self.root.name)

    @property
    def version(self) -> str | None:
        return self.version_info.get("version")

    @property
    def main_stage(self) -> str:
        """The stage the rows table opens on: the filter's decisions (or ``filtered``), else the last one."""
        stages = self.index.column("stage").unique().to_pylist()
        for preferred in ("filter", "filtered", "critique", "critiques", *PATH_STAGES, "paths"):
            if preferred in stages:
                return preferred
        return stages[-1] if stages else ""

    def filter_settings(self) -> dict[str, Any] | None:
        """N, k and the rules of the filter stage, from its manifest (run directories only)."""
        stage = (self.manifests.get("filter") or {}).get("config", {}).get("stage")
        if not isinstance(stage, dict):
            return None
        return {"n": stage.get("n"), "k": stage.get("k"), "rules": stage.get("rules", {})}

    # ------------------------------------------------------------------------------------------- rows
    def select(self, query: Query) -> pa.Array:
        """Index positions of the rows passing ``query`` (cached: paging through one filter costs one pass)."""
        with self._lock:
            hit = self._queries.get(query)
            if hit is not None:
                self._queries.move_to_end(query)
                return hit
        positions = pc.indices_nonzero(query.mask(self.index))
        with self._lock:
            self._queries[query] = positions
            while len(self._queries) > 32:
                self._queries.popitem(last=False)
        return positions

    def page(self, query: Query, offset: int, limit: int) -> tuple[int, list[dict[str, Any]], list[int]]:
        """(matching rows, the index rows of one page, their positions)."""
        positions = self.select(query)
        chosen = positions.slice(max(0, offset), max(0, limit))
        rows = self.index.take(chosen).to_pylist()
        return len(positions), rows, chosen.to_pylist()

    def locate(self, row_id: str, stage: str = "", part: str = "") -> int | None:
        """The index position of a row by id (and stage/part when ids repeat across stages): the latest stage
        first, so a bare id opens the filter's decision about a critique rather than the critique itself."""
        with self._lock:
            if self._by_id is None:  # built on the first row page: id -> positions, in index order
                self._by_id = {}
                for position, rid in enumerate(self.index.column("id").to_pylist()):
                    self._by_id.setdefault(rid, []).append(position)
        stages = self.index.column("stage")
        parts = self.index.column("part")
        for position in reversed(self._by_id.get(row_id, [])):
            if stage and stages[position].as_py() != stage:
                continue
            if part and parts[position].as_py() != part:
                continue
            return position
        return None

    def choices(self, column: str) -> list[str]:
        """The distinct values of an index column (cached: the data never change while the viewer runs)."""
        with self._lock:
            if column not in self._choices:
                self._choices[column] = choices(self.index, column)
            return self._choices[column]

    def cached(self, key: str, make: Callable[[], str]) -> str:
        """A rendered page that depends on the data only (the overview), made once."""
        with self._lock:
            hit = self._pages.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                self._pages[key] = hit
        return hit

    def entry(self, position: int) -> dict[str, Any]:
        """The index row at ``position``."""
        return self.index.slice(position, 1).to_pylist()[0]

    def record(self, position: int) -> dict[str, Any]:
        """The full Parquet row behind index row ``position``, read from its one row group."""
        entry = self.entry(position)
        return read_row(self.parts[entry["file"]].path, entry["row"])

    # ------------------------------------------------------------------------------------------- overview
    def funnel(self) -> list[dict[str, Any]]:
        """Per stage (run) or config (publication): rows, rejects, dropped, and the manifest's counts."""
        if self.kind == "run":
            out = []
            for stage, m in self.manifests.items():
                counts = m.get("funnel", {})
                out.append(
                    {
                        "stage": stage,
                        "state": m.get("status", "?"),
                        "rows": m.get("rows", 0),
                        "rejects": m.get("rejects", 0),
                        "dropped": m.get("dropped", 0),
                        "counts": {k: v for k, v in counts.items() if not k.startswith("dropped:")},
                        "drops": {k.removeprefix("dropped:"): v for k, v in counts.items() if k.startswith("dropped:")},
                        "rejects_by_reason": m.get("rejects_by_reason", {}),
                    }
                )
            return out
        configs = self.version_info.get("configs") or {}
        return [
            {
                "stage": c,
                "state": "published",
                "rows": sum(s.values()),
                "rejects": 0,
                "dropped": 0,
                "counts": dict(s),
                "drops": {},
                "rejects_by_reason": {},
            }
            for c, s in configs.items()
        ]

    def plots(self) -> dict[str, bytes]:
        """The card's plots: the files of a publication, or drawn from the index for a run (name -> PNG)."""
        with self._lock:
            if self._plots is None:
                self._plots = self._load_plots()
            return self._plots

    def _load_plots(self) -> dict[str, bytes]:
        if self.kind == "publication":
            return {p.name: p.read_bytes() for p in _shards(self.root / "plots", "*.png")}
        try:
            from amc.publish.plots import render_png
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            return {}
        from amc.view.overview import run_distributions

        return {f"{d.key}.png": render_png(d) for d in run_distributions(self.index)}


def read_row(path: Path, row: int) -> dict[str, Any]:
    """Row ``row`` of a Parquet file, reading only the row group that holds it."""
    meta = pq.ParquetFile(path)
    start = 0
    for g in range(meta.num_row_groups):
        size = meta.metadata.row_group(g).num_rows
        if row < start + size:
            return meta.read_row_group(g).slice(row - start, 1).to_pylist()[0]
        start += size
    raise ViewError(f"{path}: no row {row} (the file changed since the viewer started; restart it)")
