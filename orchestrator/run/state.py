"""Task and branch state: a plain state machine over a plan, with no Ray and no I/O.

A task moves ``pending → ready → running → rendered``, or is ``cached`` at lookup; one that
keeps failing is ``failed`` and everything downstream of it ``blocked``. A branch is
``waiting`` until its clips all exist, then ``assembling`` and ``done`` (or ``failed``).
The driver (:mod:`.driver`) feeds it what happened; the dispatch policy (:mod:`.policy`) reads
which tasks are ready.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store.base import ActionRecord, BlobRef

if TYPE_CHECKING:
    from ..plan.models import RenderPlan, RenderTask

# task states
PENDING, READY, RUNNING = "pending", "ready", "running"
CACHED, RENDERED, FAILED, BLOCKED = "cached", "rendered", "failed", "blocked"
DONE = (CACHED, RENDERED)
TERMINAL = (CACHED, RENDERED, FAILED, BLOCKED)
MAX_LOST = 4  # times a task may lose its actor (node death) before it is failed


@dataclass
class TaskRun:
    task: RenderTask
    status: str = PENDING
    reason: str = ""  # why it renders (new key, forced, record's blobs missing, corrupt ...)
    attempts: int = 0
    lost: int = 0
    error: str | None = None
    node: str | None = None
    seconds: float = 0.0
    load_seconds: float = 0.0
    record: ActionRecord | None = None
    not_before: float = 0.0
    avoid: int | None = None  # worker id it last failed on
    started: float | None = None
    log: str | None = None  # sha256 of the last failed attempt's log (a record names its own)
    traceback: str | None = None  # the last failed attempt's full traceback

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)


@dataclass
class BranchRun:
    name: str
    tasks: list[str]
    status: str = "waiting"  # waiting | assembling | done | failed
    master: BlobRef | None = None
    frames: int = 0
    key: str | None = None
    cached: bool = False
    error: str | None = None
    cursor: int = 0  # tasks before it were done when last looked at (branches_to_assemble)


class RunState:
    """Every task's and branch's state for one plan. Methods that make tasks ready return
    them, so that the driver can queue them for dispatch."""

    def __init__(self, plan: RenderPlan) -> None:
        self.plan = plan
        self.runs: dict[str, TaskRun] = {t.id: TaskRun(t) for t in plan.tasks}
        self.branches = [BranchRun(b.name, b.tasks) for b in plan.branches]

    # -- questions -------------------------------------------------------------------------
    def deps_done(self, run: TaskRun) -> bool:
        up = run.task.upstream
        return up is None or self.runs[up].status in DONE

    def finished(self) -> bool:
        return all(r.status in TERMINAL for r in self.runs.values()) and all(
            b.status in ("done", "failed") for b in self.branches)

    def any_ready(self) -> bool:
        return any(r.status == READY for r in self.runs.values())

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((PENDING, READY, RUNNING, CACHED, RENDERED, FAILED, BLOCKED), 0)
        for r in self.runs.values():
            out[r.status] += 1
        return out

    def condition(self, run: TaskRun) -> BlobRef | None:
        """The last frame a task is conditioned on (its upstream's), or None."""
        if run.task.upstream is None:
            return None
        record = self.runs[run.task.upstream].record
        if record.kind == "noop":  # a benchmark's no-op backend made nothing to condition on
            return None
        return record.outputs["last_frame"]

    def needs_cluster(self) -> bool:
        return any(r.status != CACHED for r in self.runs.values()) or any(
            b.status != "done" for b in self.branches)

    def records(self) -> dict[str, dict[str, Any]]:
        """A compact copy of every action record this run used or made, by key (kept in the
        run record so that the next lookup need not GET each record)."""
        return {
            r.record.key: r.record.model_dump(mode="json", exclude={"key"})
            for r in self.runs.values()
            if r.record is not None
        }

    # -- transitions -----------------------------------------------------------------------
    def looked_up(self, found: Mapping[str, ActionRecord | str],
                  force: Collection[str] = frozenset()) -> None:
        """Apply a cache lookup (:func:`orchestrator.store.lookup.lookup`: by key, a usable
        record or why not): tasks with a record are cached, unless their shot or id is in
        ``force``; every other task gets its reason to render."""
        for tid, run in self.runs.items():
            got = found[run.task.key]
            if run.task.shot in force or tid in force:
                run.reason = "forced"
            elif isinstance(got, str):
                run.reason = got
            else:
                self.cached(run, got)

    def cached(self, run: TaskRun, record: ActionRecord) -> None:
        run.status, run.record, run.reason = CACHED, record, "cached"
        run.node, run.seconds = record.node, 0.0

    def initially_ready(self) -> list[TaskRun]:
        out = [r for r in self.runs.values() if r.status == PENDING and self.deps_done(r)]
        for r in out:
            r.status = READY
        return out

    def ready(self, run: TaskRun) -> TaskRun:
        run.status = READY
        return run

    def started(self, run: TaskRun, now: float, node: str) -> None:
        run.status, run.started, run.node = RUNNING, now, node
        run.attempts += 1

    def unstarted(self, run: TaskRun) -> TaskRun:
        """Counted as started, but its actor gave it back before it ran: ready again, and
        the attempt does not count."""
        run.status, run.started = READY, None
        run.attempts -= 1
        return run

    def rendered(self, run: TaskRun, record: ActionRecord) -> list[TaskRun]:
        """A task's record is in: its pending dependents become ready (returned)."""
        run.status, run.record, run.error = RENDERED, record, None
        run.log = run.traceback = None
        run.seconds, run.load_seconds, run.node = record.seconds, record.load_seconds, record.node
        out = []
        for dep in self.plan.dependents[run.task.id]:
            d = self.runs[dep]
            if d.status == PENDING:
                out.append(self.ready(d))
        return out

    def lost(self, run: TaskRun) -> TaskRun | None:
        """Its worker died: requeued (returned) unless that happened too often (failed)."""
        run.lost += 1
        run.attempts -= 1
        if run.lost > MAX_LOST:
            self.fail(run, f"its worker died {run.lost} times (last on {run.node})")
            return None
        run.reason = f"requeued: worker on {run.node} was lost"
        return self.ready(run)

    def errored(self, run: TaskRun, error: str, *, retries: int, not_before: float,
                worker: int | None) -> TaskRun | None:
        """A render raised: retried after ``not_before`` (returned) while retries are left,
        preferably on another worker than ``worker``; otherwise failed."""
        run.error = error
        if run.attempts <= retries:
            run.not_before, run.avoid = not_before, worker
            return self.ready(run)
        self.fail(run, error)
        return None

    def fail(self, run: TaskRun, error: str) -> None:
        """Failed, and everything downstream that has not finished is blocked."""
        run.status, run.error = FAILED, error
        stack = list(self.plan.dependents[run.task.id])
        while stack:
            d = self.runs[stack.pop()]
            if d.status not in TERMINAL:
                d.status, d.error = BLOCKED, f"upstream task {run.task.id} failed"
                stack.extend(self.plan.dependents[d.task.id])

    def corrupt(self, digest: str) -> tuple[list[TaskRun], list[TaskRun]]:
        """A blob failed verification: every task whose record names it renders again.
        Returns ``(invalidated, now_ready)``; ready dependents of invalidated tasks go back to
        pending."""
        invalid, ready = [], []
        for run in self.runs.values():
            if run.record and any(o.sha256 == digest for o in run.record.outputs.values()):
                invalid.append(run)
                run.record, run.reason = None, "corrupt blob in the store"
                run.status = PENDING
                if self.deps_done(run):
                    ready.append(self.ready(run))
                for dep in self.plan.dependents[run.task.id]:
                    if self.runs[dep].status == READY:
                        self.runs[dep].status = PENDING
        return invalid, ready

    def fail_holders(self, digest: str, why: str, *, master_of: str = "") -> list[TaskRun]:
        """Fail every task whose record names ``digest`` (a blob that keeps reading corrupt),
        and the waiting branch whose master it is (``master_of`` = ``"master <branch>"``);
        returns the failed tasks."""
        failed = []
        for run in self.runs.values():
            if run.record and any(o.sha256 == digest for o in run.record.outputs.values()):
                run.record = None
                self.fail(run, why)
                failed.append(run)
        for b in self.branches:
            if b.status == "waiting" and master_of == f"master {b.name}":
                b.status, b.error = "failed", why
        return failed

    def stall(self) -> None:
        """Nothing runs and nothing is ready: every non-terminal task is unreachable."""
        for run in self.runs.values():
            if run.status not in TERMINAL:
                run.status, run.error = BLOCKED, "its upstream task did not finish"

    # -- branches --------------------------------------------------------------------------
    def branches_to_assemble(self) -> list[BranchRun]:
        """Waiting branches whose clips all exist; a waiting branch with a failed or blocked
        task is failed on the way.

        Called after every change, so it must not cost a pass over every branch's tasks each
        time: a branch's cursor moves past the tasks that are done, and its tasks are looked
        at all together only when the cursor reaches the end or stops on a failed task (a
        task behind the cursor may have gone back since: a corrupt blob)."""
        out = []
        runs = self.runs
        for b in self.branches:
            if b.status != "waiting":
                continue
            i, n = b.cursor, len(b.tasks)
            while i < n and runs[b.tasks[i]].status in DONE:
                i += 1
            b.cursor = i
            if i < n and runs[b.tasks[i]].status not in (FAILED, BLOCKED):
                continue
            states = [runs[t].status for t in b.tasks]
            if any(s in (FAILED, BLOCKED) for s in states):
                bad = [t for t in b.tasks if self.runs[t].status in (FAILED, BLOCKED)]
                b.status, b.error = "failed", f"not assembled: {', '.join(bad[:5])} did not render"
                continue
            if all(s in DONE for s in states):
                out.append(b)
            else:
                b.cursor = 0
        return out

    def clips(self, b: BranchRun) -> list[BlobRef]:
        return [self.runs[t].record.outputs["clip"] for t in b.tasks]

    def branch_done(self, b: BranchRun, master: BlobRef, frames: int, *, cached: bool) -> None:
        b.status, b.master, b.frames, b.cached = "done", master, frames, cached
