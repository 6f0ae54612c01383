"""The Hub publisher against a local HTTP double of the few Hub endpoints it uses.

The double is a real HTTP server on 127.0.0.1 (a thread), reached through ``HF_ENDPOINT``: huggingface_hub runs
its whole HTTP stack unchanged (client, headers, NDJSON commit payload, error mapping), and the double records
every request. It keeps git-like state (commits, branches, tags) and answers the tree listing with real git blob
ids, so the publisher's no-op and tag checks run against the same kind of answers the Hub gives. Like the Hub,
its preupload answer sends Parquet and PNG files through LFS: it serves the LFS batch API, takes the uploads on a
storage URL of its own (which, like S3, gets no token), verifies them, and lists LFS files in trees with their
sha256 and the git id of their pointer, so huggingface_hub's real LFS upload path runs. (Xet, the Hub's newer
storage protocol, is switched off with ``HF_HUB_DISABLE_XET``: it is a binary protocol huggingface_hub owns.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import huggingface_hub.utils
import pytest
from typer.testing import CliRunner

from amc.cli import app
from amc.config import load_config
from amc.engine.runner import Runner
from amc.publish import ExportOptions, PublishError, build_publication, publish_local
from amc.publish.hub import git_blob_oid, publish_hub

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_TestTokenNeverWrittenAnywhere0123456789"
REPO = "amc-test/quickstart"
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".parquet", ".png")


def is_lfs(path: str) -> bool:
    """Files the double, like the Hub, stores through LFS."""
    return path.endswith(LFS_SUFFIXES)


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file the Hub's git tree holds for an LFS file."""
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def tree_entry(path: str, data: bytes) -> dict[str, object]:
    """A file as the Hub lists it: a regular file by its git blob id; an LFS file by its pointer's blob id, with
    its sha256 and size under ``lfs``."""
    if not is_lfs(path):
        return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
    pointer = lfs_pointer(data)
    return {
        "type": "file",
        "oid": git_blob_oid(pointer),
        "size": len(data),
        "path": path,
        "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)},
    }


# ----------------------------------------------------------------------------------------------- the double
@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        """'POST commit', 'GET tree', ...: the endpoint without the repository and revision."""
        if self.path.startswith("/api/repos/create"):
            return f"{self.method} create"
        if self.path.startswith("/api/validate-yaml"):
            return f"{self.method} validate-yaml"
        if self.path.endswith(".git/info/lfs/objects/batch"):
            return f"{self.method} lfs-batch"
        if self.path.startswith(("/lfs-storage/", "/lfs-verify/")):
            return f"{self.method} {self.path.split('/')[1]}"
        m = re.match(r"/api/datasets/[^/]+/[^/]+/([a-z-]+)", self.path)
        return f"{self.method} {m.group(1) if m else self.path}"


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        return self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)


