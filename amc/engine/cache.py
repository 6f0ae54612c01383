"""The request cache: every engine request goes through it, so a rerun makes no engine call.

Keyed by a content hash of everything that changes the answer (engine, model, revision, rendered messages,
continuation flag, response schema, sampling parameters with ``n`` and ``seed``, prompt template version), never by
a pickled function or by row order. Stored in an embedded SQLite file; each chunk of answers is committed before
the next is sent, so a killed build loses at most one chunk. Failed and truncated answers are never stored: they
are asked again next time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amc.backends.base import Backend, GenerationRequest, GenerationResponse
from amc.errors import AmcError


def request_key(
    engine: str, model: str, revision: str | None, req: GenerationRequest, identity: dict[str, Any] | None = None
) -> str:
    """Content hash of a request; ``req.id`` and ``req.context`` are addresses and hints, not content.

    ``identity`` holds the engine settings that change answers besides the model's name (a server's URL, dtype,
    extra request fields, the sim's error rate): see :meth:`amc.config.ModelConfig.identity`.
    """
    payload: dict[str, Any] = {
        "engine": engine,
        "model": model,
        "revision": revision,
        "identity": identity or {},
        "messages": [m.model_dump() for m in req.messages],
        "continue_final_message": req.continue_final_message,
        "response_schema": req.response_schema,
        "params": req.params.model_dump(),
        "template": req.template,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheError(AmcError):
    """The request cache cannot be read or written: names the file and the way out."""


class RequestCache:
    """SQLite store of successful responses, by request key.

    The file is opened on first use, so a build whose stages ask no engine never touches it (a broken cache does
    not stop them). A corrupt file, a read-only folder or a full disk raise :class:`CacheError`, one line naming the
    file and what to do (``amc clean --cache`` drops the cache: answers are asked again).
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
            except (sqlite3.Error, OSError) as exc:
                raise self._error(exc) from None
            self._db = db
        return self._db

    def _error(self, exc: Exception) -> CacheError:
        text = str(exc)
        if (
            "not a database" in text
            or "malformed" in text
            or isinstance(exc, sqlite3.DatabaseError)
            and ("disk" not in text and "readonly" not in text and "locked" not in text)
        ):
            return CacheError(
                f"{self.path}: the request cache is corrupt ({text}); remove it with `amc clean --cache` "
                f"(its answers are asked again) or restore it from a copy"
            )
        return CacheError(
            f"{self.path}: the request cache cannot be used ({text}); check the folder is writable "
            f"and the disk has space, then run the same command again"
        )

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        if not keys:
            return found
        with self._lock:
            db = self._conn()
            try:
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for key, body in db.execute(f"SELECT key, body FROM responses WHERE key IN ({marks})", chunk):
                        found[key] = body
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return found

    def put_many(self, items: list[tuple[str, str]]) -> None:
        if not items:
            return
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO responses (key, body) VALUES (?, ?)", items)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise self._error(exc) from None

    def __len__(self) -> int:
        with self._lock:
            try:
                return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _cacheable(resp: GenerationResponse) -> bool:
    return resp.ok and all(c.finish_reason == "stop" for c in resp.completions)


class CachedBackend:
    """A backend seen through the cache. Counts requests ``made`` (sent to the engine), ``cached`` (answered from
    the cache) and ``failed`` (answered with an error).

    Give it a backend, or a ``factory`` with the model's name: the engine is then started only when a request
    misses the cache, so a stage rebuilt entirely from the cache never loads a model or needs an API key.
    """

    def __init__(
        self,
        backend: Backend | None,
        cache: RequestCache,
        chunk_size: int = 64,
        *,
        factory: Callable[[], Backend] | None = None,
        engine: str | None = None,
        model: str | None = None,
        revision: str | None = None,
        identity: dict[str, Any] | None = None,
    ):
        if backend is None and factory is None:
            raise ValueError("CachedBackend needs a backend or a factory")
        self._backend = backend
        self._factory = factory
        self.cache = cache
        self.chunk_size = chunk_size
        self.engine = backend.engine if backend is not None else str(engine)
        self.model = backend.model if backend is not None else str(model)
        self.revision = backend.revision if backend is not None else revision
        self.identity = identity or {}
        self.made = 0
        self.cached = 0
        self.failed = 0
        # `amc build --retry-rejects`: request ids whose cached answer made a reject row are sent to the engine
        # again (its new answer replaces the cached one); None: every cached answer is used
        self.refresh: Callable[[str], bool] | None = None

    @property
    def backend(self) -> Backend:
        """The engine, started on first use."""
        if self._backend is None:
            assert self._factory is not None
            self._backend = self._factory()
        return self._backend

    @property
    def started(self) -> bool:
        return self._backend is not None

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        keys = [request_key(self.engine, self.model, self.revision, r, self.identity) for r in requests]
        hits = self.cache.get_many(list(set(keys)))
        out: list[GenerationResponse | None] = [None] * len(requests)
        misses: list[int] = []
        for i, key in enumerate(keys):
            if key in hits and not (self.refresh is not None and self.refresh(requests[i].id)):
                resp = GenerationResponse.model_validate_json(hits[key])
                out[i] = resp.model_copy(update={"request_id": requests[i].id, "cached": True})
                self.cached += 1
            else:
                misses.append(i)
        for start in range(0, len(misses), self.chunk_size):
            idx = misses[start : start + self.chunk_size]
            answers = self.backend.generate([requests[i] for i in idx])
            if len(answers) != len(idx):
                raise RuntimeError(f"engine {self.engine} returned {len(answers)} responses for {len(idx)} requests")
            self.made += len(idx)
            to_store = []
            for i, resp in zip(idx, answers, strict=True):
                resp = resp.model_copy(update={"request_id": requests[i].id})
                out[i] = resp
                if _cacheable(resp):
                    to_store.append((keys[i], resp.model_dump_json(exclude={"cached"})))
                elif resp.error is not None:
                    self.failed += 1
            self.cache.put_many(to_store)
        return [r for r in out if r is not None]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
