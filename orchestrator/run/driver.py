"""The driver loop: dispatch render tasks to warm renderer actors on a Ray cluster.

It ties the parts together over ``ray.wait`` (DESIGN.md, Execution on Ray):

* :mod:`.state`: what each task and branch is (ready, running, rendered, failed, blocked ...);
* :mod:`.policy`: which ready task each worker takes (longest remaining path, branch order,
  model affinity, preview-first), and which queued task to take back; dispatch is pipelined
  (each actor holds up to ``queue_depth`` tasks, so the next starts when the last ends);
* :mod:`.pool`: the renderer actors, and every Ray call for them; :mod:`.farmpool`: the same
  actors leased from the cluster's farm (:mod:`.farm`, shared by every job, warm across jobs),
  the default;
* :mod:`.assembly`: one master per branch, reused when it is already in the store;
* :mod:`orchestrator.store.lookup`: which tasks are cached before anything runs.

A task that raises is retried with backoff, on another actor when there is one; a task that
keeps failing is ``failed`` and its dependents ``blocked``; everything else finishes. A task
whose actor or node dies is re-queued (not counted against its retries). Branch masters are
assembled as soon as all of a branch's clips exist. Listeners (:mod:`.events`) hear of it.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store import CorruptBlob, Store
from ..store.lookup import lookup_with_copies
from . import policy
from .assembly import Assembler
from .farm import DEFAULT_IDLE_TIMEOUT_S
from .farmpool import FarmPool
from .masters import Masters
from .pool import (
    Call,
    CapacityTimeout,
    Corrupt,
    Lost,
    Raised,
    Recalled,
    Rendered,
    Unplaceable,
    Worker,
    WorkerPool,
    WorkerStartError,
    one_line,
)
from .state import (
    CACHED,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    TERMINAL,
    BranchRun,
    RunState,
    TaskRun,
)

if TYPE_CHECKING:
    from ..plan.models import RenderPlan
    from .events import Listener

__all__ = ["FAILED", "CapacityTimeout", "Interrupted", "Scheduler", "SchedulerOptions",
           "Unplaceable", "WorkerStartError"]

GROW_EVERY_S = 2.0
REPRIORITIZE_EVERY_S = 2.0
STARVING_NOTE_EVERY_S = 30.0
STARVING_CHECK_EVERY_S = 1.0
TIMEOUT_CHECK_EVERY_S = 0.5  # task timeouts are minutes: no need to look at every turn
MAX_CORRUPT_READS = 3  # times one blob may be found corrupt before its tasks fail


class Interrupted(Exception):
    """The run was cancelled (Ctrl-C); finished clips are cached."""


@dataclass(frozen=True)
class SchedulerOptions:
    retries: int = 2
    max_workers: int | None = None
    task_timeout: float | None = None  # None: each task's own RenderTask.time_limit
    preview_first: bool = False
    backoff_s: float = 0.5
    # autoscale: how long ready work may wait for the autoscaler's nodes before the run fails
    capacity_timeout: float = 900.0
    priority: int = 50  # 0-100: among the farm's jobs, a higher one's ready tasks go first
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S  # a farm actor nobody uses this long exits
    farm: bool = True  # lease actors from the cluster's farm; False: actors of this run only
    job: str | None = None  # the job's name at the farm (default: story + random)
    # tasks each actor may hold (pipelined dispatch): the running one and those queued behind
    # it, each starting when the one before ends. 1: a task is sent when its worker is free.
    queue_depth: int = 2


class Scheduler:
    def __init__(
        self,
        plan: RenderPlan,
        store: Store,
        *,
        store_url: str,
        s3_endpoint: str | None = None,
        options: SchedulerOptions | None = None,
        progress: Listener | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.store_url = store_url
        self.s3_endpoint = s3_endpoint
        self.opts = options or SchedulerOptions()
        self.progress = progress
        self.state = RunState(plan)
        self.runs: dict[str, TaskRun] = self.state.runs
        self.branches: list[BranchRun] = self.state.branches
        import secrets

        job = self.opts.job or f"{plan.story}-{secrets.token_hex(4)}"
        if self.opts.farm:
            self.pool: WorkerPool = FarmPool(
                store_url, s3_endpoint, self.opts.max_workers,
                job=job, story=plan.story,
                priority=self.opts.priority, idle_timeout_s=self.opts.idle_timeout)
        else:
            self.pool = WorkerPool(store_url, s3_endpoint, self.opts.max_workers)
        self.pool.job = job
        self.depth = max(1, self.opts.queue_depth)
        # every actor call in flight: ("render" | "recall", worker, call)
        self._inflight: dict[Any, tuple[str, Worker, Call]] = {}
        self.recalls = 0  # queued tasks taken back from an actor and sent elsewhere
        self._reserved: dict[int, Call] = {}  # idle worker -> the queued call taken back for it
        self.assembly = Assembler(store_url, s3_endpoint, plan.profile, plan.encoder)
        self.corrupt: list[dict[str, str]] = []
        self._corrupt_seen: dict[str, int] = defaultdict(int)
        self.masters = Masters(plan, store, self.state, self._found_corrupt, self._note)
        self.started = time.monotonic()
        self._ready = policy.ReadyQueue()
        self._order = {t.id: i for i, t in enumerate(plan.tasks)}
        self._rank = policy.branch_ranks(plan)
        self._preview = (frozenset(policy.preview_segments(plan)) if self.opts.preview_first
                         else frozenset())
        self.estimates = policy.Estimates(plan.remaining_seconds)
        self._last_grow = self._last_prio = 0.0
        self._starving_since: float | None = None
        self._last_starving_note = self._last_starving_check = 0.0
        self._last_timeout_check = 0.0
        # autoscale: what the run waits for from the autoscaler (for the display and the run
        # record), and since when ready work has had no node at all
        self.waiting_for: str | None = None
        self._stuck_since: float | None = None

    # -- read-only view (events.RunView) ---------------------------------------------------
    @property
    def workers(self) -> dict[int, Worker]:
        return self.pool.workers

    @property
    def remaining(self) -> dict[str, float]:
        return self.estimates.remaining

    @property
    def _wid(self):  # the pool's id counter (the next worker's id)
        return self.pool._wid  # noqa: SLF001

    def counts(self) -> dict[str, int]:
        return self.state.counts()

    def model_switches(self) -> int:
        return self.pool.model_switches()

    # -- cache lookup ----------------------------------------------------------------------
    def lookup(self, force: set[str] = frozenset()) -> None:
        """Mark tasks whose records exist (and whose blobs are present) as cached (see
        :mod:`orchestrator.store.lookup` for the requests it makes)."""
        found, self.masters.from_copy = lookup_with_copies(
            self.store, self.plan.story, [t.key for t in self.plan.tasks])
        self.state.looked_up(found, force)

    def records(self) -> dict[str, dict[str, Any]]:
        return self.state.records()

    def master_keys(self) -> dict[str, str]:
        return self.masters.keys_of_cached()

    def lookup_masters(self) -> None:
        """Mark branches whose master is already in the store (all clips cached) as done."""
        for b in self.branches:
            if b.status == "waiting" and all(self.runs[t].status == CACHED for t in b.tasks):
                self._reuse_master(b)

    def needs_cluster(self) -> bool:
        return self.state.needs_cluster()

    def _reuse_master(self, b: BranchRun) -> bool:
        return self.masters.reuse(b)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        import ray

        self._check_placeable()
        for run in self.state.initially_ready():
            self._queue(run)
        if self.progress:
            self.progress.start(self)
        changed = True  # task states moved since branches were last looked at
        try:
            while True:
                now = time.monotonic()
                # Scanning every branch's tasks costs O(naive tasks): only after a change, or
                # on the periodic tick (timeouts change states too).
                if changed or now - self._last_prio > REPRIORITIZE_EVERY_S:
                    self._refresh_branches()
                    # nothing in flight first: finished() looks at every task
                    if not self._inflight and not self.assembly.running and (
                            self.state.finished()):
                        break
                changed = False
                if now - self._last_grow > GROW_EVERY_S:
                    self._grow()
                    self._last_grow = now
                    self._check_capacity(now)  # autoscale
                if now - self._last_prio > REPRIORITIZE_EVERY_S:
                    self._reprioritize()
                    self._last_prio = now
                self._dispatch(now)
                self._sync(now)
                if now - self._last_starving_check >= STARVING_CHECK_EVERY_S:
                    self._last_starving_check = now
                    self._report_starvation(now)
                # a queued call ends after the one before it: wait on each worker's first call
                # (a call its actor gives back is heard of through the recall's answer)
                waiting = [ref for ref, (kind, w, call) in self._inflight.items()
                           if kind == "recall" or (w.calls and w.calls[0] is call)]
                if self._farm_sync is not None:
                    waiting.append(self._farm_sync)
                waiting += [w.ready_ref for w in self.pool.starting()]
                waiting += self.assembly.refs()
                if waiting:
                    done, rest = ray.wait(waiting, num_returns=1, timeout=0.25)
                    if done and rest:  # take every result that is already in, not one a turn
                        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                        done += more
                    for ref in done:
                        self._complete(ref)
                    changed = bool(done)
                    if now - self._last_timeout_check >= TIMEOUT_CHECK_EVERY_S:
                        self._last_timeout_check = now
                        self._check_timeouts()
                elif not self.state.any_ready():
                    self.state.stall()
                    changed = True
                else:
                    time.sleep(0.05)
                if self.progress:
                    self.progress.tick(self)
        except KeyboardInterrupt:
            self._stop_progress()
            self.shutdown()
            raise Interrupted() from None
        except BaseException:
            self._stop_progress()
            self.shutdown()
            raise
        self.shutdown()
        self.waiting_for = None  # autoscale: the run finished; nothing is awaited
        if self.progress:
            self.progress.finish(self)

    def _stop_progress(self) -> None:
        if self.progress:
            self.progress.stop()

    def start_workers(self, timeout_s: float | None = None) -> int:
        """Start the renderer actors the pending work needs and wait until they are ready,
        or until ``timeout_s`` has passed; returns how many are ready.

        Optional: :meth:`run` starts actors itself as work and nodes allow. Calling this
        first keeps actor start-up out of the first tasks (for a caller that wants the pool
        up before it starts a clock, such as ``benchmarks/scheduler.py``). Raises what
        :meth:`run` would for a plan no node can run or actors that cannot start, and then
        leaves no actor behind."""
        import ray

        if isinstance(self.pool, FarmPool):
            return self._lease_workers(timeout_s)
        try:
            self._check_placeable()
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                if self._last_grow == 0.0:  # first turn, or an actor was replaced
                    self._grow()
                    self._last_grow = time.monotonic()
                starting = {w.ready_ref: w for w in self.pool.starting()}
                left = None if deadline is None else deadline - time.monotonic()
                if not starting or (left is not None and left <= 0):
                    break
                done, _ = ray.wait(list(starting), num_returns=1, timeout=left)
                for ref in done:
                    self._came_up(starting[ref])
        except BaseException:
            self.shutdown()
            raise
        return sum(1 for w in self.workers.values() if w.ready)

    def _lease_workers(self, timeout_s: float | None) -> int:
        """:meth:`start_workers` on the farm: report the work, then sync until the farm has no
        actor of this job's pools starting and no new lease came (or ``timeout_s``)."""
        try:
            self._check_placeable()
            self._grow()
            if not self.pool.work:
                return 0
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                before = len(self.workers)
                self.pool.send(time.monotonic(), self._ready_models())
                self._synced()
                settled = self.pool.starting_in_farm == 0 and len(self.workers) == before
                if (settled and self.workers) or (
                        deadline is not None and time.monotonic() >= deadline):
                    break
                time.sleep(0.1)
        except BaseException:
            self.shutdown()
            raise
        return len(self.workers)

    def shutdown(self) -> None:
        self.pool.shutdown()
        self.assembly.cancel()

    # -- the ready queue and dispatch ------------------------------------------------------
    def _queue(self, run: TaskRun) -> None:
        pool = self.pool.pool_for(run.task)
        tid = run.task.id
        self._ready.put(policy.Ready(
            tid, pool.key, self.pool.model_of[tid], self._priority(run), run.not_before,
            run.avoid))

    def _priority(self, run: TaskRun) -> tuple:
        return policy.priority(run.task, self.estimates.remaining, self._rank, self._preview,
                               self._order[run.task.id])

    def _dispatch(self, now: float) -> None:
        """Fill the workers' queues: idle workers first, then a task behind the running one
        on the worker whose running task should end first. Queued tasks are taken back where
        the policy says they belong elsewhere: for an idle worker, when they go before every
        ready task (:func:`.policy.steals`, before it is given one), or for a ready task on a
        longer path that found every queue full (:func:`.policy.preempts`)."""
        usable = self.pool.usable()
        places: Counter = Counter()  # tasks each pool could take now, sent or recalled
        for w in usable:
            places[w.pool] += self.depth - len(w.calls) + (len(w.calls) > 1)
        ready = self._ready.best(places, now, self._is_ready) if self._ready and places else []
        queued = self.depth > 1 and any(len(w.calls) > 1 for w in usable)
        if queued and any(not w.calls and w.id not in self._reserved for w in usable):
            self._steal(ready, usable, now)
        if ready:
            for level in range(self.depth):
                if not ready:
                    break
                slots = [w for w in usable
                         if len(w.calls) == level and w.id not in self._reserved]
                if level:
                    slots = [w for w in slots if not self._awaits_dependent(w, ready)]
                    slots.sort(key=lambda w: self._free_at(w, now))
                if not slots:
                    continue
                chosen = policy.assign(
                    ready, [policy.Idle(w.id, w.pool, w.model) for w in slots], now=now,
                    remaining=self.estimates.remaining, switch_cost=self.estimates.load_cost)
                for wid, tid in chosen:
                    self._send(self.workers[wid], self.runs[tid], now)
                sent = {tid for _, tid in chosen}
                ready = [r for r in ready if r.task not in sent]
        if queued and ready:
            self._preempt(ready, usable, now)

    def _send(self, w: Worker, run: TaskRun, now: float) -> None:
        del self._ready[run.task.id]
        call = self.pool.render(w, run.task, self.state.condition(run))
        self._inflight[call.ref] = ("render", w, call)
        if w.calls[0] is call:
            self._start(w, call, now)

    def _start(self, w: Worker, call: Call, now: float) -> None:
        """A worker's first call is running (it was sent to a free worker, or the calls
        before it ended)."""
        call.started = True
        run = self.runs[call.task]
        if run.status != READY:  # sent back to pending by a corrupt upstream blob: it runs
            run.started = now  # all the same, and its timeout counts from now
            return
        self.state.started(run, now, w.node)
        if self.progress:
            self.progress.task_started(self, run, w)

    def _free_at(self, w: Worker, now: float, head_only: bool = False) -> float:
        """When ``w``'s calls (``head_only``: its running one) should have ended, from the
        estimates."""
        t = now
        for c in w.calls[:1] if head_only else w.calls:
            run = self.runs[c.task]
            est = self.estimates.seconds(run.task, self.pool.model_of.get(c.task))
            t = max(t, run.started + est) if c.started and run.started is not None else t + est
        return t

    def _awaits_dependent(self, w: Worker, ready: list[policy.Ready]) -> bool:
        """Whether ``w``'s last task has a dependent (a continuity shot) that will go before
        every ready task of its pool when it becomes ready, the moment that task ends: then
        nothing is queued behind it, so the dependent can start on this worker at once
        instead of waiting behind a queued task (on the critical path, that wait is the run's
        makespan)."""
        last = w.calls[-1].task
        pool = self.pool.pool_of.get(last)
        deps = [d for d in self.plan.dependents[last] if self.pool.pool_of.get(d) == pool
                and self.runs[d].status == PENDING]
        if not deps:
            return False
        best = min((r.priority for r in ready if r.pool == pool), default=None)
        dep = min(self._priority(self.runs[d]) for d in deps)
        return best is None or dep[:2] < best[:2]

    def _is_ready(self, tid: str) -> bool:
        return self.runs[tid].status == READY

    def _held(self, usable: list[Worker], now: float) -> list[policy.Held]:
        return [policy.Held(
            w.id, w.pool, w.model, running=bool(w.calls),
            queued=tuple(policy.Queued(c.task, self.pool.model_of.get(c.task),
                                       self._priority(self.runs[c.task]), c.recalling is None)
                         for c in w.calls[1:]),
            free_at=self._free_at(w, now, head_only=True))
            # a worker with one call neither steals (it is busy) nor has a task to give back
            for w in usable if w.id not in self._reserved and len(w.calls) != 1]

    def _take_back(self, w: Worker, tid: str) -> Call | None:
        for c in w.calls[1:]:
            if c.task == tid and c.recalling is None:
                self._recall(w, c)
                return c
        return None

    def _recall(self, w: Worker, c: Call) -> None:
        self._inflight[self.pool.recall(w, c)] = ("recall", w, c)

    def _steal(self, ready: list[policy.Ready], usable: list[Worker], now: float) -> None:
        for idle, wid, tid in policy.steals(
                ready, self._held(usable, now), now=now, remaining=self.estimates.remaining,
                switch_cost=self.estimates.load_cost):
            call = self._take_back(self.workers[wid], tid)
            if call is not None:
                self._reserved[idle] = call  # it waits for this task, not another

    def _preempt(self, ready: list[policy.Ready], usable: list[Worker], now: float) -> None:
        for wid, tid in policy.preempts(
                ready, self._held(usable, now), now=now, remaining=self.estimates.remaining,
                switch_cost=self.estimates.load_cost):
            self._take_back(self.workers[wid], tid)

    def _unreserve(self, call: Call) -> None:
        for wid in [wid for wid, c in self._reserved.items() if c is call]:
            del self._reserved[wid]

    def _recall_queued(self, w: Worker) -> None:
        """Take back every task queued on ``w`` (a revoked lease): it goes back to the farm
        when its running task ends."""
        for c in w.calls[1:]:
            if c.recalling is None and not c.started:
                self._recall(w, c)

    def _reprioritize(self) -> None:
        """Refine estimates from measured seconds per frame, then re-order the ready queue."""
        self._ready.keep(self._is_ready)
        if self.estimates.refine(self.plan, self.pool.model_of):
            for tid in list(self._ready):
                self._queue(self.runs[tid])
            self._ready.compact()

    # -- the farm --------------------------------------------------------------------------
    @property
    def _farm_sync(self) -> Any:
        return getattr(self.pool, "sync_ref", None)

    def _ready_models(self) -> dict[tuple, Counter]:
        out: dict[tuple, Counter] = defaultdict(Counter)
        for tid, r in self._ready.items():
            if self.runs[tid].status == READY:
                out[r.pool][r.model] += 1
        return out

    def _sync(self, now: float) -> None:
        """Tell the farm what this job needs (and give back what it revoked), when due."""
        if isinstance(self.pool, FarmPool) and self.pool.due(now):
            self.pool.send(now, self._ready_models())

    def _synced(self, timeout: float | None = None) -> None:
        for line in self.pool.synced(timeout):
            if self.progress:
                self.progress.note(line)
        for wid in getattr(self.pool, "revoked", ()):
            w = self.workers.get(wid)
            if w is not None and len(w.calls) > 1:
                self._recall_queued(w)
        if self.pool.autoscaler is not None:  # the farm's reply says what it awaits
            self._note_awaited()

    # -- workers ---------------------------------------------------------------------------
    def _check_placeable(self) -> None:
        self.pool.check_placeable(
            r.task for r in self.runs.values() if r.status not in TERMINAL)

    def _grow(self) -> None:
        work = Counter(self.pool.pool_of.get(tid) for tid, r in self.runs.items()
                       if r.status in (READY, RUNNING, PENDING))
        self.pool.grow(work)

    def _check_capacity(self, now: float) -> None:
        """autoscale: say what the run waits for from the autoscaler when that changes; fail
        the run (:class:`CapacityTimeout`) when ready work has had no node to run on for
        ``capacity_timeout`` seconds. Without an autoscaler, nothing (today's behaviour)."""
        if self.pool.autoscaler is None:
            return
        notes, self.pool.notes = self.pool.notes, []  # a request the autoscaler refused
        for line in notes:
            self._note(line)
        awaited = self._note_awaited()
        waiting = {r.pool for tid, r in self._ready.items() if self.runs[tid].status == READY}
        stuck = self.pool.stuck(waiting)
        if not stuck:
            self._stuck_since = None
            return
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= self.opts.capacity_timeout:
            pools = ", ".join(p.label for p in stuck)
            raise CapacityTimeout(
                f"no node for renderer actors ({pools}) after waiting "
                f"{self.opts.capacity_timeout:g}s for {awaited or 'nodes'} "
                "(--capacity-timeout); check the autoscaler's node types, limits and quotas")

    def _note_awaited(self) -> str | None:
        """What the run waits for from the autoscaler, said when it changes."""
        awaited = self.pool.waiting_for()
        if awaited != self.waiting_for:
            self.waiting_for = awaited
            if awaited:
                self._note(f"waiting for {awaited}")
        return awaited

    def _came_up(self, w: Worker) -> None:
        try:
            if not self.pool.came_up(w):
                self._last_grow = 0.0  # replace it at once
        finally:
            notes, self.pool.notes = self.pool.notes, []
            for line in notes:
                if self.progress:
                    self.progress.note(line)

    def _report_starvation(self, now: float) -> None:
        """Say so, every half minute, while ready work waits for actors Ray cannot place yet
        (an autoscaler may be adding nodes, or other jobs hold the resources)."""
        waiting = {r.pool for tid, r in self._ready.items() if self.runs[tid].status == READY}
        starving = self.pool.starving(waiting)
        if not starving:
            self._starving_since = None
            return
        if self._starving_since is None:
            self._starving_since = self._last_starving_note = now
            return
        if now - self._last_starving_note >= STARVING_NOTE_EVERY_S and self.progress:
            self._last_starving_note = now
            for line in self.pool.starving_notes(starving, now - self._starving_since):
                self.progress.note(line)

    # -- completions -----------------------------------------------------------------------
    def _complete(self, ref: Any) -> None:
        if self._farm_sync is not None and ref == self._farm_sync:
            self._synced()
            return
        if ref in self.assembly.running:
            self._assembled(ref)
            return
        got = self._inflight.pop(ref, None)
        if got is not None:
            kind, w, call = got
            if kind == "recall":
                self._unreserve(call)
            if w.id not in self.workers or call not in w.calls:
                return  # its worker was replaced (its tasks requeued), or it was given back
            if kind == "recall":
                if self.pool.recalled(w, call):
                    self._given_back(call)
            else:  # the loop waits on each worker's first call only
                self._rendered(w, call)
            return
        for w in self.pool.starting():
            if w.ready_ref == ref:
                self._came_up(w)
                return

    def _given_back(self, call: Call) -> None:
        """A queued task its actor gave back unstarted: ready again, for another worker."""
        self._unreserve(call)
        self._inflight.pop(call.ref, None)
        self.recalls += 1
        run = self.runs[call.task]
        if run.status == RUNNING:  # counted as started just before the actor gave it back
            self.state.unstarted(run)
        if run.status == READY:
            self._queue(run)

    def _orphaned(self, calls: list[Call]) -> None:
        """The calls behind a lost or killed worker's first: ready again (not an attempt)."""
        for c in calls:
            self._inflight.pop(c.ref, None)
            if c.recalling is not None:
                self._inflight.pop(c.recalling, None)
            run = self.runs[c.task]
            if run.status == READY:
                self._queue(run)

    def _rendered(self, w: Worker, call: Call) -> None:
        run = self.runs[call.task]
        behind = w.calls[1:] if w.calls and w.calls[0] is call else []
        self._inflight.pop(call.ref, None)
        outcome = self.pool.collect(w, call)
        if isinstance(outcome, Recalled):
            self._given_back(call)
        elif isinstance(outcome, Lost):
            self._orphaned(behind)
        if w.id in self.workers and w.calls and not w.calls[0].started:
            self._start(w, w.calls[0], time.monotonic())
        if isinstance(outcome, Recalled):
            return
        if isinstance(outcome, Rendered):
            rec = outcome.record
            ready = self.state.rendered(run, rec)
            self.estimates.measure(run.task.backend, self.pool.model_of[run.task.id],
                                   run.task.frames, rec.seconds, rec.load_seconds)
            if self.progress:
                self.progress.task_finished(self, run)
            for d in ready:
                self._queue(d)
        elif isinstance(outcome, Lost):
            self._last_grow = 0.0  # replace it at once
            again = self.state.lost(run)
            if again is not None:
                self._queue(again)
            else:
                self._failed(run)
            if self.progress:
                self.progress.note(f"worker on {w.node} lost; {run.task.id} requeued")
        elif isinstance(outcome, Corrupt):
            run.attempts -= 1
            self._corrupt(outcome.digest, found_by=run.task.id)
            if run.status not in TERMINAL:  # blocked when the blob's task failed (the bound)
                run.status = PENDING
        elif isinstance(outcome, Raised):
            run.log, run.traceback = outcome.log, outcome.traceback
            backoff = self.opts.backoff_s * 2 ** (run.attempts - 1)
            again = self.state.errored(run, outcome.error, retries=self.opts.retries,
                                       not_before=time.monotonic() + backoff, worker=w.id)
            if again is not None:
                self._queue(again)
                if self.progress:
                    self.progress.note(
                        f"{run.task.id} failed on {run.node}, retrying: {run.error}")
            else:
                self._failed(run)

    def _failed(self, run: TaskRun) -> None:
        if self.progress:
            self.progress.task_finished(self, run)

    def _note(self, line: str) -> None:
        if self.progress:
            self.progress.note(line)

    def _found_corrupt(self, digest: str, found_by: str) -> None:
        self.corrupt.append({"sha256": digest, "found_by": found_by})
        self._corrupt_seen[digest] += 1

    def _corrupt(self, digest: str, found_by: str) -> None:
        """A blob failed verification: every task whose record points at it renders again."""
        self._found_corrupt(digest, found_by)
        if self._corrupt_seen[digest] > MAX_CORRUPT_READS:
            # The store keeps handing back bad bytes for it (a failing disk, a broken proxy):
            # rendering again cannot help. Its tasks fail instead of looping forever.
            why = (f"blob {digest[:12]} read corrupt {self._corrupt_seen[digest]} times; "
                   "check the store (reelfarm cache verify)")
            for run in self.state.fail_holders(digest, why, master_of=found_by):
                self._failed(run)
            return
        if self.progress:
            self.progress.note(f"corrupt blob {digest[:12]} found by {found_by}; re-rendering")
        invalid, ready = self.state.corrupt(digest)
        for run in invalid:
            self.store.delete_action(run.task.key)
            self._with_inputs(run)
        for run in ready:
            self._queue(run)

    def _with_inputs(self, run: TaskRun) -> None:
        """A task that was cached at lookup renders after all (its record's blob was found
        corrupt): give it its key document, as :func:`.why.explain` gave the others, so the
        record it writes keeps it for the next plan's comparison."""
        if run.task.inputs is None:
            from ..plan.expand import key_inputs, profile_key

            doc = key_inputs(run.task, self.plan.salt,
                             profile_key(self.plan.profile, self.plan.encoder))
            run.task = run.task.model_copy(update={"inputs": doc})

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for w in self.pool.busy():
            run = self.runs[w.task]
            limit = self.opts.task_timeout or run.task.time_limit  # bounded by default
            if w.calls[0].started and run.started is not None and now - run.started > limit:
                calls, w.calls = w.calls, []
                self._inflight.pop(calls[0].ref, None)
                self._orphaned(calls[1:])
                self.pool.replace(w)
                self._last_grow = 0.0
                run.error = f"timed out after {limit:g}s on {run.node}"
                if run.attempts <= self.opts.retries:
                    self._queue(self.state.ready(run))
                else:
                    self.state.fail(run, run.error)
                    self._failed(run)

    # -- branches --------------------------------------------------------------------------
    def _refresh_branches(self) -> None:
        for b in self.state.branches_to_assemble():
            again = self.masters.settle(b)
            if again is True:  # reused
                if self.progress:
                    self.progress.branch_finished(self, b)
                continue
            if again:  # a copy was wrong and the store has no sound record: render them
                for run in again:
                    if run.status == PENDING and self.state.deps_done(run):
                        self._queue(self.state.ready(run))
                continue
            b.key = self.masters.key(b)
            if not self.masters.claim(b):  # another branch assembles the same master
                continue
            b.status = "assembling"
            self.assembly.start(b, b.key, self.state.clips(b))

    def _assembled(self, ref: Any) -> None:
        b, got = self.assembly.collect(ref)
        if isinstance(got, CorruptBlob):
            b.status = "waiting"
            self.masters.assembled(b)  # those waiting for it wait again too
            self._corrupt(got.digest, found_by=f"master {b.name}")
            return
        if isinstance(got, BaseException):
            b.status, b.error = "failed", one_line(got)
        elif got.frames != self.masters.expected_frames(b):
            b.status = "failed"
            b.error = f"master has {got.frames} frames, the plan {self.masters.expected_frames(b)}"
        else:
            self.state.branch_done(b, got.outputs["master"], got.frames, cached=False)
        shared = self.masters.assembled(b)
        if self.progress:
            for x in (b, *shared):
                self.progress.branch_finished(self, x)