class FakeHub:
    """State and request log of the double; ``fail`` injects answers, e.g. ``fail["POST commit"] = [503]``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Recorded] = []
        self.fail: dict[str, list[int]] = {}
        self.lfs: dict[str, bytes] = {}  # LFS storage: content by sha256
        self.fail_after_apply: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.url = ""

    def routes(self) -> list[str]:
        return [r.route for r in self.requests]

    def commits(self) -> list[Recorded]:
        return [r for r in self.requests if r.route == "POST commit"]

    def tree(self, repo: str, rev: str) -> dict[str, bytes]:
        r = self.repos[repo]
        oid = r.resolve(rev)
        assert oid is not None, f"no revision {rev}"
        return r.commits[oid]

    def new_commit(self, repo: Repo, parent: str | None, files: dict[str, bytes]) -> str:
        digest = hashlib.sha1(f"{parent}{len(repo.commits)}".encode())
        for path, data in sorted(files.items()):
            digest.update(path.encode() + git_blob_oid(data).encode())
        oid = digest.hexdigest()
        repo.commits[oid] = files
        return oid


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: object = None, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        rec = Recorded(
            self.command, unquote(url.path), parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}, body
        )
        hub = self.hub
        with hub.lock:
            hub.requests.append(rec)
            if hub.fail.get(rec.route):
                return self._reply(hub.fail[rec.route].pop(0), {"error": "injected failure"})
            status, answer, headers = self._dispatch(rec)
            if status < 400 and hub.fail_after_apply.get(rec.route):
                # The change is applied, then the answer is "lost": what a retry must survive without a duplicate.
                return self._reply(hub.fail_after_apply[rec.route].pop(0), {"error": "injected after apply"})
        self._reply(status, answer, headers)

    do_GET = do_POST = do_HEAD = do_PUT = _handle

    def _dispatch(self, rec: Recorded) -> tuple[int, object, dict[str, str]]:
        hub = self.hub
        if rec.route == "POST create":
            req = json.loads(rec.body)
            repo_id = f"{req['organization']}/{req['name']}"
            if repo_id in hub.repos:
                return 409, {"error": "You already created this dataset repo", "url": f"{hub.url}/{repo_id}"}, {}
            repo = hub.repos[repo_id] = Repo(private=req.get("visibility") == "private")
            repo.branches["main"] = hub.new_commit(repo, None, {".gitattributes": GITATTRIBUTES})
            return 200, {"url": f"{hub.url}/datasets/{repo_id}"}, {}
        if rec.route == "POST validate-yaml":
            content = json.loads(rec.body)["content"]
            meta = huggingface_hub.DatasetCard(content).data.to_dict()
            errors = [] if meta.get("configs") else [{"message": "no configs"}]
            return (400 if errors else 200), {"errors": errors, "warnings": []}, {}
        if rec.route == "POST lfs-batch":
            req = json.loads(rec.body)
            if req.get("operation") != "upload" or "basic" not in req.get("transfers", []):
                return 400, {"message": "only basic uploads"}, {}
            objects = []
            for obj in req["objects"]:
                entry: dict[str, object] = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in hub.lfs:  # content the storage already holds is not uploaded again
                    entry["actions"] = {
                        "upload": {"href": f"{hub.url}/lfs-storage/{obj['oid']}"},
                        "verify": {"href": f"{hub.url}/lfs-verify/{obj['oid']}"},
                    }
                objects.append(entry)
            return 200, {"transfer": "basic", "objects": objects}, {}
        if rec.route == "PUT lfs-storage":
            oid = rec.path.rsplit("/", 1)[1]
            if hashlib.sha256(rec.body).hexdigest() != oid:
                return 400, {"error": "content does not match its oid"}, {}
            hub.lfs[oid] = rec.body
            return 200, {}, {}
        if rec.route == "POST lfs-verify":
            req = json.loads(rec.body)
            stored = hub.lfs.get(req["oid"])
            ok = stored is not None and len(stored) == req["size"]
            return (200, {}, {}) if ok else (404, {"error": "object not stored"}, {})
        m = re.match(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", rec.path)
        if m:  # file downloads, as `datasets.load_dataset` does them: HEAD for metadata, then GET
            repo = hub.repos.get(m.group(1))
            oid = repo.resolve(m.group(2)) if repo else None
            if oid is None or m.group(3) not in repo.commits[oid]:
                return 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}
            data = repo.commits[oid][m.group(3)]
            if is_lfs(m.group(3)):  # as the Hub: the sha256 is the LFS file's etag
                sha = hashlib.sha256(data).hexdigest()
                return (
                    200,
                    data,
                    {
                        "X-Repo-Commit": oid,
                        "ETag": f'"{sha}"',
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(data)),
                    },
                )
            return 200, data, {"X-Repo-Commit": oid, "ETag": f'"{git_blob_oid(data)}"'}
        m = re.match(r"/api/datasets/([^/]+/[^/]+)/([a-z-]+)(?:/([^/]+))?(?:/(.*))?$", rec.path)
        if not m or m.group(1) not in hub.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        repo, kind, rev = hub.repos[m.group(1)], m.group(2), m.group(3)
        if kind == "refs":

            def ref(kind_: str, name: str, oid: str) -> dict[str, str]:
                return {"name": name, "ref": f"refs/{kind_}/{name}", "targetCommit": oid}

            return (
                200,
                {
                    "branches": [ref("heads", n, o) for n, o in repo.branches.items()],
                    "tags": [ref("tags", n, o) for n, o in repo.tags.items()],
                    "converts": [],
                },
                {},
            )
        oid = repo.resolve(rev or "main")
        if kind in ("tree", "preupload", "commit", "tag", "revision", "paths-info") and oid is None:
            return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
        if kind == "revision":  # repo info
            return (
                200,
                {
                    "id": m.group(1),
                    "sha": oid,
                    "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(repo.commits[oid])],
                },
                {},
            )
        if kind == "paths-info":
            wanted = parse_qs(rec.body.decode()).get("paths", [])
            files = repo.commits[oid]
            return 200, [tree_entry(p, files[p]) for p in wanted if p in files], {}
        if kind == "tree":
            files = repo.commits[oid]
            dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
            return (
                200,
                [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d} for d in dirs]
                + [tree_entry(p, data) for p, data in sorted(files.items())],
                {},
            )
        if kind == "preupload":
            files = repo.commits[oid]
            return (
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if is_lfs(f["path"]) else "regular",
                            "shouldIgnore": False,
                            "oid": git_blob_oid(files[f["path"]]) if f["path"] in files else None,
                        }
                        for f in json.loads(rec.body)["files"]
                    ]
                },
                {},
            )
        if kind == "commit":
            lines = [json.loads(line) for line in rec.body.splitlines() if line.strip()]
            header = lines[0]["value"]
            if header.get("parentCommit") not in (None, oid):
                return 412, {"error": "parent commit is not the head of the branch"}, {}
            files = dict(repo.commits[oid])
            for line in lines[1:]:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "lfsFile":  # content uploaded to the LFS storage before the commit
                    value = line["value"]
                    stored = hub.lfs.get(value["oid"])
                    if value.get("algo") != "sha256" or stored is None or len(stored) != value["size"]:
                        return 400, {"error": f"LFS object of {value['path']} was not uploaded"}, {}
                    files[value["path"]] = stored
                elif line["key"] == "deletedFile":
                    files.pop(line["value"]["path"])
                else:
                    return 400, {"error": f"unexpected {line['key']}"}, {}
            repo.branches[rev] = new = hub.new_commit(repo, oid, files)
            return (
                200,
                {
                    "commitUrl": f"{hub.url}/datasets/{m.group(1)}/commit/{new}",
                    "commitOid": new,
                    "success": True,
                    "pullRequestUrl": None,
                },
                {},
            )
        if kind == "branch":
            if rev in repo.branches:
                return 409, {"error": "branch exists"}, {}
            start = json.loads(rec.body or b"{}").get("startingPoint") or "main"
            repo.branches[rev] = repo.resolve(start)
            return 200, {}, {}
        if kind == "tag":
            tag = json.loads(rec.body)["tag"]
            if tag in repo.tags:
                return 409, {"error": "tag exists"}, {}
            repo.tags[tag] = oid
            return 200, {}, {}
        return 404, {"error": f"no route {rec.path}"}, {}


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A fresh double per test; huggingface_hub pointed at it, online, with a token from the environment only."""
    state = FakeHub()
    handler = type("BoundHandler", (Handler,), {"hub": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the LFS protocol, not Xet
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    huggingface_hub.utils.close_session()  # a fresh client reads NO_PROXY
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        huggingface_hub.utils.close_session()


# ----------------------------------------------------------------------------------------------- a built run
@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("hub-run")
    config = load_config(ROOT / "pipelines" / "quickstart.yaml", [f"run_dir={tmp}/run", "source.count=24"])
    Runner(config, show_progress=False).build("filter")
    return config


@pytest.fixture(scope="module")
def pub(cfg):
    return build_publication(cfg, ExportOptions(test_fraction=0.25))


def _push(pub, **kwargs):
    return publish_hub(pub, REPO, backoff=0.0, sleep=lambda s: None, **kwargs)


# ----------------------------------------------------------------------------------------------- tests
def test_first_publish_is_one_commit_of_the_shared_operations_then_a_tag(hub: FakeHub, pub, tmp_path: Path):
    result = _push(pub, tag="v0.1.0")

    routes = hub.routes()
    lfs_files = [path for path, _ in pub.operations() if is_lfs(path)]
    assert any(path.endswith(".parquet") for path in lfs_files)
    # Parquet and PNG files go through LFS, as on the Hub: one batch call, an upload and a verify per file
    storage = [r for r in routes if r in ("PUT lfs-storage", "POST lfs-verify")]
    assert [r for r in routes if r not in storage] == [
        "POST create",
        "GET refs",
        "GET tree",
        "POST validate-yaml",
        "POST preupload",
        "POST lfs-batch",
        "POST commit",
        "POST tag",
    ]
    assert storage.count("PUT lfs-storage") == storage.count("POST lfs-verify") == len(lfs_files)
    assert routes.index("POST commit") > max(i for i, r in enumerate(routes) if r in storage)
    (commit,) = hub.commits()
    lines = [json.loads(line) for line in commit.body.splitlines()]
    assert lines[0]["key"] == "header" and pub.fingerprint in lines[0]["value"]["summary"]
    regular = {ln["value"]["path"]: base64.b64decode(ln["value"]["content"]) for ln in lines[1:] if ln["key"] == "file"}
    lfs = {ln["value"]["path"]: hub.lfs[ln["value"]["oid"]] for ln in lines[1:] if ln["key"] == "lfsFile"}
    assert sorted(lfs) == sorted(lfs_files) and not any(is_lfs(path) for path in regular)
    # The commit carries exactly the publication's operations, byte for byte, and nothing else.
    assert {**regular, **lfs} == dict(pub.operations())
    assert commit.headers["content-type"] == "application/x-ndjson"
    assert result.commit == hub.repos[REPO].branches["main"] == hub.repos[REPO].tags["v0.1.0"]
    assert result.tag_created and not result.no_op
    assert json.loads(hub.requests[-1].body)["tag"] == "v0.1.0"
    # The local publisher writes the very same files: a folder and a Hub revision are interchangeable.
    local = tmp_path / "local"
    publish_local(pub, local)
    on_disk = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    remote = hub.tree(REPO, "v0.1.0")
    assert on_disk == {p: d for p, d in remote.items() if p != ".gitattributes"}
    # The token travels in the Authorization header of Hub API calls only (never to the LFS storage URL), and is in
    # no published file.
    api = [r for r in hub.requests if r.route != "PUT lfs-storage"]
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api)
    assert not any("authorization" in r.headers for r in hub.requests if r.route == "PUT lfs-storage")
    assert not any(TOKEN.encode() in data for data in remote.values())
    hf_home = Path(os.environ["HF_HOME"])
    assert not any(TOKEN.encode() in p.read_bytes() for p in hf_home.rglob("*") if p.is_file())


def test_republishing_unchanged_data_makes_no_commit_and_keeps_the_tag(hub: FakeHub, pub):
    _push(pub, tag="v0.1.0")
    before = len(hub.requests)
    result = _push(pub, tag="v0.1.0")
    again = hub.routes()[before:]
    assert result.no_op and result.commit is None and not result.tag_created
    assert "POST commit" not in again and "POST preupload" not in again and "POST tag" not in again
    assert len(hub.repos[REPO].commits) == 2  # the repository's initial commit and ours


def test_an_existing_tag_is_never_moved_to_other_content(hub: FakeHub, cfg, pub):
    _push(pub, tag="v0.1.0")
    tagged = hub.repos[REPO].tags["v0.1.0"]
    other = build_publication(cfg, ExportOptions(test_fraction=0.5))
    assert other.fingerprint != pub.fingerprint
    with pytest.raises(PublishError, match="tag 'v0.1.0' already exists"):
        _push(other, tag="v0.1.0")
    assert len(hub.commits()) == 1  # refused before committing anything
    assert hub.repos[REPO].tags["v0.1.0"] == tagged


def test_a_new_version_commits_once_and_deletes_stale_files(hub: FakeHub, cfg, pub):
    _push(pub, tag="v0.1.0")
    cfg2 = cfg.model_copy(update={"version": "0.2.0"})
    pub2 = build_publication(cfg2, ExportOptions(test_fraction=0.25, shard_rows=10))
    result = _push(pub2, tag="v0.2.0")

    stale = sorted(set(pub.files) - set(pub2.files))
    assert stale and result.deleted == stale
    lines = [json.loads(line) for line in hub.commits()[-1].body.splitlines()]
    assert sorted(line["value"]["path"] for line in lines if line["key"] == "deletedFile") == stale
    assert {p: d for p, d in hub.tree(REPO, "main").items() if p != ".gitattributes"} == pub2.files
    # The old tag still points at the old content.
    assert {p: d for p, d in hub.tree(REPO, "v0.1.0").items() if p != ".gitattributes"} == pub.files
    assert json.loads(hub.tree(REPO, "v0.2.0")["amc_version.json"])["version"] == "0.2.0"


def test_a_lost_commit_answer_is_retried_without_a_second_commit(hub: FakeHub, pub):
    hub.fail_after_apply["POST commit"] = [503]
    waits: list[float] = []
    result = publish_hub(pub, REPO, tag="v0.1.0", backoff=0.5, sleep=waits.append)
    assert waits == [0.5] and result.attempts == 2
    assert len(hub.commits()) == 1  # the retry found the content there and made no second commit
    assert hub.repos[REPO].tags["v0.1.0"] == hub.repos[REPO].branches["main"]


def test_a_transient_error_before_the_commit_is_retried(hub: FakeHub, pub):
    hub.fail["POST create"] = [502, 503]
    waits: list[float] = []
    result = publish_hub(pub, REPO, backoff=1.0, sleep=waits.append)
    assert waits == [1.0, 2.0] and result.attempts == 3 and result.commit


def test_a_client_error_is_not_retried(hub: FakeHub, pub):
    hub.fail["POST commit"] = [403]
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):
        _push(pub)
    assert len(hub.commits()) == 1


