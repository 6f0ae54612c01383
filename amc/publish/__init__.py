"""Versioned dataset releases: exports of a run, dataset cards, a local-folder publisher and a Hub publisher.

One publication (every file of one dataset version, path -> bytes) is built from a run and handed to either
publisher, so a folder and a Hub revision hold the same files::

    pub = build_publication(cfg, ExportOptions(test_fraction=0.1))
    publish_local(pub, "out/quickstart")                      # datasets.load_dataset("out/quickstart", "filtered")
    publish_hub(pub, "my-org/quickstart", tag=pub.tag)        # one commit, tag v<version>, HF_TOKEN from the env
    load("my-org/quickstart", "filtered", revision="v0.1.0")  # a datasets.Dataset
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amc.publish.exports import ExportOptions, PublishError, split_of
from amc.publish.local import LocalResult, publish_local
from amc.publish.publication import Publication, build_publication

if TYPE_CHECKING:
    import datasets

    from amc.publish.hub import HubResult


def publish_hub(pub: Publication, repo_id: str, **kwargs: Any) -> HubResult:
    """Push a publication to the Hub; see :func:`amc.publish.hub.publish_hub` (imported lazily: it pulls in
    ``huggingface_hub``'s HTTP stack, which exports and local publishing never need)."""
    from amc.publish.hub import publish_hub as _publish_hub

    return _publish_hub(pub, repo_id, **kwargs)


def load(
    repo_or_dir: str | Path, config: str = "filtered", revision: str | None = None, split: str = "train"
) -> datasets.Dataset:
    """One split of one config of a published dataset, from a local folder or a Hub repository id.

    A folder has no revisions: ``revision`` may only name the version it holds (``v0.1.0`` or ``0.1.0``, checked
    against its ``amc_version.json``), so a script pinned to a version never silently reads another one.

    >>> train = load("my-org/quickstart", "sft_critic", revision="v0.1.0")  # doctest: +SKIP
    """
    import datasets

    folder = Path(repo_or_dir)
    if folder.is_dir():
        if revision is not None:
            held = _folder_version(folder)
            if held is None or revision.removeprefix("v") != held:
                raise PublishError(
                    f"{folder} holds version {held or 'unknown'}, not {revision}; a local folder has no other revisions"
                )
        return datasets.load_dataset(str(folder), config, split=split, cache_dir=_folder_cache_dir(folder))
    text = str(repo_or_dir)
    if folder.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", text) or text.startswith("."):
        raise PublishError(f"{text}: no such folder, and not a Hub dataset id (ORG/NAME)")
    try:
        return datasets.load_dataset(text, config, revision=revision, split=split)
    except (ConnectionError, OSError) as exc:
        raise PublishError(f"{text}: not a local folder, and the Hub could not give it: {exc}") from None


def _folder_cache_dir(folder: Path) -> str:
    """A datasets cache of this folder as it is now (its path and every file's size and mtime).

    datasets keys the cache of a local folder by the folder's name and the configs' file patterns only, so two
    folders both named ``published`` shared one cache and the second one read the first one's rows.
    """
    import hashlib

    import datasets.config

    key = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        key.update(f"\n{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "amc-folders" / key.hexdigest()[:16])


def _folder_version(folder: Path) -> str | None:
    try:
        return json.loads((folder / "amc_version.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


__all__ = [
    "ExportOptions",
    "LocalResult",
    "Publication",
    "PublishError",
    "build_publication",
    "load",
    "publish_hub",
    "publish_local",
    "split_of",
]
