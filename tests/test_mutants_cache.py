"""The request cache (amc/engine/cache.py): what a miss sends, in which chunks, what is stored, what is counted,
how a broken cache is named. Written for the mutants bench/mutation.sh found surviving (issue 16)."""

from __future__ import annotations

import sqlite3

import pytest

from amc.backends.base import Completion, GenerationRequest, GenerationResponse, Message, SamplingParams
from amc.engine.cache import CachedBackend, CacheError, RequestCache, request_key

# the key of the request in test_request_keys_are_stable_across_releases_so_an_upgrade_keeps_the_cache
PINNED_KEY = "c8df0ebd86ecc1bc57b22d80461ed2db9bab1883d03a4919012248c8e20e4aab"


class Engine:
    """Answers each request with its question, or as told per question: 'error', 'retry' (an outage), 'length'."""

    engine, model, revision = "e", "m", "r1"

    def __init__(self, modes: dict[str, str] | None = None, short: bool = False):
        self.modes = modes or {}
        self.batches: list[list[str]] = []
        self.short = short
        self.closed = False

    def generate(self, requests):
        self.batches.append([r.id for r in requests])
        out = []
        for r in requests:
            q = r.messages[-1].content
            mode = self.modes.get(q, "ok")
            if mode in ("error", "retry"):
                out.append(GenerationResponse(request_id=r.id, error="boom", retryable=mode == "retry"))
            else:
                reason = "length" if mode == "length" else "stop"
                out.append(
                    GenerationResponse(
                        request_id="engine's own id",
                        completions=[Completion(text=f"answer to {q}", finish_reason=reason)],
                    )
                )
        return out[:-1] if self.short else out

    def close(self):
        self.closed = True


def _req(q: str, rid: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        id=rid or q, role="actor", messages=[Message(role="user", content=q)], params=SamplingParams(seed=1)
    )


def test_misses_go_in_chunks_in_order_and_answers_keep_the_callers_ids(tmp_path):
    engine = Engine()
    cb = CachedBackend(engine, RequestCache(tmp_path / "c.sqlite"), chunk_size=2)
    out = cb.generate([_req(f"q{i}") for i in range(5)])
    assert engine.batches == [["q0", "q1"], ["q2", "q3"], ["q4"]]
    assert [r.request_id for r in out] == ["q0", "q1", "q2", "q3", "q4"]
    assert [r.completions[0].text for r in out] == [f"answer to q{i}" for i in range(5)]
    assert not any(r.cached for r in out)
    assert (cb.made, cb.cached, cb.failed) == (5, 0, 0)
    # hits and misses mixed: only the misses are sent, answers come back in the caller's order
    out = cb.generate([_req("q1", "a"), _req("new", "b"), _req("q3", "c")])
    assert engine.batches[-1] == ["b"]
    assert [(r.request_id, r.cached) for r in out] == [("a", True), ("b", False), ("c", True)]
    assert out[0].completions[0].text == "answer to q1"
    assert (cb.made, cb.cached, cb.failed) == (6, 2, 0)


def test_the_same_request_twice_in_one_call_is_answered_twice(tmp_path):
    engine = Engine()
    cb = CachedBackend(engine, RequestCache(tmp_path / "c.sqlite"))
    cb.generate([_req("q", "x")])
    out = cb.generate([_req("q", "a"), _req("q", "b")])
    assert [(r.request_id, r.cached) for r in out] == [("a", True), ("b", True)] and cb.cached == 2


