"""The local publisher: writes a publication into a folder in exactly the Hub's layout.

``datasets.load_dataset(folder, "filtered")`` reads the result, and the same folder can be uploaded as is. Only
files whose bytes differ are written (atomically), so republishing unchanged data touches nothing: no file is
rewritten and every mtime stays as it was. Files of an older version that the new one lacks are deleted, but only
files of the shape amc writes (see :func:`~amc.publish.publication.is_managed`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from amc.engine.store import atomic_write_bytes
from amc.publish.exports import PublishError
from amc.publish.publication import CARD_FILE, MANAGED_DIRS, VERSION_FILE, Publication, is_managed


@dataclass
class LocalResult:
    """What a local publish did. ``no_op`` when the folder already held exactly this publication."""

    directory: Path
    fingerprint: str
    previous_fingerprint: str | None
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def no_op(self) -> bool:
        return not self.written and not self.deleted


def previous_fingerprint(directory: Path) -> str | None:
    """The data fingerprint recorded in the folder's ``amc_version.json``, if any."""
    try:
        return json.loads((directory / VERSION_FILE).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return None


def _held_version(directory: Path) -> tuple[str | None, str | None] | None:
    """(version, fingerprint) recorded in the folder's ``amc_version.json``, or None."""
    try:
        record = json.loads((directory / VERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("version"), record.get("fingerprint")


PARTIAL_MARKER = ".amc_publish_partial"  # written before a first publish's data, removed when it is complete


def _remove_tmp(directory: Path) -> None:
    if directory.is_dir():
        for p in directory.rglob(".*.tmp"):
            if p.is_file() and (".parquet." in p.name or ".png." in p.name or ".json." in p.name or ".md." in p.name):
                p.unlink()


def _existing_files(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def publish_local(pub: Publication, directory: str | Path, force: bool = False) -> LocalResult:
    """Make ``directory`` hold exactly ``pub``; write only what changed, delete what an older version left.

    The folder must be empty, missing, or an earlier amc publication (it has ``amc_version.json``): publishing
    into any other folder would overwrite its README.md and could delete files of the same shape as ours. Other
    data under the version the folder already holds is refused unless ``force`` (bump the version instead).

    >>> publish_local(build_publication(cfg), "out/quickstart").no_op  # doctest: +SKIP
    False
    """
    directory = Path(directory)
    _remove_tmp(directory)  # what a publish killed mid-write left behind
    # a first publish cut short (full disk, kill) leaves its marker and no version file yet: that folder is
    # resumed, never refused (nobody should have to delete it by hand)
    if directory.is_file() or (
        directory.is_dir()
        and any(directory.iterdir())
        and not (directory / VERSION_FILE).is_file()
        and not (directory / PARTIAL_MARKER).is_file()
    ):
        raise PublishError(
            f"{directory} is not empty and holds no amc publication ({VERSION_FILE}); "
            f"publish into an empty or new folder"
        )
    held = _held_version(directory)
    if held is not None and held[0] == pub.version and held[1] != pub.fingerprint and not force:
        # the Hub refuses to move a tag; a folder that silently changed under one version would be as bad
        raise PublishError(
            f"{directory} holds other data under the same version {pub.version} (fingerprint "
            f"{held[1]}, now {pub.fingerprint}); bump `version:` in the pipeline file, or pass "
            f"--force to replace it"
        )
    result = LocalResult(directory, pub.fingerprint, previous_fingerprint(directory))
    if not (directory / VERSION_FILE).is_file():
        _write(directory / PARTIAL_MARKER, pub.fingerprint.encode())
    # Data first, then stale files out, then the card, and the version file last: a publish cut short leaves a
    # version file that does not match the data, and the next publish (which compares bytes) repairs the folder.
    ops = sorted(pub.operations(), key=lambda op: (op[0] in (CARD_FILE, VERSION_FILE), op[0] == VERSION_FILE))
    for path, data in (op for op in ops if op[0] not in (CARD_FILE, VERSION_FILE)):
        _write_if_changed(directory, path, data, result)
    for path in _existing_files(directory):
        if is_managed(path) and path not in pub.files:
            (directory / path).unlink()
            result.deleted.append(path)
    # Folders a stale config leaves empty go too, so the layout on disk is the layout on the Hub.
    for name in MANAGED_DIRS:
        folder = directory / name
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for path, data in (op for op in ops if op[0] in (CARD_FILE, VERSION_FILE)):
        _write_if_changed(directory, path, data, result)
    (directory / PARTIAL_MARKER).unlink(missing_ok=True)
    return result


def _write_if_changed(directory: Path, path: str, data: bytes, result: LocalResult) -> None:
    target = directory / path
    if target.is_file() and target.read_bytes() == data:
        result.unchanged.append(path)
        return
    _write(target, data)
    result.written.append(path)


def _write(target: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        from amc.engine.rundir import os_error

        message = str(os_error(exc, target)).replace("run the same command again", "publish again")
        raise PublishError(f"{message}; the folder is resumed, never refused, by the next publish") from None
