"""``reelfarm render``: plan, look up the cache, schedule what is missing, publish the outputs.

Outputs (DESIGN.md, CLI contract), under ``--out`` (default ``./renders/<story>/``)::

    masters/<branch>.mp4    one per assembled branch
    branches.json           branches with their master's path, sha256, frames and seconds
    report.json             the run record: per-task status, totals (also kept in the store)
    report.html             the same as a page: contact sheets, statuses, timings, masters
    thumbs/<key>.jpg        the page's shot thumbnails
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actors.renderer import reelfarm_version

from ..plan.expand import expand
from ..plan.models import RenderPlan
from ..spec.gc_paused import gc_paused
from ..spec.manifest import Story
from ..spec.storygraph import segment_graph
from ..store import BlobMissing, CorruptBlob, Store, StoreError, open_store
from ..store.outputs import open_output
from . import report_html
from .driver import FAILED, CapacityTimeout, Interrupted, Scheduler, SchedulerOptions
from .events import Listeners
from .farm import who
from .live_record import MIN_INTERVAL_S, LiveRecord
from .metrics import RunMetrics
from .pool import one_line as _one_line
from .progress import Progress, eta
from .state import RUNNING
from .why import explain

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 143  # interrupted by SIGTERM (Ray's stop_job, a pod's deletion or deadline)


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
    priority: int | None = None  # 0-100 (None: the scheduler options'), in the run record
    live_interval: float = MIN_INTERVAL_S  # least seconds between live run record writes


@dataclass
class RenderResult:
    exit_code: int
    report: dict[str, Any]
    branches: list[dict[str, Any]]
    out: str


class RayConnectError(RuntimeError):
    pass


#: Seconds to wait for the cluster's address to answer (a TCP connection, then one GCS call)
#: before ``ray.init``, which would otherwise retry an address where nothing listens, or a
#: cluster that refuses its token, for many minutes.
CONNECT_PROBE_SECONDS = 5.0


def connect_ray(address: str | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``); else start a local Ray.

    ``address`` follows ``ray.init``: the cluster's GCS address (``HEAD:6379``),
    ``ray://HEAD:10001`` or ``auto``. The dashboard's ``http://`` URL (what ``submit`` uses)
    is refused with a line saying what to use instead; an address where no GCS answers, or
    whose cluster refuses the token, fails within seconds (:data:`CONNECT_PROBE_SECONDS`).
    """
    import ray

    if ray.is_initialized():
        return
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip() or None
    if address:
        _check_address(address)
    # The address was chosen here; Ray would let RAY_ADDRESS override it.
    saved = os.environ.pop("RAY_ADDRESS", None)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            # "local": always a new local instance, never a cluster some other program started
            ray.init(address="local", include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
    except Exception as err:  # noqa: BLE001 - turned into one clear line
        raise RayConnectError(_explain_connect_error(address, err)) from None
    finally:
        if saved is not None:
            os.environ["RAY_ADDRESS"] = saved


def _check_address(address: str) -> None:
    """Refuse a dashboard URL, and an address where nothing accepts a connection, in one line."""
    from urllib.parse import urlsplit

    from ..spec.urls import redact_url

    shown = redact_url(address)
    scheme = address.split("://", 1)[0].lower() if "://" in address else ""
    if scheme in ("http", "https"):
        raise RayConnectError(
            f"{shown} is the Ray dashboard's HTTP address, which `reelfarm submit` and the jobs "
            "commands use (--address or RAY_API_SERVER_ADDRESS); `reelfarm render` joins the "
            "cluster itself: give it the head's GCS address, e.g. --address HEAD:6379 or "
            "RAY_ADDRESS=HEAD:6379 (or ray://HEAD:10001)"
        )
    if address == "auto" or scheme not in ("", "ray"):
        return
    try:
        parts = urlsplit(address if scheme else "ray://" + address)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise RayConnectError(
            f"{shown} is not a Ray cluster address: use HOST:PORT (the head's GCS address, "
            "e.g. HEAD:6379), ray://HOST:PORT or auto"
        ) from None
    if not host or port is None:
        return  # Ray has its own rules for these; let ray.init say what is wrong
    if scheme == "ray" or os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
        _probe_tcp(host, port, shown)
    else:
        _probe_gcs(host, port, shown)


def _no_answer(shown: str, why: str) -> RayConnectError:
    return RayConnectError(
        f"no Ray cluster answers at {shown} ({why}): is the head up, and is this its GCS "
        "address (HEAD:6379)?"
    )


def _probe_tcp(host: str, port: int, shown: str) -> None:
    import socket

    try:
        with socket.create_connection((host, port), timeout=CONNECT_PROBE_SECONDS):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise _no_answer(shown, why) from None


def _probe_gcs(host: str, port: int, shown: str) -> None:
    """One GCS call, with the token as ``ray.init`` would send it: a GCS that is not there, or
    that refuses the token, is one line within seconds instead of minutes of Ray retrying."""
    _probe_tcp(host, port, shown)  # "connection refused" in words, before gRPC's own retries
    try:
        import grpc
        from ray._private.authentication.grpc_authentication_client_interceptor import (
            SyncAuthenticationMetadataClientInterceptor,
            _get_authentication_metadata_tuple,
        )
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:  # a Ray without token authentication: the TCP probe is all there is
        return
    sent_token = bool(_get_authentication_metadata_tuple())
    channel = grpc.intercept_channel(grpc.insecure_channel(f"{host}:{port}"),
                                     SyncAuthenticationMetadataClientInterceptor())
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=CONNECT_PROBE_SECONDS)
    except grpc.RpcError as e:
        code = e.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise RayConnectError(_auth_refused(shown, sent_token)) from None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.UNKNOWN):
            raise RayConnectError(
                f"{shown} accepts connections but does not answer as a Ray cluster's GCS "
                f"({code.name.lower()}): give the head's GCS address (HEAD:6379, "
                "`ray start --head --port`)"
            ) from None
        # anything else: let ray.init try, and say what it finds
    finally:
        channel.close()


