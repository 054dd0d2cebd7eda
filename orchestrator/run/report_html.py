"""``report.html``: the run's report as a page that needs no server.

Written beside ``report.json`` in ``--out``: the run's status and totals, each branch with its
contact sheet (its shots' thumbnails in playing order), its status and a link to its master,
and every shot with its status, why it rendered and its timings. Links and images are relative
(``masters/<branch>.mp4``, ``thumbs/<key>.jpg``), so the page reads the same from a directory,
a file share or an S3 static website. Every text that comes from a manifest or a run record is
escaped.

Thumbnails are small JPEGs made from each shot's poster frame (``outputs["poster"]``) when its
record has one, otherwise from its last frame, and written once per render key. A branch's
contact sheet shows at most :data:`SHEET_SHOTS` shots, evenly spaced from its first to its
last (every shot is in the table, and in ``reelfarm ui``): the thumbnails of a fresh ``--out``
cost a bounded number of reads from the store, not one per shot of a studio-sized story.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ..store.base import SHA256_RE, BlobMissing, CorruptBlob, StoreError

if TYPE_CHECKING:
    from ..store.base import ActionRecord, Store
    from ..store.output_api import Output

THUMB_WIDTH = 160
THUMB_DIR = "thumbs"
THUMB_QUALITY = 75
SHEET_SHOTS = 48  # shots on a branch's contact sheet at most


def sheet(tasks: Sequence[str], limit: int = SHEET_SHOTS) -> list[str]:
    """The tasks a branch's contact sheet shows: all of them, or ``limit`` evenly spaced from
    the first to the last."""
    n = len(tasks)
    if n <= limit:
        return list(tasks)
    if limit <= 1:
        return list(tasks[:limit])
    return [tasks[round(i * (n - 1) / (limit - 1))] for i in range(limit)]


def thumb_rel(key: str) -> str:
    if not SHA256_RE.match(key):
        raise ValueError(f"not a render key: {key!r}")
    return f"{THUMB_DIR}/{key}.jpg"


def thumbnail(image: bytes, width: int = THUMB_WIDTH) -> bytes:
    """A JPEG ``width`` pixels wide (never wider than the image) of an encoded image."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, max(1, round(im.height * width / im.width))),
                           Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return buf.getvalue()