def test_private_repo_on_a_new_branch(hub: FakeHub, pub):
    result = _push(pub, revision="dev", private=True)
    create = json.loads(hub.requests[0].body)
    assert create["visibility"] == "private" and create["type"] == "dataset"
    assert "POST branch" in hub.routes()
    assert result.revision == "dev" and hub.repos[REPO].private
    assert set(hub.tree(REPO, "main")) == {".gitattributes"}  # main untouched
    assert {p: d for p, d in hub.tree(REPO, "dev").items() if p != ".gitattributes"} == pub.files


def test_no_token_no_request(hub: FakeHub, pub, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="HF_TOKEN"):
        _push(pub)
    assert hub.requests == []


def test_cli_publish_to_the_hub_then_no_op(hub: FakeHub, cfg, tmp_path: Path):
    config = tmp_path / "amc.yaml"
    config.write_text((ROOT / "pipelines" / "quickstart.yaml").read_text())
    args = [
        "publish",
        "-c",
        str(config),
        "--set",
        f"run_dir={cfg.run_dir}",
        "--set",
        "source.count=24",
        "--repo-id",
        REPO,
        "--tag",
        "v0.1.0",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "committed" in first.output and "tagged" in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "up to date" in second.output and len(hub.commits()) == 1
    wrong_tag = CliRunner().invoke(app, [*args[:-1], "v9.9.9"])
    assert wrong_tag.exit_code == 2 and "does not match the dataset version" in wrong_tag.output
    readme = hub.tree(REPO, "v0.1.0")["README.md"].decode()
    assert f'load_dataset("{REPO}", "filtered", revision="v0.1.0")' in readme
    assert not any(TOKEN in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


def test_amc_load_reads_a_tagged_version_from_the_hub(hub: FakeHub, cfg, pub, monkeypatch: pytest.MonkeyPatch):
    import datasets

    import amc

    _push(pub, tag="v0.1.0")
    newer = build_publication(cfg.model_copy(update={"version": "0.2.0"}), ExportOptions(test_fraction=0.0))
    _push(newer, tag="v0.2.0")
    # `datasets` and the download code read the endpoint and offline mode at import: point them at the double.
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(
        huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    old = amc.load(REPO, "filtered", revision="v0.1.0", split="test")
    assert old.num_rows == pub.splits["filtered"]["test"] > 0
    current = amc.load(REPO, "filtered", revision="v0.2.0")
    assert current.num_rows == newer.splits["filtered"]["train"] == sum(pub.splits["filtered"].values())
    assert any(r.path.endswith("/resolve/v0.1.0/README.md") for r in hub.requests)


def test_files_of_a_repository_amc_did_not_publish_are_never_deleted(hub: FakeHub, pub):
    # Someone's existing dataset repository, with files of the shapes amc writes.
    publish_hub_files = {"plots/theirs.png": b"png", "rejects/train-00000-of-00001.parquet": b"x", "NOTES.md": b"n"}
    repo = hub.repos[REPO] = Repo(private=False)
    repo.branches["main"] = hub.new_commit(repo, None, {".gitattributes": GITATTRIBUTES, **publish_hub_files})
    result = _push(pub)
    assert result.deleted == []
    tree = hub.tree(REPO, "main")
    assert all(tree[p] == d for p, d in publish_hub_files.items())
    assert all(tree[p] == d for p, d in pub.files.items())
