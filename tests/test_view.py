"""`amc view` without a browser: the row index against the run's own files, filters, paging, the pages over HTTP,
publish folders, escaping, loopback binding and clear errors. The browser drives it in test_view_browser.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from amc.cli import app
from amc.config import load_config
from amc.engine.runner import Runner
from amc.engine.store import read_records, write_records
from amc.publish import ExportOptions, build_publication, publish_local
from amc.records import FilterDecision, ReasoningPath, Reject
from amc.view import ViewError, ViewSource, start
from amc.view.index import Query

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


@pytest.fixture(scope="module")
def run_cfg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("view-run")
    cfg = load_config(QUICKSTART, [f"run_dir={tmp}/run", "source.count=24"])
    Runner(cfg, show_progress=False).build("filter")
    return cfg


@pytest.fixture(scope="module")
def src(run_cfg) -> ViewSource:
    return ViewSource(run_cfg.run_path)


@pytest.fixture(scope="module")
def server(src):
    server, _ = start(src)
    yield server
    server.shutdown()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _records(folder: Path, model) -> list:
    return [r for f in sorted(folder.glob("*.parquet")) for r in read_records(f, model)]


# ----------------------------------------------------------------------------------------------- the index
def test_index_holds_every_row_of_the_run_with_its_status(run_cfg, src):
    run = run_cfg.run_path
    kept = _records(run / "filter" / "data", FilterDecision)
    dropped = _records(run / "filter" / "dropped", FilterDecision)
    assert kept and dropped
    sel = src.select(Query(stage="filter", status="dropped"))
    ids = src.index.take(sel).column("id").to_pylist()
    assert sorted(ids) == sorted(d.id for d in dropped)
    assert len(src.select(Query(stage="filter", status="kept"))) == len(kept)
    reasons = src.index.take(sel).column("reason").to_pylist()
    assert sorted(reasons) == sorted(d.reason for d in dropped)
    rejects = _records(run / "inject" / "rejects", Reject)
    assert len(src.select(Query(stage="inject", status="rejected"))) == len(rejects) > 0
    for stage in ("problems", "sample", "inject", "critique"):
        manifest = json.loads((run / stage / "manifest.json").read_text())
        assert len(src.select(Query(stage=stage, status="ok"))) == manifest["rows"]


def test_filters_and_search_select_exactly_the_matching_rows(run_cfg, src):
    kept = _records(run_cfg.run_path / "filter" / "data", FilterDecision)
    symbolic = [d for d in kept if d.critique.path.strategy == "symbolic"]
    assert len(src.select(Query(stage="filter", status="kept", strategy="symbolic"))) == len(symbolic) > 0
    wrong = [d for d in kept if d.critique.final_verdict is False]
    assert len(src.select(Query(stage="filter", status="kept", verdict="Wrong"))) == len(wrong)
    level = kept[0].critique.path.difficulty
    assert len(src.select(Query(stage="filter", status="kept", difficulty=str(level)))) == sum(
        d.critique.path.difficulty == level for d in kept
    )
    assert len(src.select(Query(stage="filter", difficulty="not a number"))) == 0
    assert len(src.select(Query(stage="filter", model="sim-annotator"))) == len(src.select(Query(stage="filter")))
    words = kept[0].critique.path.question.split()[:4]
    needle = " ".join(words).upper()  # case-insensitive
    hits = src.index.take(src.select(Query(stage="filter", q=needle))).column("question").to_pylist()
    assert hits and all(needle.lower() in h.lower() for h in hits)


def test_paging_walks_every_row_once(src):
    query = Query(stage="filter")
    total = len(src.select(query))
    seen = []
    for offset in range(0, total, 7):
        n, rows, _ = src.page(query, offset, 7)
        assert n == total
        seen += [(r["id"], r["status"]) for r in rows]
    assert len(seen) == total == len(set(seen))


def test_row_record_is_the_parquet_row(run_cfg, src):
    dropped = _records(run_cfg.run_path / "filter" / "dropped", FilterDecision)
    target = dropped[-1]
    position = src.locate(target.id, "filter", "dropped")
    assert FilterDecision.model_validate(src.record(position)) == target
    assert src.locate("no/such/id") is None


# ----------------------------------------------------------------------------------------------- pages over HTTP
def test_overview_shows_funnel_counts_skew_and_plots(run_cfg, server):
    status, page = _get(server.url)
    assert status == 200
    manifest = json.loads((run_cfg.run_path / "filter" / "manifest.json").read_text())
    for rule, n in ((k.removeprefix("dropped:"), v) for k, v in manifest["funnel"].items() if "dropped:" in k):
        assert f"dropped by {rule}: {n}" in page
    assert "id=counts-strategy" in page and "id=counts-difficulty" in page
    assert "plots/verdicts.png" in page and "plots/steps_per_path.png" not in page  # it would repeat difficulty
    status, png = _get_bytes(server.url + "plots/verdicts.png")
    assert status == 200 and png.startswith(b"\x89PNG")


def _get_bytes(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.status, resp.read()


def test_rows_page_filters_and_pages(src, server):
    total = len(src.select(Query(stage="filter")))
    status, page = _get(server.url + "rows?stage=filter&limit=5")
    assert status == 200 and f"<span id=total>{total}</span>" in page and "id=next" in page
    assert page.count("class=rowlink") == 5
    status, page = _get(server.url + f"rows?stage=filter&limit=5&offset={total - 2}")
    assert page.count("class=rowlink") == 2 and "id=next" not in page and "id=prev" in page


def test_row_page_of_a_dropped_row_names_its_rule_and_colours_its_steps(run_cfg, src, server):
    dropped = _records(run_cfg.run_path / "filter" / "dropped", FilterDecision)
    d = next(x for x in dropped if x.reason == "too_few_correct_refinements")
    status, page = _get(server.url + "row?" + urllib.parse.urlencode({"id": d.id, "stage": "filter"}))
    assert status == 200
    assert f"dropped by too_few_correct_refinements: correction outcome: {d.n_correct} of {d.n}" in page
    for v in d.critique.step_verdicts:
        assert f"class='step {'correct' if v.correct else 'wrong'}' id=step-{v.index}" in page
    assert page.count("<h3>#") == len(d.refinements)
    assert "rules on: " in page and "verdict_matches" in page


def test_reject_rows_show_their_reason(run_cfg, server):
    reject = _records(run_cfg.run_path / "inject" / "rejects", Reject)[0]
    query = urllib.parse.urlencode({"id": reject.row_id, "stage": "inject", "part": "rejects"})
    status, page = _get(server.url + "row?" + query)
    assert status == 200 and f"<span id=reject-reason>{reject.reason}</span>" in page


def test_unknown_pages_and_writes_are_refused(server):
    assert _get(server.url + "row?id=nope")[0] == 404
    status, page = _get(server.url + "row?id=%3Cscript%3Ex%3C/script%3E")
    assert status == 404 and "<script>x" not in page and "&lt;script&gt;x" in page
    assert _get(server.url + "etc/passwd")[0] == 404
    request = urllib.request.Request(server.url + "rows", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405


def test_binds_to_loopback_by_default(src):
    server, _ = start(src)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()


# ----------------------------------------------------------------------------------------------- other folders
def test_publish_folder_is_viewed_with_its_own_plots(run_cfg, tmp_path):
    pub = build_publication(run_cfg, ExportOptions(test_fraction=0.3, include_rejects=True))
    publish_local(pub, tmp_path / "pub")
    src = ViewSource(tmp_path / "pub")
    assert src.kind == "publication" and src.version == run_cfg.version
    assert len(src.select(Query(stage="filtered"))) == sum(pub.splits["filtered"].values())
    assert len(src.select(Query(status="rejected"))) == sum(pub.splits["rejects"].values())
    assert src.plots()["verdicts.png"] == pub.files["plots/verdicts.png"]
    server, _ = start(src)
    try:
        row = pq.read_table(tmp_path / "pub" / "filtered" / "train-00000-of-00001.parquet").slice(0, 1).to_pylist()[0]
        status, page = _get(server.url + "row?" + urllib.parse.urlencode({"id": row["id"], "stage": "filtered"}))
        assert status == 200 and "kept: " in page
        for v in row["step_verdicts"]:
            assert f"class='step {'correct' if v['correct'] else 'wrong'}' id=step-{v['index']}" in page
    finally:
        server.shutdown()


def test_text_from_the_data_is_escaped(tmp_path):
    stage = tmp_path / "run" / "sample"
    path = ReasoningPath(
        id="p1/sample/0",
        problem_id="p1",
        question="<script>alert(1)</script> 2+2?",
        reference_answer="4",
        steps=["<b>bold</b> 2+2=4", "The answer is 4."],
        predicted_answer="4",
        correct=True,
        strategy="sample",
        generator="m",
    )
    write_records(stage / "data" / "shard-00000.parquet", [path], ReasoningPath)
    manifest = {"fingerprint": "f", "status": "done", "num_shards": 1, "shards": {}, "rows": 1}
    (stage / "manifest.json").write_text(json.dumps(manifest))
    server, _ = start(ViewSource(tmp_path / "run"))
    try:
        page = _get(server.url + "row?id=p1/sample/0")[1] + _get(server.url + "rows")[1]
        assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<b>bold</b>" not in page
    finally:
        server.shutdown()


def test_a_folder_without_amc_data_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ViewError, match="holds no amc data"):
        ViewSource(tmp_path)
    result = CliRunner().invoke(app, ["view", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in " ".join(result.output.split())
    (tmp_path / "run" / "critique").mkdir(parents=True)
    (tmp_path / "run" / "critique" / "manifest.json").write_text("{")
    result = CliRunner().invoke(app, ["view", str(tmp_path / "run")])
    assert result.exit_code == 2 and "amc clean --stage critique" in " ".join(result.output.split())


def test_only_the_files_a_manifest_lists_are_shown(run_cfg, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_cfg.run_path, run, ignore=shutil.ignore_patterns("cache.sqlite", ".lock"))
    stray = run / "filter" / "dropped" / "00009-of-00010.parquet"  # e.g. left by another build
    shutil.copy(next((run / "filter" / "dropped").glob("*.parquet")), stray)
    src = ViewSource(run)
    dropped = _records(run_cfg.run_path / "filter" / "dropped", FilterDecision)
    assert len(src.select(Query(stage="filter", status="dropped"))) == len(dropped)


def test_the_command_serves_on_loopback_and_says_where(run_cfg):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "amc.cli", "view", str(run_cfg.run_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and "rows of" in line
        status, page = _get(url + "rows?stage=filter")
        assert status == 200 and "id=rows" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_shard_replaced_after_startup_gives_an_error_page(run_cfg, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_cfg.run_path, run, ignore=shutil.ignore_patterns("cache.sqlite", ".lock"))
    src = ViewSource(run)
    entry = src.entry(src.locate(_records(run / "filter" / "dropped", FilterDecision)[-1].id, "filter", "dropped"))
    shard = src.parts[entry["file"]].path
    shard.write_bytes(b"not parquet any more")
    server, _ = start(src)
    try:
        query = urllib.parse.urlencode({"id": entry["id"], "stage": "filter", "part": "dropped"})
        status, page = _get(server.url + "row?" + query)
        assert status == 500 and "restart amc view" in page
        assert _get(server.url + "rows")[0] == 200  # the rest still works
    finally:
        server.shutdown()


def test_a_busy_port_is_a_clear_error(run_cfg):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["view", str(run_cfg.run_path), "--port", str(port)])
    assert result.exit_code == 2 and "pass another --port" in " ".join(result.output.split())
