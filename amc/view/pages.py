"""HTML of ``amc view``: three server-rendered pages (overview, rows, one row), plain forms and links, inline CSS.

No script and no asset from anywhere but the viewer itself: the pages work offline and in any browser. Every
value from the data is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

import pyarrow.compute as pc

from amc.view.index import Query, counts
from amc.view.overview import decision_text, normalize
from amc.view.source import ViewSource

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#202124;background:#fafafa}
header{background:#263238;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:baseline}
header a{color:#cfd8dc;text-decoration:none}header a:hover{color:#fff}header b{font-size:16px}
main{padding:12px 16px;max-width:1280px}h1{font-size:22px;margin:6px 0}h2{font-size:17px;margin:4px 0 6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px}
th,td{border:1px solid #dadce0;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f4}td.num{text-align:right}a.rowlink{white-space:nowrap}
#rows{width:100%;font-size:13px}#rows td{white-space:nowrap}#rows td.q{white-space:normal;min-width:300px}
.qline{color:#5f6368;font-size:12px}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;border:1px solid #bbb}
.st-kept{background:#e6f4ea;border-color:#1e8e3e}.st-dropped{background:#fef7e0;border-color:#f9ab00}
.st-rejected{background:#fce8e6;border-color:#d93025}
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin-bottom:8px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#5f6368}
.steps{display:grid;grid-template-columns:2.2em minmax(0,1fr) 7em minmax(0,1fr);gap:4px 8px;margin:6px 0}
.step{padding:4px 8px;border-radius:4px;border-left:5px solid #9aa0a6;background:#f1f3f4;white-space:pre-wrap}
.step.correct{background:#e6f4ea;border-left-color:#1e8e3e}.step.wrong{background:#fce8e6;border-left-color:#d93025}
.verdict{font-weight:600}.verdict.correct{color:#1e8e3e}.verdict.wrong{color:#d93025}
.tag{font-size:11px;color:#fff;background:#5f6368;border-radius:6px;padding:0 5px;margin-left:6px}
.tag.known{background:#8430ce}.tag.first{background:#d93025}
.box{background:#fff;border:1px solid #dadce0;border-radius:6px;padding:8px 12px;margin:10px 0}
.decision{font-weight:600}.decision.kept{color:#1e8e3e}.decision.dropped{color:#b06000}
pre{white-space:pre-wrap;background:#f8f9fa;border:1px solid #eee;padding:6px;margin:4px 0}
.note{background:#fff8e1;border-left:4px solid #f9ab00;padding:6px 10px;margin:8px 0}
.tables{display:flex;flex-wrap:wrap;gap:0 18px;align-items:flex-start}
img.plot{max-width:620px;border:1px solid #eee;margin:4px 8px 8px 0;background:#fff}
"""
FILTER_LABELS = {
    "stage": "stage",
    "status": "kept / dropped / rejected",
    "strategy": "strategy",
    "error_type": "error type",
    "verdict": "verdict",
    "difficulty": "difficulty",
    "model": "model",
}


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def layout(src: ViewSource, title: str, body: str) -> str:
    """A whole page: header with the source's name and the two entry points, then ``body``."""
    where = f"{src.name}" + (f" v{src.version}" if src.version else "")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)} - amc view</title>"
        f"<style>{CSS}</style></head><body><header><b>amc view</b><span>{e(where)} ({e(src.kind)})</span>"
        f"<a href='/' id=nav-overview>Overview</a><a href='/rows' id=nav-rows>Rows</a></header>"
        f"<main>{body}</main></body></html>"
    )


def rows_link(**params: Any) -> str:
    return "/rows?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def row_link(entry: dict[str, Any]) -> str:
    return "/row?" + urlencode({"id": entry["id"], "stage": entry["stage"], "part": entry["part"]})


def status_badge(status: str) -> str:
    return f"<span class='badge st-{e(status)}'>{e(status)}</span>"


# ----------------------------------------------------------------------------------------------- overview
def overview_page(src: ViewSource) -> str:
    """Funnel, counts by strategy / error type / difficulty / verdict of the main stage, skew note, plots."""
    return src.cached("overview", lambda: _overview(src))


