"""A publication: the complete list of files (path in the repository -> bytes) that one dataset version is.

The local publisher and the Hub publisher both take this one list, so a folder written with ``--to DIR`` and a
Hub revision hold the same files. The list is a pure function of the run and the options: no timestamps, no
machine paths, so building it twice gives the same bytes and an unchanged dataset republishes as a no-op.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from amc import __version__
from amc.config import PipelineConfig
from amc.publish.card import render_card
from amc.publish.exports import CONFIG_ORDER, ExportOptions, RunData, build_tables, read_run, shard_files
from amc.publish.plots import distributions, render_png

CARD_FILE = "README.md"
VERSION_FILE = "amc_version.json"
PLOTS_DIR = "plots"
# Top-level folders amc writes in a dataset repository.
MANAGED_DIRS = (*CONFIG_ORDER, PLOTS_DIR)
_MANAGED_FILE = re.compile(
    rf"^(?:(?:{'|'.join(CONFIG_ORDER)})/[\w.]+-\d{{5}}-of-\d{{5}}\.parquet|{PLOTS_DIR}/[\w.-]+\.png)$"
)


def is_managed(path: str) -> bool:
    """True for files of the shape a publication writes: the card, the version file, config shards and plots.

    Only such files are ever deleted as stale (and only where an amc publication already is); anything else in
    a repository or folder (a .gitattributes, a user's notes, other data) is left alone.
    """
    return path in (CARD_FILE, VERSION_FILE) or bool(_MANAGED_FILE.match(path))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_fingerprint(files: dict[str, bytes]) -> str:
    """Hash of every exported Parquet file and its path: the identity of the data, independent of the card."""
    lines = "".join(f"{path}\t{sha256(data)}\n" for path, data in sorted(files.items()) if path.endswith(".parquet"))
    return sha256(lines.encode())[:16]


@dataclass(frozen=True)
class Publication:
    """One dataset version, ready to write anywhere: ``files`` maps repository paths to bytes."""

    name: str
    version: str
    fingerprint: str
    files: dict[str, bytes]
    splits: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """The tag this version gets on the Hub by convention, e.g. ``v0.1.0``."""
        return f"v{self.version}"

    def operations(self) -> list[tuple[str, bytes]]:
        """(path, bytes) in path order: what both publishers write, one entry per file."""
        return sorted(self.files.items())

    def hashes(self) -> dict[str, str]:
        return {path: sha256(data) for path, data in sorted(self.files.items())}


def version_record(
    name: str,
    version: str,
    fingerprint: str,
    splits: dict[str, dict[str, int]],
    stages: dict[str, Any],
    files: dict[str, bytes],
) -> bytes:
    """``amc_version.json``: version, fingerprint, rows per split, stage fingerprints and every file's sha256."""
    record = {
        "name": name,
        "version": version,
        "fingerprint": fingerprint,
        "amc_version": __version__,
        "configs": splits,
        "stage_fingerprints": stages,
        "files": {path: sha256(data) for path, data in sorted(files.items())},
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def build_publication(
    cfg: PipelineConfig, options: ExportOptions | None = None, *, repo_id: str | None = None, run: RunData | None = None
) -> Publication:
    """Read the run of ``cfg`` and lay out one dataset repository: configs, plots, card, version file.

    >>> pub = build_publication(load_config("amc.yaml"))  # doctest: +SKIP
    >>> sorted(pub.files)[:2]  # doctest: +SKIP
    ['README.md', 'amc_version.json']
    """
    from amc.engine.runner import expected_fingerprints

    options = options or ExportOptions()
    run = run or read_run(cfg, expected_fingerprints(cfg))
    tables = build_tables(run, options)
    files: dict[str, bytes] = {}
    for config, by_split in tables.items():
        for split, table in by_split.items():
            files.update(shard_files(config, split, table, options.shard_rows))
    fingerprint = data_fingerprint(files)
    dists = distributions(run)
    files.update({d.plot_path: render_png(d) for d in dists})
    splits = {c: {s: t.num_rows for s, t in by_split.items()} for c, by_split in tables.items()}
    columns = {c: next(iter(by_split.values())).column_names for c, by_split in tables.items()}
    first = next(iter(tables.values()), {})
    sample_table = first["train"] if "train" in first else next(iter(first.values()), None)
    sample = sample_table.slice(0, 1).to_pylist()[0] if sample_table is not None and sample_table.num_rows else None
    files[CARD_FILE] = render_card(
        run=run,
        options=options,
        splits=splits,
        columns=columns,
        dists=dists,
        sample=sample,
        fingerprint=fingerprint,
        repo_id=repo_id,
    ).encode()
    stages = {name: m.get("fingerprint") for name, m in run.manifests.items()}
    files[VERSION_FILE] = version_record(cfg.name, cfg.version, fingerprint, splits, stages, files)
    return Publication(
        name=cfg.name, version=cfg.version, fingerprint=fingerprint, files=dict(sorted(files.items())), splits=splits
    )