def write_thumbs(out: Output, store: Store, records: Mapping[str, ActionRecord],
                 *, prune: bool) -> tuple[set[str], list[str]]:
    """Make the missing thumbnails of ``records`` (by task id) in ``out``; with ``prune``,
    remove the ones no record here names. Returns the keys that have one, and problems."""
    have = set(out.list_files(f"{THUMB_DIR}/"))
    keys: set[str] = set()
    problems: list[str] = []
    for rec in records.values():
        rel = thumb_rel(rec.key)
        if rel in have:
            keys.add(rec.key)
            continue
        ref = rec.outputs.get("poster") or rec.outputs.get("last_frame")
        if ref is None:
            continue
        try:
            data = thumbnail(store.get_bytes(ref.sha256))
        except (BlobMissing, CorruptBlob, StoreError, OSError, ValueError) as err:
            problems.append(f"no thumbnail for {rec.key[:12]}: {err}")
            continue
        out.put_bytes(rel, data, "image/jpeg")
        have.add(rel)
        keys.add(rec.key)
    if prune:
        wanted = {thumb_rel(r.key) for r in records.values()}
        for rel in sorted(have - wanted):
            out.remove(rel)
    return keys, problems


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1 small{color:#777;font-weight:normal}
.summary span{margin-right:1.2em}
.status{display:inline-block;padding:0 .5em;border-radius:3px;background:#ddd;font-size:12px}
.succeeded,.done,.rendered{background:#cfe8cf}.cached{background:#dde8f5}
.failed,.error{background:#f5cccc}.blocked,.interrupted,.stale{background:#f5e6c4}
.branch{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.branch h3{margin:.2em 0}.path{color:#555}
.sheet{display:flex;gap:6px;overflow-x:auto;padding:4px 0}
.shot{margin:0;flex:0 0 auto;width:160px;font-size:12px}
.shot img,.shot .none{display:block;width:160px;border-radius:3px;background:#333}
.shot .none{height:90px;color:#eee;text-align:center;line-height:90px}
.shot figcaption{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:left;font-size:12px}td.num{text-align:right}code{font-size:12px}
"""


def _status(value: Any) -> str:
    s = str(value or "")
    return f'<span class="status {escape(s)}">{escape(s)}</span>'


def _secs(value: Any) -> str:
    return f"{value:.2f}s" if isinstance(value, (int, float)) else ""


def render_html(report: Mapping[str, Any], branches: Sequence[Mapping[str, Any]], *,
                title: str = "", thumbs: set[str] | frozenset[str] = frozenset()) -> str:
    """The page for a run record (``report``) and its branches index (``branches.json``);
    ``thumbs``: the render keys whose thumbnail is in ``thumbs/``."""
    e = escape
    tasks = {t["id"]: t for t in report.get("tasks", []) if isinstance(t, dict)}
    status_of = {b.get("name"): b for b in report.get("branches", []) if isinstance(b, dict)}
    totals = report.get("totals") or {}
    story = str(report.get("story", ""))
    h: list[str] = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title or story)} · {e(str(report.get('run_id', '')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(title or story)} <small>{e(story)}</small></h1>",
        '<p class="summary">'
        f"<span>run <code>{e(str(report.get('run_id', '')))}</code></span>"
        f"<span>{_status(report.get('status'))}</span>"
        f"<span>started {e(str(report.get('started', '')))}</span>"
        f"<span>{_secs(report.get('seconds'))}</span></p>",
        '<p class="summary">' + "".join(
            f"<span>{e(k.replace('_', ' '))}: {e(str(totals.get(k)))}</span>"
            for k in ("unique", "cached", "rendered", "failed", "blocked", "masters",
                      "render_seconds") if k in totals) + "</p>",
    ]
    for err in report.get("errors") or []:
        h.append(f'<p class="status error">{e(str(err))}</p>')
    h.append(f'<section id="branches"><h2>Branches ({len(branches)})</h2>')
    for b in branches:
        name = str(b.get("name", ""))
        run_b = status_of.get(name, {})
        state = "stale" if b.get("stale") else run_b.get("status", "")
        h.append(f'<article class="branch" data-branch="{e(name)}">')
        h.append(f"<h3>{e(name)} {_status(state)}</h3>")
        segs = " → ".join(e(str(s)) for s in b.get("segments") or [])
        choices = " / ".join(e(str(c)) for c in b.get("choices") or [])
        h.append(f'<p class="path">{segs}' + (f" <em>({choices})</em>" if choices else "")
                 + "</p>")
        m = b.get("master")
        if isinstance(m, dict) and isinstance(m.get("path"), str):
            h.append(
                f'<p><a class="master" href="{e(m["path"])}">{e(m["path"])}</a> · '
                f"{e(str(m.get('frames', '')))} frames · {_secs(m.get('seconds'))} · "
                f"<code>{e(str(m.get('sha256', ''))[:12])}</code></p>")
        else:
            h.append(f'<p class="status error">no master: {e(str(b.get("error") or ""))}</p>')
        h.append('<div class="sheet">')
        all_tasks = [str(t) for t in b.get("tasks") or []]
        shown = sheet(all_tasks)
        for tid in shown:
            t = tasks.get(tid, {})
            key = str(t.get("key", ""))
            shot = str(t.get("shot", tid))
            tip = f"{tid} · {t.get('status', '')}" + (f" · {t['reason']}" if t.get("reason")
                                                      else "")
            if key in thumbs:
                img = (f'<img src="{e(thumb_rel(key))}" alt="{e(shot)}" width="{THUMB_WIDTH}">')
            else:
                img = f'<span class="none">{e(str(t.get("status", "no image")))}</span>'
            h.append(f'<figure class="shot" title="{e(tip)}">{img}<figcaption>'
                     f'{_status(t.get("status"))} {e(shot)}</figcaption></figure>')
        h.append("</div>")
        if len(shown) < len(all_tasks):
            h.append(f'<p class="more">{len(shown)} of {len(all_tasks)} shots, evenly spaced; '
                     'every shot is in the table below</p>')
        h.append("</article>")
    h.append("</section>")
    h.append(f'<section id="shots"><h2>Shots ({len(tasks)})</h2><table><thead><tr>'
             "<th>task</th><th>segment</th><th>status</th><th>why</th><th>seconds</th>"
             "<th>model load</th><th>retries</th><th>node</th><th>key</th><th>error</th>"
             "</tr></thead><tbody>")
    for t in tasks.values():
        h.append(
            f'<tr data-task="{e(str(t.get("id", "")))}"><td>{e(str(t.get("id", "")))}</td>'
            f"<td>{e(str(t.get('segment', '')))}</td><td>{_status(t.get('status'))}</td>"
            f"<td>{e(str(t.get('reason') or ''))}</td>"
            f'<td class="num">{_secs(t.get("seconds"))}</td>'
            f'<td class="num">{_secs(t.get("load_seconds")) if t.get("load_seconds") else ""}'
            f'</td><td class="num">{e(str(t.get("retries", "")))}</td>'
            f"<td>{e(str(t.get('node') or ''))}</td>"
            f"<td><code>{e(str(t.get('key', ''))[:12])}</code></td>"
            f"<td>{e(str(t.get('error') or ''))}</td></tr>")
    h.append("</tbody></table></section></body></html>\n")
    return "\n".join(h)


def publish(out: Output, store: Store, report: Mapping[str, Any],
            branches: Sequence[Mapping[str, Any]], records: Mapping[str, ActionRecord], *,
            title: str = "", prune: bool = True) -> list[str]:
    """Write the thumbnails of the contact sheets and ``report.html``; returns problems (a
    thumbnail that could not be made is left out of the page, and said). ``records``: by
    task id."""
    shown = {tid for b in branches for tid in sheet([str(t) for t in b.get("tasks") or []])}
    keys, problems = write_thumbs(
        out, store, {tid: r for tid, r in records.items() if tid in shown}, prune=prune)
    page = render_html(report, branches, title=title, thumbs=keys)
    out.put_bytes("report.html", page.encode(), "text/html; charset=utf-8")
    return problems