def _overview(src: ViewSource) -> str:
    parts = [
        f"<h1>{e(src.name)}</h1><p>{e(src.kind)} at <code>{e(src.root)}</code>: {src.index.num_rows} rows indexed.</p>",
        "<h2>Funnel</h2>",
        _funnel_table(src),
    ]
    stage = src.main_stage
    main = src.index.filter(pc.fill_null(pc.equal(src.index.column("stage"), stage), False))
    parts.append(f"<h2>Rows of <code>{e(stage)}</code> by</h2>")
    skew = _skew_note(main)
    if skew:
        parts.append(f"<p class=note id=skew>{e(skew.replace('`', ''))}</p>")
    tables = [
        _count_table(main, stage, column, label)
        for column, label in (
            ("strategy", "strategy"),
            ("error_type", "error type"),
            ("difficulty", "difficulty"),
            ("verdict", "final verdict"),
        )
    ]
    parts.append("<div class=tables>" + "".join(tables) + "</div>")
    plots = src.plots()
    if plots:
        parts.append(
            "<h2>Plots</h2>" + "".join(f"<img class=plot alt='{e(n)}' src='/plots/{e(n)}'>" for n in sorted(plots))
        )
    return layout(src, "Overview", "".join(parts))


def _funnel_table(src: ViewSource) -> str:
    head = (
        "<table id=funnel><tr><th>stage</th><th>state</th><th>rows</th><th>rejects</th><th>dropped</th>"
        "<th>counts</th><th>why</th></tr>"
    )
    body = []
    for s in src.funnel():
        why = [
            f"<a href='{rows_link(stage=s['stage'], status='dropped', q=k)}'>dropped by {e(k)}: {v}</a>"
            for k, v in s["drops"].items()
        ]
        why += [
            f"<a href='{rows_link(stage=s['stage'], status='rejected', q=k)}'>rejected as {e(k)}: {v}</a>"
            for k, v in s["rejects_by_reason"].items()
        ]
        counts_text = ", ".join(f"{e(k)}: {e(v)}" for k, v in s["counts"].items())
        body.append(
            f"<tr><td><a href='{rows_link(stage=s['stage'])}'>{e(s['stage'])}</a></td><td>{e(s['state'])}"
            f"</td><td class=num>{e(s['rows'])}</td><td class=num>{e(s['rejects'])}</td>"
            f"<td class=num>{e(s['dropped'])}</td><td>{counts_text}</td><td>{'<br>'.join(why)}</td></tr>"
        )
    return head + "".join(body) + "</table>"


def _count_table(table, stage: str, column: str, label: str) -> str:
    data = counts(table, column)
    if column == "difficulty":  # levels read in order, not by count
        data = dict(
            sorted(
                data.items(),
                key=lambda kv: (not kv[0].lstrip("-").isdigit(), int(kv[0]) if kv[0].lstrip("-").isdigit() else 0),
            )
        )
    if not data or list(data) == ["none"]:
        return ""
    statuses = sorted({s for by in data.values() for s in by})
    head = (
        f"<table class=counts id=counts-{column}><tr><th>{e(label)}</th>"
        + "".join(f"<th>{status_badge(s)}</th>" for s in statuses)
        + "</tr>"
    )
    rows = []
    for value, by in data.items():
        # "none" is a missing value: no filter selects it (except the verdict, which is never missing)
        linkable = value != "none" or column == "verdict"
        cells = "".join(
            f"<td class=num><a href='{rows_link(stage=stage, status=s, **{column: value})}'>{by.get(s, 0)}</a></td>"
            if linkable
            else f"<td class=num>{by.get(s, 0)}</td>"
            for s in statuses
        )
        rows.append(f"<tr><td>{e(value)}</td>{cells}</tr>")
    return head + "".join(rows) + "</table>"


def _skew_note(table) -> str:
    """The card's class-skew warning (:func:`amc.publish.card_notes.skew_text`) for the kept rows shown."""
    from amc.publish.card_notes import skew_text

    by = {v: c.get("kept", 0) for v, c in counts(table, "verdict").items()}
    return skew_text(by.get("Wrong", 0), by.get("Correct", 0), where="kept rows")