def _auth_refused(where: str, sent_token: bool) -> str:
    if sent_token:
        return (f"the Ray cluster at {where} refused the token (from RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token): it is not this cluster's token")
    missing = []
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "token":
        missing.append("RAY_AUTH_MODE=token")
    missing.append("RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, or the file ~/.ray/auth_token)")
    return (f"the Ray cluster at {where} refused a connection without a token: it requires "
            f"token authentication; set {' and '.join(missing)}")


def _explain_connect_error(address: str | None, err: Exception) -> str:
    from ..spec.urls import redact_url

    text = str(err)
    low = text.lower()
    where = f"the Ray cluster at {redact_url(address)}" if address else "a local Ray"
    if "token" in low or "auth" in low or "unauthenticated" in low:
        missing = []
        if os.environ.get("RAY_AUTH_MODE") != "token":
            missing.append("RAY_AUTH_MODE=token")
        if not os.environ.get("RAY_AUTH_TOKEN") and not Path("~/.ray/auth_token").expanduser(
        ).exists():
            missing.append("RAY_AUTH_TOKEN (or the file ~/.ray/auth_token)")
        hint = f"; set {' and '.join(missing)}" if missing else "; check the token"
        return f"{where} refused the connection: it requires token authentication{hint}"
    # Ray's own message, whole (on one line), never cut after its first line.
    if address:
        text = text.replace(address, redact_url(address))
    said = " ".join(text.split()) or type(err).__name__
    return f"could not connect to {where}: {said}"


def new_run_id() -> str:
    """``<UTC second>Z-<milliseconds><3 random hex>``: ids sort in start order, even for runs
    started within one second (renders on a warm farm take less)."""
    now = datetime.now(timezone.utc)
    return (now.strftime("%Y%m%dT%H%M%SZ") + f"-{now.microsecond // 1000:03d}"
            + secrets.token_hex(2)[:3])


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


