"""Run records read for the monitor: a summary per run, and a run's page data.

Records are read as they are: fields a newer renderer writes (``user``, ``host``, ``version``,
``priority``, ``updated``, ``running``, ``eta_seconds``, a task's ``log``, an action record's
``poster``, the story ``graph``) are used when present, and their absence is shown, never an
error. Nothing here writes.
"""

from __future__ import annotations

from typing import Any

from ..store.base import SHA256_RE
from .layout import layout

#: What each task status is called on the page (and coloured by, in style.css).
STATUSES = ("pending", "ready", "running", "cached", "rendered", "failed", "blocked")
# The shot shows its worst task: a failed variant makes the shot failed.
_RANK = {"failed": 0, "blocked": 1, "running": 2, "ready": 3, "pending": 4, "rendered": 5,
         "cached": 6}


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _num(v: Any) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _digest(v: Any) -> str | None:
    """A sha256 from a field that holds one, or a ``{sha256, size}`` reference to one."""
    if isinstance(v, dict):
        v = v.get("sha256")
    return v if isinstance(v, str) and SHA256_RE.match(v) else None


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """One line of the runs page."""
    totals = doc.get("totals") if isinstance(doc.get("totals"), dict) else {}
    tasks = [t for t in doc.get("tasks") or [] if isinstance(t, dict)]
    counts = {s: 0 for s in STATUSES}
    for t in tasks:
        if t.get("status") in counts:
            counts[t["status"]] += 1
    running = doc.get("running") if isinstance(doc.get("running"), list) else []
    return {
        "story": _str(doc.get("story")),
        "run_id": _str(doc.get("run_id")),
        "status": _str(doc.get("status")) or "unknown",
        "user": _str(doc.get("user")),
        "host": _str(doc.get("host")),
        "version": _str(doc.get("version")),
        "priority": doc.get("priority") if isinstance(doc.get("priority"), (int, str)) else None,
        "started": _str(doc.get("started")),
        "updated": _str(doc.get("updated")),
        "seconds": _num(doc.get("seconds")),
        "eta_seconds": _num(doc.get("eta_seconds")),
        "tasks": len(tasks) or _num(totals.get("unique")),
        "counts": counts,
        "running": len(running),
        "masters": _num(totals.get("masters")),
        "branches": len(doc.get("branches") or []),
        "errors": len(doc.get("errors") or []),
    }


def _segment(s: dict[str, Any]) -> dict[str, Any]:
    """A recorded segment with only the fields of the shapes the layout reads."""
    c = s.get("choice") if isinstance(s.get("choice"), dict) else None
    choice = None
    if c is not None:
        opts = [{"label": str(o.get("label", "")), "next": o["next"]}
                for o in c.get("options") or []
                if isinstance(o, dict) and isinstance(o.get("next"), str)]
        choice = {"prompt": str(c.get("prompt") or ""), "default": c.get("default"),
                  "options": opts}
    return {"id": s["id"], "shots": [x for x in s.get("shots") or [] if isinstance(x, str)],
            "next": _str(s.get("next")), "choice": choice}