# ----------------------------------------------------------------------------------------------- rows
def rows_page(src: ViewSource, query: Query, offset: int, limit: int) -> str:
    """The filter form, one page of matching rows and the pager."""
    total, entries, _ = src.page(query, offset, limit)
    form = ["<form class=filters method=get action='/rows' id=filters>"]
    for key, label in FILTER_LABELS.items():
        opts = "".join(
            f"<option value='{e(v)}'{' selected' if getattr(query, key) == v else ''}>{e(v)}</option>"
            for v in src.choices(key)
        )
        form.append(
            f"<label>{e(label)}<select name={key} id=f-{key}><option value=''>any</option>{opts}</select></label>"
        )
    form.append(
        f"<label>search<input name=q id=f-q value='{e(query.q)}' placeholder='id, question, reason'>"
        f"</label><button type=submit id=apply>Apply</button></form>"
    )
    head = (
        "<table id=rows><tr><th>id and question (or detail)</th><th>stage</th><th>status</th><th>strategy</th>"
        "<th>error type</th><th>difficulty</th><th>verdict</th><th>reason</th></tr>"
    )
    body = []
    for r in entries:
        question = (r["question"] or "")[:160]
        body.append(
            f"<tr><td class=q><a class=rowlink href='{row_link(r)}'>{e(r['id'])}</a><div class=qline>{e(question)}"
            f"</div></td><td>{e(r['stage'])}</td><td>{status_badge(r['status'])}</td><td>{e(r['strategy'])}</td>"
            f"<td>{e(r['error_type'])}</td><td>{e(r['difficulty'])}</td><td>{e(r['verdict'])}</td>"
            f"<td>{e(r['reason'])}</td></tr>"
        )
    last = min(total, offset + limit)
    pager = [f"<p id=pager>rows {offset + 1 if total else 0}-{last} of <span id=total>{total}</span> "]
    if offset > 0:
        pager.append(f"<a id=prev href='{rows_link(**query.params(), offset=max(0, offset - limit))}'>previous</a> ")
    if last < total:
        pager.append(f"<a id=next href='{rows_link(**query.params(), offset=last)}'>next</a>")
    pager.append("</p>")
    return layout(src, "Rows", "".join(form) + "".join(pager) + head + "".join(body) + "</table>")


# ----------------------------------------------------------------------------------------------- one row
def row_page(src: ViewSource, position: int) -> str:
    """Problem, path step by step with verdicts and explanations, final verdict, refinements, decision."""
    entry = src.entry(position)
    view = normalize(entry["kind"], src.record(position))
    out = [
        f"<h1 id=row-id>{e(entry['id'])}</h1><p>stage <b>{e(entry['stage'])}</b> ({e(entry['part'])}) "
        f"{status_badge(entry['status'])} <a href='{rows_link(q=entry['problem_id'], stage='')}'>every row of "
        f"problem {e(entry['problem_id'])}</a></p>"
    ]
    if "reject" in view:
        r = view["reject"]
        out.append(
            f"<div class=box id=reject><b>rejected by stage {e(r['stage'])}</b>: <span id=reject-reason>"
            f"{e(r['reason'])}</span><pre>{e(r['detail'])}</pre></div>"
        )
    if "decision" in view:
        d = view["decision"]
        status = "kept" if d.get("kept") else "dropped"
        settings = src.filter_settings()
        rules = ""
        if settings:
            on = [k for k, v in (settings.get("rules") or {}).items() if v is True]
            rules = (
                f"<br><small>filter: N = {e(settings['n'])}, k = {e(settings['k'])}; "
                f"rules on: {e(', '.join(on))}</small>"
            )
        out.append(
            f"<div class=box id=decision><span class='decision {status}' id=decision-text>"
            f"{e(decision_text(view))}</span>{rules}</div>"
        )
    if "problem" in view:
        p = view["problem"]
        out.append(
            f"<div class=box id=problem><h2>Problem</h2><pre>{e(p.get('question'))}</pre>reference answer: "
            f"<b id=reference-answer>{e(p.get('reference_answer'))}</b>; difficulty {e(p.get('difficulty'))};"
            f" source {e(p.get('source'))}"
        )
        if p.get("solution"):
            out.append(f"<h3>Reference solution</h3><pre>{e(p['solution'])}</pre>")
        out.append("</div>")
    if "path" in view:
        out.append(_path_box(view))
    if view.get("refinements") is not None and "decision" in view:
        out.append(_refinements_box(view["refinements"]))
    if "messages" in view:
        out.append(
            "<div class=box><h2>Messages</h2>"
            + "".join(f"<h3>{e(m.get('role'))}</h3><pre>{e(m.get('content'))}</pre>" for m in view["messages"])
            + "</div>"
        )
    return layout(src, entry["id"], "".join(out))