class _Signals:
    """SIGINT and SIGTERM while a render runs: the first one stops the run (as Ctrl-C does,
    by raising :class:`Stopped` in the main thread); once the run is being finalised, signals
    are only remembered, so that records and the index are always written whole and a second
    Ctrl-C prints no traceback."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.getsignal(sig)
            self.install()
        return self

    def install(self) -> None:
        """(Re)install the handlers: ``ray.init`` installs its own for SIGTERM."""
        for sig in self._old:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if first and not self.deferring:
            raise Stopped(signum)

    def defer(self) -> None:
        self.deferring = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the render."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def render_story(story: Story, opts: RenderOptions) -> RenderResult:
    """The whole render: raises :class:`~orchestrator.expand.PlanError`,
    :class:`~orchestrator.schedule.Unplaceable` or :class:`RayConnectError` on bad input.

    The run record is always finalised, whatever ends the run: ``succeeded``, ``failed`` (some
    shots or masters failed, or the store or ``--out`` failed while publishing), ``interrupted``
    (SIGINT/SIGTERM) or ``error`` (an exception, raised again)."""
    store = open_store(opts.store, s3_endpoint=opts.s3_endpoint)
    store_url = store.url  # canonical: an absolute path or the s3:// URL, same on every node
    plan = plan_story(story, store)
    check_force(plan, opts.force)
    out = open_output(opts.out or f"./renders/{plan.story}", s3_endpoint=opts.s3_endpoint)
    progress = Progress(opts.progress)
    run_id = opts.run_id or new_run_id()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    priority = opts.scheduler.priority if opts.priority is None else opts.priority
    who = run_identity(priority)
    graph = segment_graph(story)
    sched: Scheduler

    def live_doc() -> dict[str, Any]:  # on the driver's thread: plain values only
        report = _report(sched, run_id, started, t0, "running", store, who)
        records = [r.record for r in sched.runs.values() if r.record is not None]
        return {**report, "records": records, "graph": graph}

    def live_write(doc: dict[str, Any]) -> None:  # on the live record's thread
        doc["records"] = {r.key: r.model_dump(mode="json", exclude={"key"})
                          for r in doc["records"]}
        store.put_run(plan.story, run_id, doc)

    live = LiveRecord(live_doc, live_write, min_interval=opts.live_interval)
    # Metrics go to Ray's metrics endpoint, labelled with the run's priority.
    metrics = RunMetrics(plan.story, priority=priority)
    sched = Scheduler(
        plan, store, store_url=store_url, s3_endpoint=opts.s3_endpoint,
        options=replace(opts.scheduler, priority=priority,
                        job=opts.scheduler.job or f"{plan.story}/{run_id}"),
        progress=Listeners(progress, live, metrics),
    )
    sched.masters.published = lambda name, sha256: out.holds(f"masters/{name}.mp4", sha256)
    errors: list[str] = []
    with _Signals() as sig:
        status = "running"
        try:
            with gc_paused():  # bounded bursts of allocation (see spec/gc_paused.py)
                sched.lookup(set(opts.force))
                explain(plan, sched.runs, store, story_seed=story.spec.seed, force=opts.force)
                # A run record exists from the start, naming the masters this run may reuse,
                # so that `cache gc` never deletes what this run needs.
                sched.master_keys()
                store.put_run(plan.story, run_id,
                              _stored(sched, _report(sched, run_id, started, t0, status, store,
                                                     who), graph))
            try:
                with gc_paused():
                    sched.lookup_masters()
                if sched.needs_cluster():
                    connect_ray(opts.address)
                    sig.install()
                    sched.run()
                else:
                    progress.note(f"{plan.story}: every clip and master is cached; nothing to do")
                status = "succeeded"
            except (KeyboardInterrupt, Interrupted):
                status = "interrupted"
                sig.defer()
                progress.stop()
                progress.note(f"{plan.story}: interrupted; stopping the running tasks "
                              "(finished clips stay cached)")
                _quietly(sched.shutdown)
            except StoreError as err:  # the store failed mid-run: finalise, exit 1
                status = "failed"
                errors.append(f"the store failed: {_one_line(err)}")
                _quietly(sched.shutdown)
            except CapacityTimeout as err:  # the autoscaler's nodes never came: exit 1
                status = "failed"
                errors.append(str(err))
                _quietly(sched.shutdown)
            sig.defer()
            progress.stop()
            live.close()  # no live write after this: the final record comes next
            with gc_paused():
                result = _finish(sched, store, out, run_id, started, t0, status, errors, who,
                                 graph)
        except BaseException as err:
            sig.defer()
            progress.stop()
            live.close()
            _quietly(sched.shutdown)
            stopped = isinstance(err, KeyboardInterrupt)
            report = _report(sched, run_id, started, t0, "interrupted" if stopped else "error",
                             store, who)
            report["errors"] = errors + ([] if stopped else [_one_line(err)])
            with contextlib.suppress(Exception):
                store.put_run(plan.story, run_id, _stored(sched, report, graph))
            if stopped:
                return RenderResult(_interrupt_code(sig.signum or signal.SIGINT), report, [],
                                    out.url)
            raise
    # A signal that came once the run had finished waited for the outputs: the run stands.
    if result.report["status"] == "interrupted":
        result.exit_code = _interrupt_code(sig.signum or signal.SIGINT)
    return result


def _interrupt_code(signum: int) -> int:
    return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


def _quietly(fn) -> None:
    with contextlib.suppress(Exception):
        fn()


def _finish(sched: Scheduler, store: Store, out, run_id: str, started: datetime, t0: float,
            status: str, errors: list[str], who: dict[str, Any],
            graph: dict[str, Any] | None = None) -> RenderResult:
    """Publish, then write ``branches.json``, ``report.json`` and the final run record."""
    plan = sched.plan
    removed: list[str] = []
    try:
        branches, removed = _publish_masters(sched, store, out, interrupted=status ==
                                             "interrupted")
    except (StoreError, OSError) as err:
        errors.append(f"publishing to {out.url} failed: {_one_line(err)}")
        branches = None
    if status == "succeeded" and (
        errors
        or any(r.status not in ("cached", "rendered") for r in sched.runs.values())
        or any(b.status != "done" for b in sched.branches)
    ):
        status = "failed"
    report = _report(sched, run_id, started, t0, status, store, who)
    report["removed"] = removed
    if branches is not None:
        try:
            out.put_json("branches.json", branches)
        except (StoreError, OSError) as err:
            errors.append(f"writing {out.url}/branches.json failed: {_one_line(err)}")
    if errors and status == "succeeded":
        status = report["status"] = "failed"
    report["errors"] = errors
    if branches is not None and not _publish_page(sched, store, out, report, branches, errors,
                                                  interrupted=status == "interrupted"):
        status = report["status"] = "failed" if status == "succeeded" else status
    try:
        out.put_json("report.json", report)
    except (StoreError, OSError) as err:
        errors.append(f"writing {out.url}/report.json failed: {_one_line(err)}")
        status = report["status"] = "failed" if status == "succeeded" else status
    try:
        store.put_run(plan.story, run_id, _stored(sched, report, graph))
    except (StoreError, OSError) as err:
        errors.append(f"writing the run record failed: {_one_line(err)}")
        status = report["status"] = "failed" if status == "succeeded" else status
    code = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[status]
    return RenderResult(code, report, branches or [], out.url)


def _publish_page(sched: Scheduler, store: Store, out, report: dict[str, Any],
                  branches: list[dict[str, Any]], errors: list[str], *,
                  interrupted: bool) -> bool:
    """``report.html`` and its thumbnails. False when the page could not be written, which
    fails the run as a ``report.json`` that cannot be written does; a thumbnail that cannot
    be made is left out of the page and noted."""
    records = {tid: r.record for tid, r in sched.runs.items() if r.record is not None}
    try:
        notes = report_html.publish(out, store, report, branches, records,
                                    title=sched.plan.title, prune=not interrupted)
    except (StoreError, OSError) as err:
        errors.append(f"writing {out.url}/report.html failed: {_one_line(err)}")
        return False
    if sched.progress:
        for line in notes:
            sched.progress.note(line)
    return True


def _master_doc(plan_b, b, fps: int) -> dict[str, Any]:
    return {
        "path": f"masters/{plan_b.name}.mp4",
        "sha256": b.master.sha256,
        "frames": b.frames,
        "seconds": round(b.frames / fps, 6),
    }


def _publish_masters(sched: Scheduler, store: Store, out, *, interrupted: bool = False,
                     ) -> tuple[list[dict[str, Any]], list[str]]:
    """Copy finished masters to ``out`` and return the index (``branches.json``) and the
    masters removed from ``out``. Every file under ``masters/`` agrees with the index:

    * a finished run removes every master that is not a finished branch's (branches that no
      longer exist, and branches whose master failed: the file would be an older cut);
    * an interrupted run removes nothing: a branch it did not finish keeps the master the
      previous index gave it (marked ``"stale": true``) while the file still holds it, and
      branches that no longer exist keep their entries; the index never shrinks.

    A master whose blob reads corrupt or missing is not published (and reported)."""
    fps = sched.plan.profile.fps
    previous = _previous_index(out) if interrupted else {}
    docs = []
    published: set[str] = set()
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
            try:
                out.put_blob(rel, store, b.master)
            except (CorruptBlob, BlobMissing) as err:
                if isinstance(err, CorruptBlob):
                    sched.corrupt.append({"sha256": err.digest, "found_by": f"publish {b.name}"})
                b.status, b.error = "failed", f"not published: {_one_line(err)}"
            else:
                doc["master"] = _master_doc(plan_b, b, fps)
                published.add(rel)
        if doc["master"] is None:
            old = previous.pop(plan_b.name, None)
            if old is not None:
                doc["master"], doc["stale"] = old["master"], True
                published.add(old["master"]["path"])
            else:
                doc["error"] = b.error or ("interrupted before its master" if interrupted
                                           else None)
        docs.append(doc)
    if interrupted:
        for old in previous.values():  # branches the story no longer has: still published
            docs.append({**old, "stale": True})
        return docs, []
    removed = []
    for rel in out.list_masters():
        if rel not in published:
            out.remove(rel)
            removed.append(rel)
    return docs, sorted(removed)


def _previous_index(out) -> dict[str, dict[str, Any]]:
    """Entries of the published ``branches.json`` whose master file is still exactly there."""
    doc = out.get_json("branches.json")
    found = {}
    for b in doc if isinstance(doc, list) else []:
        m = b.get("master") if isinstance(b, dict) else None
        if not (isinstance(m, dict) and isinstance(b.get("name"), str)
                and isinstance(m.get("path"), str) and isinstance(m.get("sha256"), str)):
            continue
        if out.holds(m["path"], m["sha256"]):
            found[b["name"]] = b
    return found


def _stored(sched: Scheduler, report: dict[str, Any],
            graph: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run record kept in the store: the report plus a copy of every action record the run
    used or made (``records``, by key), which the next lookup of the story reads in one GET
    instead of one GET per record, and the story's segment graph (``graph``: start, segments
    with their shots, next and choices) for ``reelfarm ui``. ``report.json`` in ``--out`` leaves
    them out."""
    doc = {**report, "records": sched.records()}
    if graph is not None:
        doc["graph"] = graph
    return doc


