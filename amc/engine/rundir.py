"""The one owner of a run directory's layout: manifests, shards, side files, the build lock, cleanup.

Layout (default ``runs/<name>/``)::

    cache.sqlite                request cache (see :mod:`amc.engine.cache`)
    build.json                  side file: the last build's per-stage report
    .lock                       the build lock (an OS lock: released when the process dies)
    <stage>/manifest.json       fingerprint, status, per-shard files with rows, bytes and sha256
    <stage>/manifest.journal    shards finished since the manifest was last written, a JSON line each
    <stage>/<folder>/NNNNN-of-MMMMM.parquet   shard outputs; folders: data, rejects, dropped, step_labels

The manifest API (everyone reads manifests through it: the runner, ``amc status``, the exporter):

- :meth:`RunDir.read_manifest` returns a stage's manifest or None, and raises :class:`ManifestError` (one line: the
  file, what is wrong, and ``amc clean --stage NAME``) for an empty or corrupt one.
- :meth:`RunDir.write_manifest` writes it atomically. Only the driver process writes manifests.
- :meth:`RunDir.record_shard` records one finished shard: one line appended to the stage's journal and fsync'd,
  O(1) whatever the stage's size (rewriting the whole manifest after every shard made a stage's bookkeeping
  quadratic in its shards). ``read_manifest`` returns the manifest with its journal's shards applied, so readers
  never see the difference; ``write_manifest`` folds the journal in (at a stage's start and end) and removes it.
  Each manifest write draws a new ``journal`` token and only lines carrying the manifest's token count, so a
  journal left by a kill between the manifest's rename and the journal's removal is never applied twice, and a
  line torn by a kill (not valid JSON) is ignored: that shard is not recorded and is redone.
- :func:`shard_entry` builds a shard's entry from the files written for it: ``files`` maps
  ``"<folder>/<shard name>"`` to ``{"rows", "bytes", "sha256"}``.
- :meth:`RunDir.damaged_shards` checks every listed file: size always, sha256 with ``full=True``.
- :func:`data_hash` is a done stage's content hash (over its ``data`` files): a downstream stage records it as
  ``input_data`` when built, so changed input rebuilds what depends on it (content chaining).
- :meth:`RunDir.stage_state` is the one definition of missing / stale / partial / damaged / incomplete / done.
- :meth:`RunDir.remove_stage` deletes only files amc wrote (those its manifest lists, shard-named files in its
  output folders, its temporary files), never anything else in the folder.
- :meth:`RunDir.clean_tmp` removes the temporary files of a killed write (``.<name>.*.tmp``).
- :meth:`RunDir.lock` / :meth:`RunDir.building`: one build at a time per run directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amc.engine.store import atomic_write_json
from amc.errors import AmcError

MANIFEST = "manifest.json"
JOURNAL = "manifest.journal"
BUILD_FILE = "build.json"
CACHE_FILE = "cache.sqlite"
LOCK_FILE = ".lock"
OUTPUT_FOLDERS = ("data", "rejects", "dropped", "step_labels")
SHARD_RE = re.compile(r"^\d{5}-of-\d{5}\.parquet$")
TMP_RE = re.compile(r"^\..+\.[^.]+\.tmp$")
# Reject reasons that say the engine could not be reached (after retries), not that it answered badly: a stage
# holding any is incomplete, and the next build asks for exactly those rows again.
RETRYABLE_REASONS = frozenset({"engine_unavailable"})
# reject reasons that no cached answer caused: `--retry-rejects` redoes their shards without asking the engine again
NOT_FROM_ANSWERS = frozenset({"grading_undecided"})
STATES = ("missing", "stale", "partial", "damaged", "incomplete", "done")


class ManifestError(AmcError):
    """A manifest that cannot be read: names the file and the way out."""


class RunDirError(AmcError):
    """A run directory amc cannot write (read-only, full disk, name too long): names the path and the cause."""


def shard_entry(stage_dir: Path, files: dict[str, tuple[int, bytes | None]], **counts: Any) -> dict[str, Any]:
    """A manifest's entry for one shard: ``files`` maps ``"<folder>/<shard name>"`` to (rows, the bytes written,
    or None when no file was written because there were no rows); ``counts`` are kept as they are (rows, rejects,
    dropped, counts, reject_reasons)."""
    listed: dict[str, dict[str, Any]] = {}
    for rel, (rows, data) in files.items():
        if data is not None:
            listed[rel] = {"rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    data_files = [v for k, v in listed.items() if k.startswith("data/")]
    return {**counts, "files": listed, "sha256": data_files[0]["sha256"] if data_files else None}


def data_hash(manifest: dict[str, Any]) -> str:
    """The content hash of a stage's output rows: over the sha256 of each shard's data file, in shard order."""
    parts = []
    for idx in sorted(manifest.get("shards", {}), key=int):
        parts.append(f"{idx}:{manifest['shards'][idx].get('sha256')}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def stage_totals(manifest: dict[str, Any]) -> dict[str, Any]:
    """A stage's totals summed over its shard entries: rows, rejects, dropped, funnel and rejects_by_reason. What
    the manifest records when the stage ends, and the running totals of a stage still partial."""
    shards = manifest.get("shards", {}).values()
    funnel: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for s in shards:
        funnel.update(s.get("counts", {}))
        reasons.update(s.get("reject_reasons", {}))
    return {
        "rows": sum(s.get("rows", 0) for s in shards),
        "rejects": sum(s.get("rejects", 0) for s in shards),
        "dropped": sum(s.get("dropped", 0) for s in shards),
        "funnel": dict(sorted(funnel.items())),
        "rejects_by_reason": dict(sorted(reasons.items())),
    }


def retryable_rejects(manifest: dict[str, Any]) -> int:
    """How many rejects of a stage are engine outages (asked again by the next build)."""
    return sum(
        n
        for s in manifest.get("shards", {}).values()
        for r, n in s.get("reject_reasons", {}).items()
        if r in RETRYABLE_REASONS
    )


def os_error(exc: OSError, path: Path | str) -> RunDirError:
    """A one-line error for a failed write in a run directory, saying what to do."""
    causes = {
        errno.ENOSPC: "the disk is full; free space and run the same command again (finished shards are kept)",
        errno.EDQUOT: "the disk quota is exceeded; free space and run the same command again",
        errno.EROFS: "the file system is read-only; choose a writable run_dir (--set run_dir=...)",
        errno.EACCES: "permission denied; make the run directory writable or choose another run_dir",
        errno.EPERM: "permission denied; make the run directory writable or choose another run_dir",
        errno.ENAMETOOLONG: "a file name is too long for the file system; choose a shorter name or run_dir",
    }
    cause = causes.get(exc.errno or 0, exc.strerror or str(exc))
    return RunDirError(f"{exc.filename or path}: {cause}")


class RunDir:
    """A run directory. ``RunDir(cfg.run_path).read_manifest("critique")``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    # ----------------------------------------------------------------------------------------- paths
    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def manifest_path(self, stage: str) -> Path:
        return self.path / stage / MANIFEST

    def journal_path(self, stage: str) -> Path:
        return self.path / stage / JOURNAL

    @property
    def cache_path(self) -> Path:
        return self.path / CACHE_FILE

    # ----------------------------------------------------------------------------------------- manifests
    def read_manifest(self, stage: str) -> dict[str, Any] | None:
        """The stage's manifest, or None when the stage was never started. An empty, truncated or foreign
        manifest raises :class:`ManifestError` naming the file and ``amc clean --stage NAME``."""
        path = self.manifest_path(stage)
        if not path.is_file():
            return None
        fix = f"remove the stage with `amc clean --stage {stage}` and build again"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ManifestError(f"{path}: not a text file (corrupt manifest); {fix}") from None
        except json.JSONDecodeError as exc:
            what = "empty" if not path.read_bytes().strip() else f"not valid JSON at line {exc.lineno}"
            raise ManifestError(f"{path}: {what} (corrupt manifest); {fix}") from None
        if not isinstance(manifest, dict):
            raise ManifestError(f"{path}: not a JSON object (corrupt manifest); {fix}")
        for key, typ in (("fingerprint", str), ("status", str), ("num_shards", int), ("shards", dict)):
            if not isinstance(manifest.get(key), typ):
                raise ManifestError(
                    f"{path}: field '{key}' is missing or not a {typ.__name__} (corrupt manifest); {fix}"
                )
        for idx, shard in manifest["shards"].items():
            if not _valid_shard(idx, shard):
                raise ManifestError(f"{path}: shard '{idx}' is malformed (corrupt manifest); {fix}")
        self._replay_journal(stage, manifest, fix)
        return manifest

    def _replay_journal(self, stage: str, manifest: dict[str, Any], fix: str) -> None:
        """Apply the journal's shard entries that belong to this manifest (same ``journal`` token), in order."""
        token = manifest.get("journal")
        path = self.journal_path(stage)
        if token is None:
            return
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # torn by a kill mid-append: the shard was never recorded, so it is redone
            if not isinstance(rec, dict) or rec.get("journal") != token:
                continue  # left from before the manifest was last written: already folded into it
            idx, shard = rec.get("shard"), rec.get("entry")
            if not (isinstance(idx, str) and _valid_shard(idx, shard)):
                raise ManifestError(f"{path}: shard '{idx}' is malformed (corrupt journal); {fix}")
            manifest["shards"][idx] = shard

    def write_manifest(self, stage: str, manifest: dict[str, Any]) -> None:
        """Write a stage's manifest atomically (a reader sees the old one or the new one, never half), folding
        in and removing its journal: ``manifest`` must hold every shard (as :meth:`read_manifest` returns it)."""
        manifest["journal"] = secrets.token_hex(8)  # the journal lines of the manifest written before no longer count
        self.write_json(self.manifest_path(stage), manifest)
        try:
            self.journal_path(stage).unlink(missing_ok=True)
        except OSError as exc:
            raise os_error(exc, self.journal_path(stage)) from None

    def record_shard(self, stage: str, manifest: dict[str, Any], idx: int, entry: dict[str, Any]) -> None:
        """Record a finished shard: in ``manifest`` (as written by :meth:`write_manifest`, and held by the
        caller) and as one fsync'd line of the stage's journal, so a kill after this call keeps it."""
        manifest["shards"][str(idx)] = entry
        assert "journal" in manifest, "write_manifest first: journal lines belong to a written manifest"
        rec = {"journal": manifest["journal"], "shard": str(idx), "entry": entry}
        line = json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str).encode() + b"\n"
        path = self.journal_path(stage)
        try:
            append_line(path, line)
        except OSError as exc:
            raise os_error(exc, path) from None

    def write_json(self, path: Path, obj: Any) -> None:
        """Write a side file or manifest atomically; a failed write raises :class:`RunDirError`."""
        try:
            atomic_write_json(path, obj)
        except OSError as exc:
            raise os_error(exc, path) from None

    def read_build(self) -> dict[str, Any] | None:
        """The side file of the last build, or None (also when unreadable: it is a report, not state)."""
        path = self.path / BUILD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_build(self, report: dict[str, Any]) -> None:
        self.write_json(self.path / BUILD_FILE, report)

    # ----------------------------------------------------------------------------------------- integrity
    def damaged_shards(self, stage: str, manifest: dict[str, Any], full: bool = False) -> dict[int, str]:
        """Shards whose files are missing or differ from the manifest: {shard index: what is wrong}. Sizes are
        always compared; with ``full`` every file's sha256 too."""
        damaged: dict[int, str] = {}
        stage_dir = self.stage_dir(stage)
        for idx, shard in manifest.get("shards", {}).items():
            for rel, info in (shard.get("files") or {}).items():
                path = stage_dir / rel
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    damaged[int(idx)] = f"{rel} is missing"
                    break
                if size != info.get("bytes"):
                    damaged[int(idx)] = f"{rel} has {size} bytes, the manifest says {info.get('bytes')}"
                    break
                if full and file_sha256(path) != info.get("sha256"):
                    damaged[int(idx)] = f"{rel} does not match its sha256"
                    break
        return damaged

    def check_file(self, stage: str, manifest: dict[str, Any], rel: str) -> None:
        """Raise :class:`ManifestError` when a listed file differs from its manifest entry (reading it anyway)."""
        shards = manifest.get("shards", {})
        name = rel.rsplit("/", 1)[-1]
        # a shard-named file belongs to the shard of its number: one lookup, not a scan of every shard (which
        # made reading a stage's input quadratic in its shards)
        if SHARD_RE.match(name):
            own = str(int(name[:5]))
            candidates = [(own, shards[own])] if own in shards else []
        else:
            candidates = list(shards.items())
        for idx, shard in candidates:
            info = (shard.get("files") or {}).get(rel)
            if info is None:
                continue
            path = self.stage_dir(stage) / rel
            if not path.is_file() or file_sha256(path) != info.get("sha256"):
                raise ManifestError(
                    f"{path}: shard {idx} of stage '{stage}' is missing or damaged; run "
                    f"`amc build` to rebuild it from the cache"
                )

    def stage_state(
        self, stage: str, fingerprint: str, input_data: str | None, full: bool = False
    ) -> tuple[str, dict[str, Any] | None, dict[int, str]]:
        """(state, manifest, damaged shards). ``input_data`` is the input stage's :func:`data_hash` (None for the
        first stage). States: missing, stale (config or input changed), partial, damaged (a listed file is
        missing or altered), incomplete (engine outages left retryable rejects), done."""
        manifest = self.read_manifest(stage)
        if manifest is None:
            return "missing", None, {}
        if manifest["fingerprint"] != fingerprint or manifest.get("input_data") != input_data:
            return "stale", manifest, {}
        damaged = self.damaged_shards(stage, manifest, full=full)
        if damaged:
            return "damaged", manifest, damaged
        if manifest["status"] == "incomplete":
            return "incomplete", manifest, {}
        if manifest["status"] != "done":
            return "partial", manifest, {}
        return "done", manifest, {}

    # ----------------------------------------------------------------------------------------- cleanup
    def owned_files(self, stage: str) -> list[Path]:
        """Files of a stage amc wrote: its manifest, the files the manifest lists, shard-named files in its
        output folders and its temporary files. Nothing else in the folder is ever touched."""
        stage_dir = self.stage_dir(stage)
        found: set[Path] = set()
        try:
            manifest = self.read_manifest(stage)
        except ManifestError:
            manifest = None
        for shard in (manifest or {}).get("shards", {}).values():
            for rel in shard.get("files") or {}:
                found.add(stage_dir / rel)
        for folder in OUTPUT_FOLDERS:
            sub = stage_dir / folder
            if sub.is_dir():
                found.update(p for p in sub.iterdir() if SHARD_RE.match(p.name) or _is_tmp(p.name))
        if stage_dir.is_dir():
            found.update(p for p in stage_dir.iterdir() if p.name in (MANIFEST, JOURNAL) or _is_tmp(p.name))
        return sorted(p for p in found if p.is_file())

    def remove_stage(self, stage: str) -> int:
        """Delete a stage's outputs (only files amc wrote, then the folders left empty); return files removed."""
        files = self.owned_files(stage)
        # the manifest goes last (its journal just before): a kill half-way leaves a manifest whose listed files
        # are missing (damaged)
        files.sort(key=lambda p: (p.name == MANIFEST, p.name == JOURNAL))
        for path in files:
            path.unlink(missing_ok=True)
        for folder in (*OUTPUT_FOLDERS, ""):
            sub = self.stage_dir(stage) / folder
            with contextlib.suppress(OSError):
                sub.rmdir()  # only when empty: a file amc did not write keeps its folder
        return len(files)

    def remove_shard(self, stage: str, name: str, folders: tuple[str, ...] = OUTPUT_FOLDERS) -> None:
        """Delete every output of one shard (before it is redone), so no stale file survives beside the manifest."""
        for folder in folders:
            (self.stage_dir(stage) / folder / name).unlink(missing_ok=True)

    def clean_tmp(self) -> list[Path]:
        """Remove temporary files a killed write left (``.<name>.<random>.tmp``) in the run directory and its
        stages; return them."""
        removed = []
        candidates = [self.path, *(p for p in self.path.iterdir() if p.is_dir())] if self.path.is_dir() else []
        for folder in list(candidates):
            for sub in (folder, *(folder / f for f in OUTPUT_FOLDERS)):
                if not sub.is_dir():
                    continue
                for p in sub.iterdir():
                    if _is_tmp(p.name) and p.is_file():
                        p.unlink(missing_ok=True)
                        removed.append(p)
        return removed

    def remove_cache(self) -> int:
        """Delete the request cache (and SQLite's side files); return the files removed."""
        removed = 0
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = self.path / f"{CACHE_FILE}{suffix}"
            if p.is_file():
                p.unlink()
                removed += 1
        return removed

    # ----------------------------------------------------------------------------------------- lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """One build at a time per run directory: a second one would write the same shards. The lock is released
        by the operating system when the process dies, so a killed build never leaves a stale lock behind.

        A POSIX record lock (``lockf``), not ``flock``: processes forked while it is held (grading pool, forked
        executor workers) do not inherit it, so a killed build's leftover children never lock its rerun out.
        Record locks are per process (a second lock from the same process would succeed, and closing any handle
        of the file drops them), so this process's own holds are tracked here too."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            key = _lock_key(self.path)
            if key in _HELD:
                raise AmcError(f"another build is running in {self.path}; wait for it or use another run_dir")
            fh = open(self.path / LOCK_FILE, "w")  # noqa: SIM115 - held for the whole build
        except OSError as exc:
            raise os_error(exc, self.path) from None
        with fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:  # EAGAIN or EACCES, depending on the system
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise os_error(exc, self.path / LOCK_FILE) from None
                raise AmcError(f"another build is running in {self.path}; wait for it or use another run_dir") from None
            _HELD.add(key)
            try:
                yield
            finally:
                _HELD.discard(key)

    def building(self) -> bool:
        """True while a build (of this process or another) holds the run directory's lock."""
        lock = self.path / LOCK_FILE
        if not lock.is_file():
            return False
        if _lock_key(self.path) in _HELD:
            return True  # opening and closing the file here would drop this process's own lock
        with open(lock) as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.lockf(fh, fcntl.LOCK_UN)
            return False


_HELD: set[tuple[int, int]] = set()  # run directories whose build lock this process holds


def _lock_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino)


def _valid_shard(idx: str, shard: Any) -> bool:
    return idx.isdigit() and isinstance(shard, dict) and isinstance(shard.get("rows", 0), int)


def append_line(path: Path, line: bytes) -> None:
    """Append one line to a journal and fsync it. A line torn by an earlier kill is ended first, so the new line
    never joins it."""
    with open(path, "a+b") as fh:
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = b"\n" + line
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_tmp(name: str) -> bool:
    # atomic_write_bytes names its temporary files ".<target name>.<random>.tmp"
    return bool(TMP_RE.match(name)) and (".parquet." in name or ".json." in name)