def _path_box(view: dict[str, Any]) -> str:
    p, c = view["path"], view.get("critique") or {}
    verdicts = {v["index"]: v for v in (c.get("step_verdicts") or [])}
    known, first = p.get("error_step"), c.get("first_error_step")
    out = [
        f"<div class=box id=path><h2>Path</h2><p>strategy <b>{e(p.get('strategy'))}</b>, generator "
        f"{e(p.get('generator'))}; known error step: <b id=known-error-step>"
        f"{e('none (correct path)' if known == -1 else ('not known' if known is None else known))}</b>"
        f"{'; error type ' + e(p.get('error_type')) if p.get('error_type') else ''}; predicted answer "
        f"<b>{e(p.get('predicted_answer'))}</b> ({'correct' if p.get('correct') else 'wrong'})</p>"
    ]
    if c:
        out.append(
            f"<p>annotator {e(c.get('annotator'))}; first step judged Wrong: {e(first)}; parse "
            f"{e(c.get('parse_status'))}; hints: {e(', '.join(c.get('hints') or []) or 'none')}</p>"
        )
    out.append("<div class=steps id=steps>")
    for i, step in enumerate(p.get("steps") or []):
        v = verdicts.get(i)
        cls = "" if v is None else ("correct" if v["correct"] else "wrong")
        word = "not judged" if v is None else ("Correct" if v["correct"] else "Wrong")
        tags = ("<span class='tag known'>known error</span>" if known == i else "") + (
            "<span class='tag first'>first Wrong</span>" if first == i else ""
        )
        out.append(
            f"<div>{i}</div><div class='step {cls}' id=step-{i} data-verdict='{e(word)}'>{e(step)}{tags}"
            f"</div><div class='verdict {cls}'>{e(word)}</div><div class=explanation>"
            f"{e(v.get('explanation') if v else '')}</div>"
        )
    out.append("</div>")
    if c:
        fv = c.get("final_verdict")
        word = "none" if fv is None else ("Correct" if fv else "Wrong")
        cls = "" if fv is None else ("correct" if fv else "wrong")
        out.append(
            f"<p>final verdict: <span class='verdict {cls}' id=final-verdict>{word}</span> "
            f"{e(c.get('final_explanation'))}</p><details><summary>critique as written</summary>"
            f"<pre>{e(c.get('raw'))}</pre></details>"
        )
    return "".join(out) + "</div>"


def _refinements_box(refs: list[dict[str, Any]]) -> str:
    if not refs:
        return "<div class=box id=refinements><h2>Refinements</h2><p>none asked (dropped before refining)</p></div>"
    out = [
        f"<div class=box id=refinements><h2>Refinements ({sum(bool(r.get('correct')) for r in refs)} of "
        f"{len(refs)} correct)</h2>"
    ]
    for r in refs:
        ok = bool(r.get("correct"))
        note = " (shortcut: stated with almost no working)" if r.get("shortcut") else ""
        out.append(
            f"<h3>#{e(r.get('index'))}: answer {e(r.get('predicted_answer'))} <span class='verdict "
            f"{'correct' if ok else 'wrong'}'>{'correct' if ok else 'wrong'}</span>{e(note)} "
            f"<small>finish {e(r.get('finish_reason'))}</small></h3><pre>{e(r.get('text'))}</pre>"
        )
    return "".join(out) + "</div>"