def run_identity(priority: int = 50) -> dict[str, Any]:
    """Who runs the render, where, with which reelfarm: the run record's ``user``
    (``user@host``), ``host``, ``version``, ``priority`` and ``job_id`` (the Ray job's
    submission id when the render runs as a job, else ``None``)."""
    user = who()
    return {"user": user, "host": user.rsplit("@", 1)[1], "version": reelfarm_version(),
            "priority": priority, "job_id": _ray_job_id()}


def _ray_job_id() -> str | None:
    """The submission id of the Ray job this process is the entrypoint of, if any (Ray hands
    the job's metadata to the entrypoint in ``RAY_JOB_CONFIG_JSON_ENV_VAR``)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    try:
        found = json.loads(raw).get("metadata", {}).get("job_submission_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _running(sched: Scheduler) -> list[dict[str, Any]]:
    """What renders where now: ``[{task, shot, node, since}]``, ``since`` in UTC."""
    now_wall, now = time.time(), time.monotonic()
    out = []
    for r in sched.runs.values():
        if r.status == RUNNING:
            since = None
            if r.started is not None:
                since = _utc(datetime.fromtimestamp(now_wall - (now - r.started), timezone.utc))
            out.append({"task": r.task.id, "shot": r.task.shot, "node": r.node, "since": since})
    return sorted(out, key=lambda x: (x["since"] or "", x["task"]))


def _log_of(r) -> str | None:
    """The sha256 of a task's log: its record's (rendered or cached), else the last failed
    attempt's."""
    if r.record is not None and "log" in r.record.outputs:
        return r.record.outputs["log"].sha256
    return r.log


