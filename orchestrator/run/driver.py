"""The driver loop: dispatch render tasks to warm renderer actors on a Ray cluster.

Policy (DESIGN.md, Execution on Ray):

* A task is *ready* when the task it is conditioned on has a verified record.
* Ready tasks are ordered by **longest remaining path** (estimated seconds to the end of the
  DAG, refined from measured seconds per backend and model as the run goes), then by branch
  order (default-choice branches first), then by plan order.
* An idle actor takes the best ready task of its pool, preferring one whose model it already
  holds unless a task on a clearly longer path waits (a model switch costs its load time).
* A task that raises is retried with backoff, on another actor when there is one; a task that
  keeps failing is ``failed`` and its dependents ``blocked``; everything else finishes.
* A task whose actor or node dies is re-queued (not counted against its retries).
* Branch masters are assembled as soon as all of a branch's clips exist.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from actors.backends import Backend, Resources, get_backend

from ..plan.keys import master_key
from ..store import ActionRecord, BlobRef, CorruptBlob, Store

if TYPE_CHECKING:
    from ..plan.models import RenderPlan, RenderTask
    from .progress import Progress

# task states
PENDING, READY, RUNNING = "pending", "ready", "running"
CACHED, RENDERED, FAILED, BLOCKED = "cached", "rendered", "failed", "blocked"
DONE = (CACHED, RENDERED)
TERMINAL = (CACHED, RENDERED, FAILED, BLOCKED)

MAX_LOST = 4  # times a task may lose its actor (node death) before it is failed
GROW_EVERY_S = 2.0
REPRIORITIZE_EVERY_S = 2.0
DEFAULT_SWITCH_COST_S = 10.0
STARVING_NOTE_EVERY_S = 30.0
MAX_START_FAILURES = 5  # actors of a pool failing to start before any came up
MAX_POOL_START_FAILURES = 20  # failed starts of a pool in all: then no more actors for it
MAX_CORRUPT_READS = 3  # times one blob may be found corrupt before its tasks fail
RECORD_SOURCES = 3  # newest run records read for copies of action records (see lookup)


class Interrupted(Exception):
    """The run was cancelled (Ctrl-C); finished clips are cached."""


class WorkerStartError(Exception):
    """Renderer actors keep failing to start (a broken worker environment, a backend that
    cannot be imported there): nothing could ever render."""


class Unplaceable(Exception):
    """Some tasks ask for resources that no node of the cluster has."""


@dataclass(frozen=True)
class SchedulerOptions:
    retries: int = 2
    max_workers: int | None = None
    task_timeout: float | None = None  # None: each task's own RenderTask.time_limit
    preview_first: bool = False
    backoff_s: float = 0.5


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


@dataclass
class Worker:
    id: int
    pool: tuple
    handle: Any
    ready_ref: Any
    ready: bool = False
    node: str = "?"
    model: str | None = None
    task: str | None = None
    ref: Any = None
    switches: int = 0
    rendered: int = 0


@dataclass
class Pool:
    key: tuple
    backend: Backend
    resources: Resources
    heaps: dict[str | None, list] = field(default_factory=lambda: defaultdict(list))
    started: int = 0  # actors that came up
    start_failures: int = 0  # actors that failed to come up before any did
    failed_starts: int = 0  # actors that failed to come up, in all
    closed: bool = False  # too many failed starts: no more actors are started for it

    @property
    def label(self) -> str:
        r = self.resources
        parts = [self.backend.name, f"cpu={r.num_cpus:g}"]
        if r.num_gpus:
            parts.append(f"gpu={r.num_gpus:g}")
        parts += [f"{k}={v:g}" for k, v in sorted(r.custom.items())]
        return " ".join(parts)


class Scheduler:
    def __init__(
        self,
        plan: RenderPlan,
        store: Store,
        *,
        store_url: str,
        s3_endpoint: str | None = None,
        options: SchedulerOptions | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.store_url = store_url
        self.s3_endpoint = s3_endpoint
        self.opts = options or SchedulerOptions()
        self.progress = progress
        self.runs: dict[str, TaskRun] = {t.id: TaskRun(t) for t in plan.tasks}
        self.branches = [BranchRun(b.name, b.tasks) for b in plan.branches]
        self.workers: dict[int, Worker] = {}
        self.pools: dict[tuple, Pool] = {}
        self.pool_of: dict[str, tuple] = {}
        self.model_of: dict[str, str | None] = {}
        self.assembling: dict[Any, BranchRun] = {}
        self.corrupt: list[dict[str, str]] = []
        self._corrupt_seen: dict[str, int] = defaultdict(int)
        self._from_copy: set[str] = set()  # task keys whose record is a run record's copy
        self._sound_masters: set[str] = set()  # master digests re-hashed in this run
        # (branch name, digest) -> True when the output already holds exactly that master, so
        # publishing will not read the store's copy and re-hashing it can be skipped
        self.published: Callable[[str, str], bool] | None = None
        self.started = time.monotonic()
        self._seq = itertools.count()
        self._wid = itertools.count(1)
        self._rank = self._branch_ranks()
        self._preview = _preview_segments(plan)
        self._measured: dict[tuple[str, str | None], list[float]] = defaultdict(lambda: [0.0, 0])
        self._load_cost: dict[str | None, float] = {}
        self._remaining = dict(plan.remaining_seconds)
        self._last_grow = self._last_prio = 0.0
        self._retired_switches = 0
        self._starving_since: float | None = None
        self._last_starving_note = 0.0

    # -- cache lookup ----------------------------------------------------------------------
    def lookup(self, force: set[str] = frozenset()) -> None:
        """Mark tasks whose records exist (and whose blobs are present) as cached.

        Requests: which records exist (``action_sizes``: a listing on S3), the copies of the
        records kept in the story's latest run records, a GET for each existing record without
        a trusted copy, and one batched existence check of every blob the records name. A copy
        is trusted only when a record of the same key and size is in the store and its blobs
        are present; otherwise the record itself is read. A copy never decides a master on its
        own: before a branch is assembled (or when a stored master's frames disagree with the
        plan) the records of its tasks that came from copies are read and compared
        (:meth:`confirm_copies`); a fully cached render with its masters reuses them unread.
        """
        sizes = self.store.action_sizes([t.key for t in self.plan.tasks])
        copies = self._recorded_copies(sizes)
        records: dict[str, ActionRecord | None] = dict(copies)
        records.update(self.store.get_actions([k for k in sizes if k not in copies]))
        refs = [o for r in records.values() if r for o in r.outputs.values()]
        present = self.store.has_blobs(refs) if refs else {}
        # A copy whose blobs are gone may be older than the stored record: read the record.
        stale = [k for k in copies if not all(present.get(o.sha256) for o in
                                              copies[k].outputs.values())]
        if stale:
            records.update(self.store.get_actions(stale))
            refs = [o for k in stale if records[k] for o in records[k].outputs.values()]
            present.update(self.store.has_blobs(refs) if refs else {})
        self._from_copy = {k for k in copies if records.get(k) is copies[k]}
        for tid, run in self.runs.items():
            rec = records.get(run.task.key)
            if run.task.shot in force or tid in force:
                run.reason = "forced"
            elif rec is None:
                run.reason = "new key"
            elif not all(present.get(o.sha256) for o in rec.outputs.values()):
                run.reason = "record's blobs missing"
            else:
                run.status, run.record, run.reason = CACHED, rec, "cached"
                run.node, run.seconds = rec.node, 0.0

    def _recorded_copies(self, sizes: dict[str, int]) -> dict[str, ActionRecord]:
        """Copies of action records from the story's latest run records (newest first, up to
        the newest finished run) for the keys in ``sizes`` whose stored record has the copy's
        exact size (a damaged or truncated record in the store is read, not trusted)."""
        out: dict[str, ActionRecord] = {}
        if not sizes:
            return out
        story = self.plan.story
        for run_id in reversed(self.store.list_runs(story)[-RECORD_SOURCES:]):
            doc = self.store.get_run(story, run_id)
            if not isinstance(doc, dict):
                continue
            kept = doc.get("records")
            for key, data in (kept.items() if isinstance(kept, dict) else ()):
                if key in out or key not in sizes or not isinstance(data, dict):
                    continue
                try:
                    rec = ActionRecord.model_validate({**data, "key": key})
                except ValidationError:
                    continue
                if len(rec.to_json()) == sizes[key]:
                    out[key] = rec
            if doc.get("status") != "running":
                break
        return out

    def records(self) -> dict[str, dict[str, Any]]:
        """A compact copy of every action record this run used or made, by key (kept in the
        run record so that the next lookup need not GET each record)."""
        return {
            r.record.key: r.record.model_dump(mode="json", exclude={"key"})
            for r in self.runs.values()
            if r.record is not None
        }

    def master_keys(self) -> dict[str, str]:
        """The master key of every branch whose clips are all cached (computed from the clip
        digests, no request), by branch name: the first run record names them, so that a
        concurrent ``cache gc`` keeps the masters this run may reuse."""
        out = {}
        for b in self.branches:
            if all(self.runs[t].status == CACHED for t in b.tasks):
                b.key = self._master_key(b)
                out[b.name] = b.key
        return out

    def lookup_masters(self) -> None:
        """Mark branches whose master is already in the store (all clips cached) as done."""
        for b in self.branches:
            if b.status == "waiting" and all(self.runs[t].status == CACHED for t in b.tasks):
                self._reuse_master(b)

    def needs_cluster(self) -> bool:
        return any(r.status != CACHED for r in self.runs.values()) or any(
            b.status != "done" for b in self.branches)

    def _master_key(self, b: BranchRun) -> str:
        clips = [self.runs[t].record.outputs["clip"].sha256 for t in b.tasks]
        return master_key(clips, self.plan.profile.model_dump(), self.plan.encoder)

    def expected_frames(self, b: BranchRun) -> int:
        return sum(self.runs[t].task.frames for t in b.tasks)

    def _reuse_master(self, b: BranchRun) -> bool:
        """Reuse the stored master of ``b``'s clips when its record exists, its frames are the
        plan's and its bytes verify (a corrupt master is reported and assembled again)."""
        b.key = self._master_key(b)
        rec = self.store.get_action(b.key)
        if rec is None or "master" not in rec.outputs:
            return False
        if rec.frames != self.expected_frames(b):
            # The clips said to be this branch's are not: a copy of a record in a run record
            # disagrees with the store. Confirm the branch's records and look again.
            if self.confirm_copies(b) and all(self.runs[t].record is not None
                                              for t in b.tasks):
                return self._reuse_master(b)
            return False
        ref = rec.outputs["master"]
        if not all(self.store.has_blobs([ref]).values()):
            return False
        if ref.sha256 not in self._sound_masters and not (
                self.published and self.published(b.name, ref.sha256)):
            from ..store.cache import rehash

            actual = rehash(self.store, ref.sha256)
            if actual is not None:
                self.corrupt.append({"sha256": ref.sha256, "found_by": f"master {b.name}"})
                self._corrupt_seen[ref.sha256] += 1
                if self.progress:
                    self.progress.note(f"corrupt master {ref.sha256[:12]} of {b.name}; "
                                       "assembling it again")
                self.store.delete_action(b.key)
                return False
            self._sound_masters.add(ref.sha256)
        b.status, b.master, b.frames, b.cached = "done", ref, rec.frames, True
        return True

    def confirm_copies(self, b: BranchRun) -> bool:
        """Read the stored records of ``b``'s tasks that came from run-record copies; a copy
        that differs from the store's record is replaced by it (or, when the store has none
        with its blobs, the task renders again). True when some copy was wrong."""
        keys = sorted({self.runs[t].task.key for t in b.tasks} & self._from_copy)
        if not keys:
            return False
        stored = self.store.get_actions(keys)
        self._from_copy -= set(keys)
        wrong = False
        for t in b.tasks:
            run = self.runs[t]
            if run.task.key not in stored or run.status != CACHED:
                continue
            rec = stored[run.task.key]
            if rec == run.record:
                continue
            wrong = True
            present = rec is not None and all(self.store.has_blobs(rec.outputs.values()).values())
            if present:
                run.record = rec
            else:
                run.record, run.status = None, PENDING
                run.reason = "its run record's copy disagreed with the store"
        if wrong and self.progress:
            self.progress.note(f"{b.name}: a run record's copy of a record disagreed with the "
                               "store; the store's record is used")
        return wrong

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        import ray

        self._check_placeable()
        for run in self.runs.values():
            if run.status == PENDING and self._deps_done(run):
                self._make_ready(run)
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
                    if self._finished():
                        break
                changed = False
                if now - self._last_grow > GROW_EVERY_S:
                    self._grow()
                    self._last_grow = now
                if now - self._last_prio > REPRIORITIZE_EVERY_S:
                    self._reprioritize()
                    self._last_prio = now
                self._dispatch(now)
                self._report_starvation(now)
                waiting = [w.ref for w in self.workers.values() if w.ref is not None]
                waiting += [w.ready_ref for w in self.workers.values() if not w.ready]
                waiting += list(self.assembling)
                if waiting:
                    done, rest = ray.wait(waiting, num_returns=1, timeout=0.25)
                    if done and rest:  # take every result that is already in, not one a turn
                        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                        done += more
                    for ref in done:
                        self._complete(ref)
                    changed = bool(done)
                    self._check_timeouts()
                elif not self._any_ready_soon():
                    self._stall()
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

        try:
            self._check_placeable()
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                if self._last_grow == 0.0:  # first turn, or an actor was replaced
                    self._grow()
                    self._last_grow = time.monotonic()
                starting = {w.ready_ref: w for w in self.workers.values() if not w.ready}
                left = None if deadline is None else deadline - time.monotonic()
                if not starting or (left is not None and left <= 0):
                    break
                done, _ = ray.wait(list(starting), num_returns=1, timeout=left)
                for ref in done:
                    self._worker_ready(starting[ref])
        except BaseException:
            self.shutdown()
            raise
        return sum(1 for w in self.workers.values() if w.ready)

    def shutdown(self) -> None:
        import ray

        for w in list(self.workers.values()):
            self._retired_switches += w.switches
            _kill(w.handle)
        self.workers.clear()
        for ref in list(self.assembling):
            ray.cancel(ref, force=True)

    # -- state helpers ---------------------------------------------------------------------
    def _deps_done(self, run: TaskRun) -> bool:
        up = run.task.upstream
        return up is None or self.runs[up].status in DONE

    def _finished(self) -> bool:
        return all(r.status in TERMINAL for r in self.runs.values()) and all(
            b.status in ("done", "failed") for b in self.branches
        )

    def _any_ready_soon(self) -> bool:
        return any(r.status == READY for r in self.runs.values())

    def _stall(self) -> None:
        """Nothing runs and nothing is ready: every non-terminal task is unreachable."""
        for run in self.runs.values():
            if run.status not in TERMINAL:
                run.status, run.error = BLOCKED, "its upstream task did not finish"

    def _branch_ranks(self) -> dict[str, int]:
        rank: dict[str, int] = {}
        for i, b in enumerate(self.plan.branches):
            for tid in b.tasks:
                rank.setdefault(tid, i)
        return rank

    def _pool_for(self, task: RenderTask) -> Pool:
        backend = get_backend(task.backend)
        res = backend.resources(task.renderer)
        key = (backend.name, res.shape())
        if key not in self.pools:
            self.pools[key] = Pool(key, backend, res)
        self.pool_of[task.id] = key
        self.model_of[task.id] = backend.model_ref(task.renderer)
        return self.pools[key]

    def _priority(self, run: TaskRun) -> tuple:
        t = run.task
        preview = 0 if (self.opts.preview_first and t.segment in self._preview) else 1
        return (preview, -self._remaining[t.id], self._rank.get(t.id, 1 << 30))

    def _make_ready(self, run: TaskRun) -> None:
        run.status = READY
        pool = self._pool_for(run.task)
        heapq.heappush(
            pool.heaps[self.model_of[run.task.id]],
            (self._priority(run), next(self._seq), run.task.id),
        )

    def _reprioritize(self) -> None:
        """Refine estimates from measured seconds per frame, then re-order the ready heaps."""
        if not self._measured:
            return
        est: dict[str, float] = {}
        for t in self.plan.tasks:
            m = self._measured.get((t.backend, self.model_of.get(t.id)))
            est[t.id] = t.frames * (m[0] / m[1]) if m and m[1] else t.est_seconds
        rem: dict[str, float] = {}
        for t in reversed(self.plan.tasks):
            tail = max((rem[d] for d in self.plan.dependents[t.id]), default=0.0)
            rem[t.id] = est[t.id] + tail
        self._remaining = rem
        for pool in self.pools.values():
            for model, heap in pool.heaps.items():
                pool.heaps[model] = [
                    (self._priority(self.runs[tid]), s, tid)
                    for _, s, tid in heap
                    if self.runs[tid].status == READY
                ]
                heapq.heapify(pool.heaps[model])

    # -- placement -------------------------------------------------------------------------
    def _nodes(self) -> list[dict[str, float]]:
        import ray

        return [n["Resources"] for n in ray.nodes() if n.get("Alive")]

    def _check_placeable(self) -> None:
        todo = [r for r in self.runs.values() if r.status not in TERMINAL]
        if not todo:
            return
        nodes = self._nodes()
        problems = []
        for key in {self._pool_for(r.task).key for r in todo}:
            need = _needs(self.pools[key].resources)
            if not any(all(n.get(k, 0.0) >= v for k, v in need.items()) for n in nodes):
                shots = sorted({r.task.shot for r in todo if self.pool_of[r.task.id] == key})
                offer = "; ".join(_describe(n) for n in nodes) or "no live nodes"
                problems.append(
                    f"no node can run {len(shots)} shot(s) ({', '.join(shots[:5])}"
                    f"{', ...' if len(shots) > 5 else ''}): they need {_describe(need)}; "
                    f"the cluster's nodes offer: {offer}"
                )
        if problems:
            raise Unplaceable("\n".join(problems))

    def _capacity(self, pool: Pool) -> int:
        need = _needs(pool.resources)
        return sum(
            min((math.floor(n.get(k, 0.0) / v) for k, v in need.items() if v > 0), default=1)
            for n in self._nodes()
        )

    def _grow(self) -> None:
        """Start actors for pools with ready work, up to what the cluster offers now."""

        cap_total = self.opts.max_workers or 1 << 30
        for pool in self.pools.values():
            if pool.closed:
                if not any(w.pool == pool.key for w in self.workers.values()) and any(
                        r.status in (READY, PENDING) and self.pool_of.get(r.task.id) == pool.key
                        for r in self.runs.values()):
                    raise WorkerStartError(
                        f"renderer actors ({pool.label}) failed to start {pool.failed_starts} "
                        "times and none is left to finish the work")
                continue
            ready = sum(1 for r in self.runs.values() if r.status in (READY, RUNNING, PENDING)
                        and self.pool_of.get(r.task.id) == pool.key)
            have = sum(1 for w in self.workers.values() if w.pool == pool.key)
            want = min(self._capacity(pool), ready, cap_total - len(self.workers))
            for _ in range(max(0, want - have)):
                opts = pool.resources.ray_options()
                handle = (
                    _remote_renderer()
                    .options(max_restarts=0, max_task_retries=0, max_concurrency=1, **opts)
                    .remote(self.store_url, self.s3_endpoint, pool.backend)
                )
                wid = next(self._wid)
                self.workers[wid] = Worker(wid, pool.key, handle, handle.info.remote())

    def _pool_workers(self, pool: Pool) -> int:
        return sum(1 for w in self.workers.values() if w.pool == pool.key and w.ready)

    def _replace(self, w: Worker) -> None:
        _kill(w.handle)
        self.workers.pop(w.id, None)
        self._retired_switches += w.switches
        self._last_grow = 0.0  # grow again at once

    def _report_starvation(self, now: float) -> None:
        """Say so, every half minute, while ready work waits for actors Ray cannot place yet
        (an autoscaler may be adding nodes, or other jobs hold the resources)."""
        idle_pools = {w.pool for w in self.workers.values() if w.ready}
        starving = [
            p for p in self.pools.values()
            if p.key not in idle_pools and any(h for h in p.heaps.values())
            and any(self.runs[i[2]].status == READY for h in p.heaps.values() for i in h[:1])
        ]
        if not starving:
            self._starving_since = None
            return
        if self._starving_since is None:
            self._starving_since = self._last_starving_note = now
            return
        if now - self._last_starving_note >= STARVING_NOTE_EVERY_S and self.progress:
            self._last_starving_note = now
            pending = sum(1 for w in self.workers.values() if not w.ready)
            offer = "; ".join(_describe(n) for n in self._nodes())
            for p in starving:
                self.progress.note(
                    f"waiting {now - self._starving_since:.0f}s for Ray to start renderer actors "
                    f"({p.label}; {pending} pending); the cluster offers: {offer}"
                )

    # -- dispatch --------------------------------------------------------------------------
    def _pick(self, w: Worker, now: float) -> TaskRun | None:
        pool = self.pools[w.pool]
        best: tuple | None = None
        best_model: str | None = None
        for model, heap in pool.heaps.items():
            while heap and self.runs[heap[0][2]].status != READY:
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best):
                best, best_model = heap[0], model
        if best is None:
            return None
        model = best_model
        if w.model is not None and best_model != w.model:
            own = pool.heaps.get(w.model)
            if own:
                cost = self._load_cost.get(best_model, DEFAULT_SWITCH_COST_S)
                gap = self._remaining[best[2]] - self._remaining[own[0][2]]
                if gap < cost:
                    model = w.model
        heap = pool.heaps[model]
        # Respect back-off, and prefer not to retry on the actor that just failed the task.
        skipped = []
        chosen = None
        while heap:
            item = heapq.heappop(heap)
            run = self.runs[item[2]]
            if run.status != READY:
                continue
            others_idle = sum(1 for o in self.workers.values()
                              if o.pool == w.pool and o.ready and o.task is None) > 1
            if run.not_before > now or (run.avoid == w.id and others_idle):
                skipped.append(item)
                continue
            chosen = run
            break
        for item in skipped:
            heapq.heappush(heap, item)
        return chosen

    def _dispatch(self, now: float) -> None:
        for w in self.workers.values():
            if not w.ready or w.task is not None:
                continue
            run = self._pick(w, now)
            if run is None:
                continue
            cond = None
            if run.task.upstream is not None:
                cond = self.runs[run.task.upstream].record.outputs["last_frame"]
            model = self.model_of[run.task.id]
            if model is not None and w.model is not None and model != w.model:
                w.switches += 1
            w.model = model if model is not None else w.model
            run.status, run.started, run.node = RUNNING, now, w.node
            run.attempts += 1
            w.task = run.task.id
            w.ref = w.handle.render.remote(run.task, cond)
            if self.progress:
                self.progress.task_started(self, run, w)

    # -- completions -----------------------------------------------------------------------
    def _complete(self, ref: Any) -> None:
        if ref in self.assembling:
            self._assembled(ref)
            return
        for w in list(self.workers.values()):
            if not w.ready and w.ready_ref == ref:
                self._worker_ready(w)
                return
            if w.ref == ref:
                self._rendered(w)
                return

    def _worker_ready(self, w: Worker) -> None:
        import ray

        try:
            info = ray.get(w.ready_ref)
        except Exception as err:  # noqa: BLE001 - an actor that cannot start is replaced
            self._replace(w)
            pool = self.pools[w.pool]
            pool.failed_starts += 1
            cause = getattr(err, "cause", None) or err
            if pool.started == 0:
                pool.start_failures += 1
                if pool.start_failures >= MAX_START_FAILURES:
                    raise WorkerStartError(
                        f"renderer actors ({pool.label}) failed to start "
                        f"{pool.start_failures} times; last error: {_one_line(cause)}"
                    ) from None
            elif pool.failed_starts >= MAX_POOL_START_FAILURES and not pool.closed:
                # Some node cannot run this pool's actors (say, it lacks the backend's extra):
                # stop starting new ones; the actors that are up finish the work.
                pool.closed = True
                if self.progress:
                    self.progress.note(
                        f"renderer actors ({pool.label}) failed to start {pool.failed_starts} "
                        f"times; no more are started, the {self._pool_workers(pool)} running "
                        f"finish the work; last error: {_one_line(cause)}")
            if pool.closed and self._pool_workers(pool) == 0:
                raise WorkerStartError(
                    f"renderer actors ({pool.label}) failed to start {pool.failed_starts} "
                    f"times and none is left; last error: {_one_line(cause)}") from None
            return
        self.pools[w.pool].started += 1
        w.ready, w.node = True, info["node"]

    def _rendered(self, w: Worker) -> None:
        import ray

        run = self.runs[w.task]
        ref, w.task, w.ref = w.ref, None, None
        try:
            rec: ActionRecord = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - classified below
            self._render_error(w, run, err)
            return
        run.status, run.record, run.error = RENDERED, rec, None
        run.seconds, run.load_seconds, run.node = rec.seconds, rec.load_seconds, rec.node
        w.rendered += 1
        model = self.model_of[run.task.id]
        m = self._measured[(run.task.backend, model)]
        m[0] += max(0.0, rec.seconds - rec.load_seconds)
        m[1] += run.task.frames
        if rec.load_seconds:
            self._load_cost[model] = rec.load_seconds
        if self.progress:
            self.progress.task_finished(self, run)
        for dep in self.plan.dependents[run.task.id]:
            d = self.runs[dep]
            if d.status == PENDING:
                self._make_ready(d)

    def _render_error(self, w: Worker, run: TaskRun, err: Exception) -> None:
        from ray.exceptions import ActorDiedError, RayActorError, WorkerCrashedError

        cause = getattr(err, "cause", None) or err
        if isinstance(err, (RayActorError, ActorDiedError, WorkerCrashedError)) or isinstance(
            cause, (RayActorError, ActorDiedError, WorkerCrashedError)
        ):
            run.lost += 1
            run.attempts -= 1
            self._replace(w)
            if run.lost > MAX_LOST:
                self._fail(run, f"its worker died {run.lost} times (last on {run.node})")
            else:
                run.reason = f"requeued: worker on {run.node} was lost"
                self._make_ready(run)
            if self.progress:
                self.progress.note(f"worker on {w.node} lost; {run.task.id} requeued")
            return
        if isinstance(cause, CorruptBlob):
            run.attempts -= 1
            self._corrupt(cause.digest, found_by=run.task.id)
            run.status = PENDING
            return
        run.error = _one_line(cause)
        if run.attempts <= self.opts.retries:
            run.not_before = time.monotonic() + self.opts.backoff_s * 2 ** (run.attempts - 1)
            run.avoid = w.id
            self._make_ready(run)
            if self.progress:
                self.progress.note(f"{run.task.id} failed on {run.node}, retrying: {run.error}")
        else:
            self._fail(run, run.error)

    def _fail(self, run: TaskRun, error: str) -> None:
        run.status, run.error = FAILED, error
        if self.progress:
            self.progress.task_finished(self, run)
        stack = list(self.plan.dependents[run.task.id])
        while stack:
            d = self.runs[stack.pop()]
            if d.status not in TERMINAL:
                d.status, d.error = BLOCKED, f"upstream task {run.task.id} failed"
                stack.extend(self.plan.dependents[d.task.id])

    def _corrupt(self, digest: str, found_by: str) -> None:
        """A blob failed verification: every task whose record points at it renders again."""
        self.corrupt.append({"sha256": digest, "found_by": found_by})
        self._corrupt_seen[digest] += 1
        if self._corrupt_seen[digest] > MAX_CORRUPT_READS:
            # The store keeps handing back bad bytes for it (a failing disk, a broken proxy):
            # rendering again cannot help. Its tasks fail instead of looping forever.
            why = (f"blob {digest[:12]} read corrupt {self._corrupt_seen[digest]} times; "
                   "check the store (reelfarm cache verify)")
            for run in self.runs.values():
                if run.record and any(o.sha256 == digest for o in run.record.outputs.values()):
                    run.record = None
                    self._fail(run, why)
            for b in self.branches:
                if b.status == "waiting" and found_by == f"master {b.name}":
                    b.status, b.error = "failed", why
            return
        if self.progress:
            self.progress.note(f"corrupt blob {digest[:12]} found by {found_by}; re-rendering")
        for run in self.runs.values():
            if run.record and any(o.sha256 == digest for o in run.record.outputs.values()):
                self.store.delete_action(run.task.key)
                run.record, run.reason = None, "corrupt blob in the store"
                run.status = PENDING
                if self._deps_done(run):
                    self._make_ready(run)
                for dep in self.plan.dependents[run.task.id]:
                    if self.runs[dep].status == READY:
                        self.runs[dep].status = PENDING

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.task is None:
                continue
            run = self.runs[w.task]
            limit = self.opts.task_timeout or run.task.time_limit  # bounded by default
            if run.started is not None and now - run.started > limit:
                w.task, w.ref = None, None
                self._replace(w)
                run.error = f"timed out after {limit:g}s on {run.node}"
                if run.attempts <= self.opts.retries:
                    self._make_ready(run)
                else:
                    self._fail(run, run.error)

    # -- branches --------------------------------------------------------------------------
    def _refresh_branches(self) -> None:
        import ray

        from .assembly import assemble_master

        for b in self.branches:
            if b.status != "waiting":
                continue
            states = [self.runs[t].status for t in b.tasks]
            if any(s in (FAILED, BLOCKED) for s in states):
                bad = [t for t in b.tasks if self.runs[t].status in (FAILED, BLOCKED)]
                b.status, b.error = "failed", f"not assembled: {', '.join(bad[:5])} did not render"
                continue
            if not all(s in DONE for s in states):
                continue
            if all(self.runs[t].record is not None for t in b.tasks) and self._reuse_master(b):
                if self.progress:
                    self.progress.branch_finished(self, b)
                continue
            # A copy never decides a master's content unchecked: confirm the copies first.
            if self.confirm_copies(b):
                lost = [self.runs[t] for t in b.tasks if self.runs[t].status not in DONE]
                if lost:  # a copy was wrong and the store has no sound record: render it
                    for run in lost:
                        if run.status == PENDING and self._deps_done(run):
                            self._make_ready(run)
                    continue
                if self._reuse_master(b):
                    if self.progress:
                        self.progress.branch_finished(self, b)
                    continue
            b.key = self._master_key(b)
            clips = [self.runs[t].record.outputs["clip"] for t in b.tasks]
            b.status = "assembling"
            ref = ray.remote(assemble_master).options(num_cpus=0, max_retries=1).remote(
                self.store_url, self.s3_endpoint, b.key, clips, self.plan.profile,
                self.plan.encoder,
            )
            self.assembling[ref] = b

    def _assembled(self, ref: Any) -> None:
        import ray

        b = self.assembling.pop(ref)
        try:
            rec: ActionRecord = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - classified below
            cause = getattr(err, "cause", None) or err
            if isinstance(cause, CorruptBlob):
                b.status = "waiting"
                self._corrupt(cause.digest, found_by=f"master {b.name}")
                return
            b.status, b.error = "failed", _one_line(cause)
            if self.progress:
                self.progress.branch_finished(self, b)
            return
        if rec.frames != self.expected_frames(b):
            b.status = "failed"
            b.error = f"master has {rec.frames} frames, the plan {self.expected_frames(b)}"
        else:
            b.status, b.master, b.frames = "done", rec.outputs["master"], rec.frames
        if self.progress:
            self.progress.branch_finished(self, b)

    # -- numbers for progress and reports ----------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((PENDING, READY, RUNNING, CACHED, RENDERED, FAILED, BLOCKED), 0)
        for r in self.runs.values():
            out[r.status] += 1
        return out

    def model_switches(self) -> int:
        return sum(w.switches for w in self.workers.values()) + self._retired_switches


