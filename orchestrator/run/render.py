"""``reelfarm render``: plan, look up the cache, schedule what is missing, publish the outputs.

Outputs (DESIGN.md, CLI contract), under ``--out`` (default ``./renders/<story>/``)::

    masters/<branch>.mp4    one per assembled branch
    branches.json           branches with their master's path, sha256, frames and seconds
    report.json             the run record: per-task status, totals (also kept in the store)
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..plan.expand import expand
from ..spec.manifest import Story
from ..store.outputs import open_output
from ..plan.models import RenderPlan
from .progress import Progress
from .driver import FAILED, Scheduler, SchedulerOptions
from ..store import Store, open_store

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class RenderOptions:
    store: str | None = None
    s3_endpoint: str | None = None
    out: str | None = None
    address: str | None = None
    force: frozenset[str] = field(default_factory=frozenset)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    progress: str = "auto"  # auto | live | plain | quiet
    run_id: str | None = None  # default: a new time-ordered id


@dataclass
class RenderResult:
    exit_code: int
    report: dict[str, Any]
    branches: list[dict[str, Any]]
    out: str


class RayConnectError(RuntimeError):
    pass


def connect_ray(address: str | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``); else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            # "local": always a new local instance, never a cluster some other program started
            ray.init(address="local", include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
    except Exception as err:  # noqa: BLE001 - turned into one clear line
        raise RayConnectError(_explain_connect_error(address, err)) from None


def _explain_connect_error(address: str | None, err: Exception) -> str:
    text = str(err)
    low = text.lower()
    where = f"the Ray cluster at {address}" if address else "a local Ray"
    if "token" in low or "auth" in low or "unauthenticated" in low:
        missing = []
        if os.environ.get("RAY_AUTH_MODE") != "token":
            missing.append("RAY_AUTH_MODE=token")
        if not os.environ.get("RAY_AUTH_TOKEN") and not Path("~/.ray/auth_token").expanduser(
        ).exists():
            missing.append("RAY_AUTH_TOKEN (or the file ~/.ray/auth_token)")
        hint = f"; set {' and '.join(missing)}" if missing else "; check the token"
        return f"{where} refused the connection: it requires token authentication{hint}"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"could not connect to {where}: {first}"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class UnknownShots(ValueError):
    """``--force`` named shots the story does not have."""


def plan_story(story: Story, store: Store) -> RenderPlan:
    return expand(story, salt=store.salt)


def check_force(plan: RenderPlan, force: frozenset[str] | set[str] | tuple[str, ...]) -> None:
    """Refuse ``--force`` names that are neither a shot nor a task of the plan."""
    known = {t.shot for t in plan.tasks} | {t.id for t in plan.tasks}
    unknown = [f for f in force if f not in known]
    if unknown:
        raise UnknownShots(f"--force names shots that are not in the story: {', '.join(unknown)}")


def render_story(story: Story, opts: RenderOptions) -> RenderResult:
    """The whole render: raises :class:`~orchestrator.expand.PlanError`,
    :class:`~orchestrator.schedule.Unplaceable` or :class:`RayConnectError` on bad input."""
    store = open_store(opts.store, s3_endpoint=opts.s3_endpoint)
    store_url = opts.store or store.url
    plan = plan_story(story, store)
    check_force(plan, opts.force)
    out = open_output(opts.out or f"./renders/{plan.story}", s3_endpoint=opts.s3_endpoint)
    progress = Progress(opts.progress)
    sched = Scheduler(
        plan, store, store_url=store_url, s3_endpoint=opts.s3_endpoint,
        options=opts.scheduler, progress=progress,
    )
    sched.lookup(set(opts.force))
    run_id = opts.run_id or new_run_id()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    # A run record exists from the start, so `cache gc` never deletes what this run needs.
    store.put_run(plan.story, run_id,
                  _stored(sched, _report(sched, run_id, started, t0, "running", store)))
    status = "running"
    try:
        sched.lookup_masters()
        if sched.needs_cluster():
            connect_ray(opts.address)
            sched.run()
        else:
            progress.note(f"{plan.story}: every clip and master is cached; nothing to do")
        status = "succeeded"
    except KeyboardInterrupt:
        sched.shutdown()
        status = "interrupted"
    except Exception as err:
        from .driver import Interrupted

        if not isinstance(err, Interrupted):
            report = _report(sched, run_id, started, t0, "error", store)
            store.put_run(plan.story, run_id, _stored(sched, report))
            raise
        status = "interrupted"
    branches = _publish_masters(sched, store, out) if status != "interrupted" else []
    if status == "succeeded" and (
        any(r.status not in ("cached", "rendered") for r in sched.runs.values())
        or any(b.status != "done" for b in sched.branches)
    ):
        status = "failed"
    report = _report(sched, run_id, started, t0, status, store)
    out.put_json("branches.json", branches)
    out.put_json("report.json", report)
    store.put_run(plan.story, run_id, _stored(sched, report))
    code = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[status]
    return RenderResult(code, report, branches, out.url)


def _publish_masters(sched: Scheduler, store: Store, out) -> list[dict[str, Any]]:
    docs = []
    for plan_b, b in zip(sched.plan.branches, sched.branches, strict=True):
        doc: dict[str, Any] = {
            "name": plan_b.name,
            "segments": plan_b.segments,
            "choices": plan_b.choices,
            "shots": plan_b.shots,
            "tasks": plan_b.tasks,
            "master": None,
        }
        if b.status == "done" and b.master is not None:
            rel = f"masters/{plan_b.name}.mp4"
            out.put_blob(rel, store, b.master)
            doc["master"] = {
                "path": rel,
                "sha256": b.master.sha256,
                "frames": b.frames,
                "seconds": round(b.frames / sched.plan.profile.fps, 6),
            }
        else:
            doc["error"] = b.error
        docs.append(doc)
    return docs


def _stored(sched: Scheduler, report: dict[str, Any]) -> dict[str, Any]:
    """The run record kept in the store: the report plus a copy of every action record the run
    used or made (``records``, by key), which the next lookup of the story reads in one GET
    instead of one GET per record. ``report.json`` in ``--out`` leaves them out."""
    return {**report, "records": sched.records()}


def _report(sched: Scheduler, run_id: str, started: datetime, t0: float, status: str,
            store: Store) -> dict[str, Any]:
    plan = sched.plan
    tasks = []
    for t in plan.tasks:
        r = sched.runs[t.id]
        tasks.append({
            "id": t.id, "shot": t.shot, "segment": t.segment, "key": t.key,
            "status": r.status, "cached": r.status == "cached", "reason": r.reason,
            "seconds": r.seconds, "load_seconds": r.load_seconds, "retries": r.retries,
            "requeued": r.lost, "node": r.node, "error": r.error,
            "clip": r.record.outputs["clip"].sha256 if r.record else None,
        })
    counts = sched.counts()
    return {
        "story": plan.story,
        "run_id": run_id,
        "status": status,
        "store": store.url,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(time.monotonic() - t0, 3),
        "tasks": tasks,
        "branches": [
            {"name": b.name, "status": b.status, "cached": b.cached, "frames": b.frames,
             "master": b.master.sha256 if b.master else None, "key": b.key, "error": b.error}
            for b in sched.branches
        ],
        "failures": [
            {"id": x["id"], "error": x["error"], "node": x["node"], "retries": x["retries"]}
            for x in tasks if x["status"] == FAILED
        ],
        "corrupt": sched.corrupt,
        "totals": {
            "unique": len(plan.tasks),
            "naive": plan.naive_tasks,
            "cached": counts["cached"],
            "rendered": counts["rendered"],
            "failed": counts["failed"],
            "blocked": counts["blocked"],
            "retries": sum(x["retries"] for x in tasks),
            "requeued": sum(x["requeued"] for x in tasks),
            "model_switches": sched.model_switches(),
            "render_seconds": round(sum(x["seconds"] for x in tasks), 3),
            "masters": sum(1 for b in sched.branches if b.status == "done"),
            "masters_assembled": sum(1 for b in sched.branches
                                     if b.status == "done" and not b.cached),
        },
        "critical_path_seconds": round(plan.critical_path_seconds, 3),
    }


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