def _report(sched: Scheduler, run_id: str, started: datetime, t0: float, status: str,
            store: Store, who: dict[str, Any] | None = None) -> dict[str, Any]:
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
            "log": _log_of(r),
        })
    counts = sched.counts()
    who = who or run_identity()
    return {
        "story": plan.story,
        "run_id": run_id,
        "status": status,
        "waiting_for": sched.waiting_for,  # what the run waits for from the autoscaler
        "store": store.url,
        **who,
        "started": _utc(started),
        "updated": _utc(datetime.now(timezone.utc)),
        "seconds": round(time.monotonic() - t0, 3),
        "running": _running(sched),
        "eta_seconds": round(eta(sched), 1) if status == "running" else 0.0,
        "tasks": tasks,
        "branches": [
            {"name": b.name, "status": b.status, "cached": b.cached, "frames": b.frames,
             "master": b.master.sha256 if b.master else None, "key": b.key, "error": b.error,
             "tasks": list(b.tasks)}
            for b in sched.branches
        ],
        "failures": [
            {"id": x["id"], "shot": x["shot"], "error": x["error"], "node": x["node"],
             "retries": x["retries"], "log": x["log"],
             "traceback": sched.runs[x["id"]].traceback}
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
            "running": counts["running"],
            "pending": counts["pending"] + counts["ready"],
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