def _preview_segments(plan: RenderPlan) -> set[str]:
    """What ``--preview-first`` renders first: the opening segment, and for every branch the
    first segment that not every branch shares (so each choice's outcome can be previewed)."""
    if not plan.branches:
        return set()
    shared = set.intersection(*(set(b.segments) for b in plan.branches))
    out = {plan.branches[0].segments[0]}
    for b in plan.branches:
        first_own = next((s for s in b.segments if s not in shared), None)
        if first_own is not None:
            out.add(first_own)
    return out


_REMOTE_RENDERER: Any = None


def _remote_renderer() -> Any:
    """The renderer actor class, made remote once per process (each ``ray.remote`` exports
    the class to the cluster again)."""
    global _REMOTE_RENDERER
    if _REMOTE_RENDERER is None:
        import ray

        from actors.renderer import ShotRenderer

        _REMOTE_RENDERER = ray.remote(ShotRenderer)
    return _REMOTE_RENDERER


def _kill(handle: Any) -> None:
    import ray

    # already dead, or its creation was cancelled: either way it is gone
    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)


def _needs(r: Resources) -> dict[str, float]:
    need = {"CPU": r.num_cpus, "GPU": r.num_gpus, **r.custom}
    if r.memory_gb:
        need["memory"] = r.memory_gb * 1024**3
    return {k: v for k, v in need.items() if v > 0}


def _describe(res: dict[str, float]) -> str:
    parts = []
    for k, v in sorted(res.items()):
        if k.startswith("node:") or k.startswith("object_store") or k == "memory":
            continue
        parts.append(f"{k}={v:g}")
    return "{" + ", ".join(parts) + "}"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    msg = text[-1] if text else ""
    return f"{type(err).__name__}: {msg}"[:500]