def test_failed_and_cut_off_answers_are_counted_and_asked_again(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    engine = Engine({"bad": "error", "down": "retry", "cut": "length"})
    cb = CachedBackend(engine, cache)
    out = cb.generate([_req("bad"), _req("down"), _req("cut"), _req("ok")])
    assert [r.ok for r in out] == [False, False, True, True]
    assert (cb.made, cb.failed, len(cache)) == (4, 2, 1)  # a cut-off answer is not a failure, but not stored
    cb.generate([_req("bad"), _req("down"), _req("cut"), _req("ok")])
    assert engine.batches[-1] == ["bad", "down", "cut"] and cb.cached == 1


def test_an_engine_that_loses_answers_is_an_error_not_a_shifted_dataset(tmp_path):
    cb = CachedBackend(Engine(short=True), RequestCache(tmp_path / "c.sqlite"))
    with pytest.raises(RuntimeError, match="engine e returned 1 responses for 2 requests"):
        cb.generate([_req("a"), _req("b")])


def test_retry_rejects_sends_exactly_the_refreshed_requests_and_replaces_their_answer(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    engine = Engine()
    cb = CachedBackend(engine, cache)
    cb.generate([_req("a"), _req("b")])
    engine.modes["a"] = "length"  # the engine now answers differently
    cb.refresh = lambda rid: rid == "b"
    out = cb.generate([_req("a"), _req("b")])
    assert engine.batches[-1] == ["b"] and [r.cached for r in out] == [True, False]
    assert len(cache) == 2


def test_the_engine_starts_only_on_a_miss_and_keys_use_the_given_names(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    started: list[Engine] = []

    def factory():
        started.append(Engine())
        return started[-1]

    warm = CachedBackend(Engine(), cache, identity={"base_url": "u"})
    warm.generate([_req("a")])
    lazy = CachedBackend(None, cache, factory=factory, engine="e", model="m", revision="r1", identity={"base_url": "u"})
    assert (lazy.engine, lazy.model, lazy.revision, lazy.identity) == ("e", "m", "r1", {"base_url": "u"})
    lazy.generate([_req("a")])
    assert not lazy.started and started == [] and lazy.cached == 1
    lazy.close()  # closing an engine never started starts nothing
    assert started == []
    other = CachedBackend(None, cache, factory=factory, engine="e", model="m", revision="r2")
    other.generate([_req("a")])  # another revision: not the same answer
    assert other.started and len(started) == 1 and other.made == 1
    other.close()
    assert started[0].closed
    with pytest.raises(ValueError, match="^CachedBackend needs a backend or a factory$"):
        CachedBackend(None, cache)


def test_the_key_is_a_full_sha256_and_identity_none_is_no_identity():
    r = _req("a")
    k = request_key("e", "m", None, r)
    assert len(k) == 64 and k == request_key("e", "m", None, r, {}) != request_key("e", "m", None, r, {"x": 1})
    # non-ASCII content is hashed as written
    assert request_key("e", "m", None, _req("é")) != request_key("e", "m", None, _req("e"))


# ------------------------------------------------------------------------------------------------ the file
def test_many_keys_are_read_and_written_in_one_go_and_survive_reopening(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"
    cache = RequestCache(path)
    assert cache.get_many([]) == {} and not path.exists()  # nothing asked: the file is not even created
    cache.put_many([])
    assert not path.exists()
    items = [(f"k{i}", f"v{i}") for i in range(1203)]
    cache.put_many(items)
    assert len(cache) == 1203
    cache.close()
    cache.close()
    again = RequestCache(path)
    keys = [f"k{i}" for i in range(0, 1203, 1)] + ["missing"]
    assert again.get_many(keys) == dict(items)
    again.put_many([("k0", "new")])
    assert again.get_many(["k0"]) == {"k0": "new"} and len(again) == 1203


def test_the_cache_file_is_in_wal_mode_so_a_reader_is_never_blocked_by_a_build(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    cache.put_many([("k", "v")])
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_batch_stores_nothing_and_the_cache_stays_usable(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    with pytest.raises(CacheError):
        cache.put_many([("a", "1"), ("b", None)])  # type: ignore[list-item]  (NOT NULL fails mid-batch)
    assert cache.get_many(["a", "b"]) == {}
    cache.put_many([("a", "1")])
    assert cache.get_many(["a"]) == {"a": "1"}


@pytest.mark.parametrize(
    ("exc", "corrupt"),
    [
        (sqlite3.DatabaseError("file is not a database"), True),
        (sqlite3.DatabaseError("database disk image is malformed"), True),
        (sqlite3.DatabaseError("something else went wrong"), True),
        (sqlite3.OperationalError("database is locked"), False),
        (sqlite3.OperationalError("attempt to write a readonly database"), False),
        (sqlite3.OperationalError("disk I/O error"), False),
        (sqlite3.Error("not a database error class"), True),
        (sqlite3.Error("other"), False),
        (OSError(28, "No space left on device"), False),
    ],
)
def test_a_broken_cache_is_one_line_that_says_whether_to_remove_it(tmp_path, exc, corrupt):
    path = tmp_path / "c.sqlite"
    text = str(exc)
    message = str(RequestCache(path)._error(exc))
    if corrupt:
        assert message == (
            f"{path}: the request cache is corrupt ({text}); remove it with `amc clean --cache` "
            f"(its answers are asked again) or restore it from a copy"
        )
    else:
        assert message == (
            f"{path}: the request cache cannot be used ({text}); check the folder is writable "
            f"and the disk has space, then run the same command again"
        )


def test_a_corrupt_file_and_an_unwritable_place_are_named_on_first_use(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    for use in (lambda c: c.get_many(["k"]), lambda c: c.put_many([("k", "v")]), len):
        with pytest.raises(CacheError, match="is corrupt"):
            use(RequestCache(bad))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CacheError, match="cannot be used"):
        RequestCache(blocker / "c.sqlite").get_many(["k"])


def test_a_cache_whose_table_was_dropped_under_it_is_named_corrupt_at_every_use(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    cache.put_many([("k", "v")])
    with sqlite3.connect(path) as other:
        other.execute("DROP TABLE responses")
    for use in (lambda c: c.get_many(["k"]), lambda c: c.put_many([("k", "v")]), len):
        with pytest.raises(CacheError, match=r"is corrupt \(no such table: responses\); remove it with `amc clean"):
            use(cache)


# ------------------------------------------------------------------------------------ what a key is made of
@pytest.mark.parametrize(
    "other",
    [
        {"engine": "vllm"},
        {"model": "m2"},
        {"revision": "r2"},
        {"identity": {"base_url": "http://elsewhere"}},
        {"identity": None},
    ],
    ids=["engine", "model", "revision", "identity", "no-identity"],
)
def test_backends_that_differ_in_one_name_never_share_answers_in_one_cache(tmp_path, other):
    """One run's cache serves every role: an actor and an annotator that differ only in engine, model, revision or
    settings (a server's URL) must each get their own answers, never the other's."""
    cache = RequestCache(tmp_path / "c.sqlite")
    names = {"engine": "sim", "model": "m", "revision": "r1", "identity": {"base_url": "http://here"}}
    first = CachedBackend(None, cache, factory=Engine, **names)
    first.generate([_req("a")])
    assert first.made == 1
    same = CachedBackend(None, cache, factory=Engine, **names)
    same.generate([_req("a")])
    assert (same.made, same.cached) == (0, 1) and not same.started
    differs = CachedBackend(None, cache, factory=Engine, **{**names, **other})
    differs.generate([_req("a")])
    assert (differs.made, differs.cached) == (1, 0), other


def test_settings_written_in_another_key_order_are_the_same_request():
    r = _req("a").model_copy(update={"response_schema": {"type": "object", "required": ["x"], "title": "T"}})
    reordered = r.model_copy(update={"response_schema": {"title": "T", "required": ["x"], "type": "object"}})
    assert request_key("e", "m", None, r, {"url": "u", "dtype": "f32"}) == request_key(
        "e", "m", None, reordered, {"dtype": "f32", "url": "u"}
    )


def test_request_keys_are_stable_across_releases_so_an_upgrade_keeps_the_cache():
    """A run's cache outlives the amc that wrote it: after an upgrade, a rerun must find its answers (else every
    request is paid for again). This pins the key of one request with every field set; a change to the key's
    format must be deliberate (change this value and say in the changelog that caches are invalidated)."""
    req = GenerationRequest(
        id="p1/sample",
        role="actor",
        messages=[Message(role="system", content="Résous."), Message(role="user", content="1 + 1 = ?")],
        params=SamplingParams(n=2, temperature=0.7, max_tokens=64, seed=3),
        response_schema={"type": "object", "properties": {"a": {"type": "string"}}},
        template="sample@1",
    )
    key = request_key("vllm", "org/model", "abc123", req, {"dtype": "bfloat16", "base_url": "http://h:8000/v1"})
    assert key == PINNED_KEY


def test_a_cache_in_a_folder_that_does_not_exist_yet_is_created_with_its_parents(tmp_path):
    cache = RequestCache(tmp_path / "runs" / "new" / "deep" / "cache.sqlite")
    cache.put_many([("k", "v")])
    assert cache.get_many(["k"]) == {"k": "v"}


def test_one_cache_is_used_from_several_threads(tmp_path):
    """The openai engine's request threads and the viewer's handler threads reach the cache from other threads
    than the one that opened it."""
    import threading

    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put_many([("k0", "v0")])  # opened on this thread
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            cache.put_many([(f"k{i}", f"v{i}")])
            assert cache.get_many(["k0", f"k{i}"]) == {"k0": "v0", f"k{i}": f"v{i}"}
        except BaseException as exc:  # noqa: BLE001  (reported below, on the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) == 5
