"""Run history: the run records of a store, found by run id or job id, and summarised.

A run record (``runs/<story>/<run id>.json``, written by ``reelfarm render``) is updated while
its render runs; see :mod:`orchestrator.run.live_record`. Everything here reads it as an
untrusted document: fields that older versions did not write (``user``, ``version``,
``priority``, ``updated``, ``running``, ``eta_seconds``, ``job_id``, a task's ``log``) may be
missing, and any field may have the wrong type.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

from .base import SHA256_RE, Store, run_path
from .cache import list_objects, read_runs

#: A ``running`` record not updated for this long belongs to a render that died without
#: finalising it (killed, its node lost): listed as stale.
STALE_S = 300.0

#: ``reelfarm submit``'s job ids: ``reelfarm-<story>-<12 hex>``.
_JOB_ID = re.compile(r"^reelfarm-(?P<story>[a-z0-9][a-z0-9-]{0,62})-[0-9a-f]{12}$")


def story_of_job(job_id: str) -> str | None:
    """The story a ``reelfarm submit`` job id names, or ``None`` for another id."""
    m = _JOB_ID.match(job_id)
    return m.group("story") if m else None


def check_id(value: str) -> str:
    """``value`` if it can name a run or a job (it becomes part of a store path); otherwise
    ``ValueError`` with one line."""
    try:
        run_path("x", value)
    except ValueError:
        raise ValueError(f"{value!r} is not a run id or a job id") from None
    return value


def find_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run record with this run id, whichever story it belongs to (newest story first
    when, unusually, several have one)."""
    check_id(run_id)
    for story in store.list_stories():
        doc = store.get_run(story, run_id)
        if isinstance(doc, dict):
            return doc
    return None


def find_job_run(store: Store, job_id: str) -> dict[str, Any] | None:
    """The newest run record written by the Ray job ``job_id`` (its ``job_id`` field); the
    story is read from a ``reelfarm submit`` id, else every story is searched."""
    check_id(job_id)
    story = story_of_job(job_id)
    objs = [o for o in list_objects(store, f"runs/{story}/" if story else "runs/")
            if o.rel.endswith(".json")]
    found = [r for r in read_runs(store, objs)
             if isinstance(r.doc, dict) and r.doc.get("job_id") == job_id]
    if not found:
        return None
    return max(found, key=lambda r: r.run_id).doc


def summary(doc: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """One run of the history: who, when, which version, priority, status, counts, duration.

    ``stale`` is true for a ``running`` record that has not been updated for
    :data:`STALE_S` seconds (its render died), ``None`` when the record has no ``updated``."""
    now = time.time() if now is None else now
    totals = doc.get("totals") if isinstance(doc.get("totals"), dict) else {}
    updated = _str(doc.get("updated"))
    stale = None
    if doc.get("status") == "running" and updated:
        t = parse_utc(updated)
        stale = t is not None and now - t > STALE_S
    elif updated:
        stale = False
    return {
        "story": _str(doc.get("story")),
        "run_id": _str(doc.get("run_id")),
        "status": _str(doc.get("status")) or "unknown",
        "stale": stale,
        "user": _str(doc.get("user")),
        "host": _str(doc.get("host")),
        "version": _str(doc.get("version")),
        "priority": doc.get("priority") if isinstance(doc.get("priority"), int) else None,
        "job_id": _str(doc.get("job_id")),
        "started": _str(doc.get("started")),
        "updated": updated,
        "seconds": _num(doc.get("seconds")),
        "eta_seconds": _num(doc.get("eta_seconds")) if doc.get("status") == "running" else None,
        "totals": {k: totals[k] for k in ("unique", "cached", "rendered", "failed", "blocked",
                                          "running", "pending", "masters")
                   if isinstance(totals.get(k), int)},
    }


def history(store: Store, story: str | None = None) -> list[dict[str, Any]]:
    """Summaries of every run of ``story`` (of every story when ``None``), oldest first."""
    if story is not None:
        run_path(story, "x")  # a story name, never a path
    objs = [o for o in list_objects(store, f"runs/{story}/" if story else "runs/")
            if o.rel.endswith(".json") and o.rel.count("/") == 2]
    now = time.time()
    out = []
    for r in read_runs(store, objs):
        if not isinstance(r.doc, dict):
            continue
        s = summary(r.doc, now)
        s["story"] = s["story"] or r.story
        s["run_id"] = s["run_id"] or r.run_id
        out.append(s)
    return sorted(out, key=lambda s: (s["started"] or "", s["run_id"]))


def task_logs(doc: dict[str, Any], shot: str) -> list[dict[str, Any]]:
    """The task entries of a run record for ``shot`` (a shot id, or a task id): each with its
    ``log`` digest (or ``None``)."""
    tasks = [t for t in doc.get("tasks") or [] if isinstance(t, dict)]
    found = [t for t in tasks if t.get("id") == shot] or [t for t in tasks
                                                          if t.get("shot") == shot]
    return [{**t, "log": t["log"] if isinstance(t.get("log"), str)
             and SHA256_RE.match(t["log"]) else None} for t in found]


def parse_utc(text: str) -> float | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
