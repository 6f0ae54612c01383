"""The Hub publisher: one commit with every file of a publication, an immutable version tag, retries.

What it guarantees:

- **One commit per version.** Every config, the plots, the card and ``amc_version.json`` go up in a single
  ``create_commit`` (additions, plus deletions of stale files in the folders amc owns), on top of the revision's
  current head (``parent_commit``), so a concurrent push is detected, never overwritten.
- **No-op when unchanged.** The revision's tree (git blob ids, LFS sha256) is compared with the publication's
  bytes before anything is uploaded; equal content makes no commit.
- **Tags never move.** An existing tag is compared the same way: same content is a no-op, other content is an
  error raised before any commit is made.
- **Retries are safe.** Each attempt re-reads the refs and the tree, so retrying after a commit whose answer was
  lost finds the content already there and does nothing twice.
- **The token** comes from ``HF_TOKEN`` in the environment only; it is passed to ``huggingface_hub`` in memory and
  never written anywhere.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from amc import __version__
from amc.publish.exports import PublishError
from amc.publish.publication import VERSION_FILE, Publication, is_managed, sha256

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REPO_TYPE = "dataset"


@dataclass
class HubResult:
    """What a Hub publish did. ``no_op`` when the revision (and the tag, if any) already held this content."""

    repo_id: str
    revision: str
    head: str
    commit: str | None = None
    tag: str | None = None
    tag_created: bool = False
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    attempts: int = 1

    @property
    def no_op(self) -> bool:
        return self.commit is None and not self.tag_created


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file's bytes: what the Hub reports as ``oid`` for a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):  # huggingface_hub 2.x ships httpx2; older releases use httpx
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def is_transient(exc: BaseException) -> bool:
    """A network failure or a 408/429/5xx answer: worth another attempt. Anything else is the caller's to fix."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        response = getattr(exc, "response", None)
        return response is not None and response.status_code in TRANSIENT_STATUS
    return isinstance(exc, _transport_errors())


def with_retries(
    fn: Callable[[int], T], attempts: int = 5, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Call ``fn(attempt)`` until it returns, waiting ``backoff * 2**i`` (at most 60 s) after a transient error."""
    for attempt in range(1, attempts + 1):
        try:
            return fn(attempt)
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            sleep(min(60.0, backoff * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover


def remote_files(api: Any, repo_id: str, revision: str) -> dict[str, Any]:
    """path -> RepoFile of every file at ``revision`` (recursive tree listing, no file is downloaded)."""
    from huggingface_hub.hf_api import RepoFile

    tree = api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type=REPO_TYPE)
    return {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}


def _same_bytes(entry: Any, data: bytes) -> bool:
    lfs = getattr(entry, "lfs", None)
    if lfs is not None:
        return lfs.sha256 == sha256(data)
    return entry.blob_id == git_blob_oid(data)


def diff(remote: dict[str, Any], files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """(paths to upload because missing or different, stale paths to delete).

    Stale files are those of the shape amc writes that the new version lacks, and only in a repository that
    already holds an amc publication: files someone else put into a repository are never deleted.
    """
    changed = [p for p, data in sorted(files.items()) if p not in remote or not _same_bytes(remote[p], data)]
    ours = VERSION_FILE in remote
    stale = sorted(path for path in remote if ours and is_managed(path) and path not in files)
    return changed, stale


def hub_token() -> str:
    """The write token, from ``HF_TOKEN`` only: never a file, never a command-line argument (shell history)."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise PublishError("set HF_TOKEN in the environment to a Hugging Face token with write access")
    return token


def _check_online() -> None:
    from huggingface_hub import constants

    offline = constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE
    if offline:
        raise PublishError("HF_HUB_OFFLINE is set: unset it to publish to the Hub (or publish with --to DIR)")


def publish_hub(
    pub: Publication,
    repo_id: str,
    *,
    revision: str = "main",
    tag: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> HubResult:
    """Push ``pub`` to the dataset repository ``repo_id`` at ``revision`` in one commit, then tag it.

    ``endpoint`` defaults to ``HF_ENDPOINT`` (read now, not at import) and then to huggingface.co.

    >>> publish_hub(build_publication(cfg), "my-org/quickstart", tag="v0.1.0")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    _check_online()
    api = HfApi(
        endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None,
        token=hub_token(),
        library_name="amc",
        library_version=__version__,
    )

    def attempt(n: int) -> HubResult:
        result = _publish_once(api, pub, repo_id, revision, tag, private)
        result.attempts = n
        return result

    return with_retries(attempt, attempts=attempts, backoff=backoff, sleep=sleep)


def _publish_once(api: Any, pub: Publication, repo_id: str, revision: str, tag: str | None, private: bool) -> HubResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    tags = {t.name: t.target_commit for t in refs.tags}
    if tag is not None and tag in tags:
        changed, stale = diff(remote_files(api, repo_id, tags[tag]), pub.files)
        if changed or stale:
            shown = ", ".join((changed + stale)[:5]) + (" ..." if len(changed) + len(stale) > 5 else "")
            raise PublishError(
                f"tag '{tag}' already exists in {repo_id} and points at other content ({shown}); "
                f"tags are never moved: bump `version:` in the pipeline file"
            )
    branches = {b.name: b.target_commit for b in refs.branches}
    if revision not in branches:
        api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
        branches = {b.name: b.target_commit for b in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).branches}
    head = branches[revision]
    changed, stale = diff(remote_files(api, repo_id, head), pub.files)
    result = HubResult(repo_id=repo_id, revision=revision, head=head, tag=tag)
    if changed or stale:
        operations: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=d) for p, d in pub.operations()]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        info = api.create_commit(
            repo_id,
            operations,
            repo_type=REPO_TYPE,
            revision=revision,
            parent_commit=head,
            commit_message=f"{pub.name} {pub.tag} (fingerprint {pub.fingerprint})",
            commit_description=f"Published by amc {__version__}. Data fingerprint: {pub.fingerprint}. "
            f"Changed: {len(changed)} file(s); deleted: {len(stale)} stale file(s).",
        )
        result.commit = result.head = info.oid
        result.uploaded, result.deleted = changed, stale
    if tag is not None and tag not in tags:
        api.create_tag(
            repo_id,
            tag=tag,
            revision=result.head,
            repo_type=REPO_TYPE,
            tag_message=f"{pub.name} {pub.tag}, fingerprint {pub.fingerprint}",
        )
        result.tag_created = True
    return result