def _graph(doc: dict[str, Any], tasks: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The story graph the run recorded, or (an older record) its segments in task order with
    no edges, and whether it was recorded."""
    g = doc.get("graph")
    if isinstance(g, dict) and isinstance(g.get("segments"), list):
        segs = [_segment(s) for s in g["segments"]
                if isinstance(s, dict) and isinstance(s.get("id"), str)]
        return {"start": _str(g.get("start")), "segments": segs}, True
    segs: dict[str, list[str]] = {}
    for t in tasks:
        seg, shot = _str(t.get("segment")), _str(t.get("shot"))
        if seg and shot and shot not in segs.setdefault(seg, []):
            segs[seg].append(shot)
    return {"start": next(iter(segs), None),
            "segments": [{"id": k, "shots": v, "next": None, "choice": None}
                         for k, v in segs.items()]}, False


def _thumb(record: Any) -> dict[str, str] | None:
    """The shot's thumbnail: the JPEG poster when the record has one, else the last frame."""
    outputs = record.get("outputs") if isinstance(record, dict) else None
    if not isinstance(outputs, dict):
        return None
    for role, kind in (("poster", "jpg"), ("last_frame", "png")):
        d = _digest(outputs.get(role))
        if d:
            return {"sha256": d, "type": kind}
    return None


def _task(t: dict[str, Any], records: dict[str, Any]) -> dict[str, Any]:
    key = _str(t.get("key"))
    rec = records.get(key) if key else None
    return {
        "id": _str(t.get("id")), "shot": _str(t.get("shot")), "segment": _str(t.get("segment")),
        "key": key, "status": _str(t.get("status")) or "unknown",
        "reason": _str(t.get("reason")), "seconds": _num(t.get("seconds")),
        "load_seconds": _num(t.get("load_seconds")), "retries": _num(t.get("retries")),
        "node": _str(t.get("node")), "error": _str(t.get("error")),
        "clip": _digest(t.get("clip")), "log": _digest(t.get("log")),
        "backend": _str(rec.get("backend")) if isinstance(rec, dict) else None,
        "thumb": _thumb(rec),
    }


def view(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything the run page draws: summary, graph and its layout, shots, branches."""
    raw_tasks = [t for t in doc.get("tasks") or [] if isinstance(t, dict)]
    records = doc.get("records") if isinstance(doc.get("records"), dict) else {}
    tasks = [_task(t, records) for t in raw_tasks]
    running = [r for r in doc.get("running") or [] if isinstance(r, dict)]
    now = {r.get("task"): r for r in running}
    tracebacks = {f.get("id"): _str(f.get("traceback")) for f in doc.get("failures") or []
                  if isinstance(f, dict)}
    for t in tasks:
        r = now.get(t["id"])
        if r is not None and t["status"] in ("pending", "ready", "running", "unknown"):
            t["status"], t["node"] = "running", _str(r.get("node")) or t["node"]
            t["since"] = _str(r.get("since"))
        t["traceback"] = tracebacks.get(t["id"])
    graph, recorded = _graph(doc, raw_tasks)
    shots: dict[str, dict[str, Any]] = {}
    for t in tasks:
        if not t["shot"]:
            continue
        s = shots.setdefault(t["shot"], {"shot": t["shot"], "segment": t["segment"],
                                         "tasks": [], "status": t["status"], "thumb": None})
        # the shot's own task first, then its continuity variants
        s["tasks"].append(t)
        s["tasks"].sort(key=lambda x: (x["id"] != x["shot"], x["id"] or ""))
        if _RANK.get(t["status"], -1) < _RANK.get(s["status"], -1):
            s["status"] = t["status"]
        s["thumb"] = s["tasks"][0]["thumb"] or s["thumb"]
    by_id = {t["id"]: t for t in tasks}
    branches = []
    for b in doc.get("branches") or []:
        if not isinstance(b, dict):
            continue
        ids = [i for i in b.get("tasks") or [] if isinstance(i, str)]
        branches.append({
            "name": _str(b.get("name")), "status": _str(b.get("status")),
            "frames": _num(b.get("frames")), "master": _digest(b.get("master")),
            "error": _str(b.get("error")), "cached": bool(b.get("cached")),
            "sheet": [{"task": i, "shot": by_id[i]["shot"], "status": by_id[i]["status"],
                       "thumb": by_id[i]["thumb"]} for i in ids if i in by_id],
            "sheet_recorded": "tasks" in b,
        })
    return {
        "summary": summary(doc),
        "graph": graph,
        "graph_recorded": recorded,
        "layout": layout(graph).to_json(),
        "shots": shots,
        "branches": branches,
        "running": [{"task": _str(r.get("task")), "shot": _str(r.get("shot")),
                     "node": _str(r.get("node")), "since": _str(r.get("since"))}
                    for r in running],
        "failures": [{"id": _str(f.get("id")), "error": _str(f.get("error")),
                      "traceback": _str(f.get("traceback"))}
                     for f in doc.get("failures") or [] if isinstance(f, dict)],
        "errors": [e for e in doc.get("errors") or [] if isinstance(e, str)],
    }
