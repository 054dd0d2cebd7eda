"""The dispatch policy: which ready task each idle worker takes. Pure functions over plain data.

* Ready tasks are ordered by **longest remaining path** (estimated seconds to the end of the
  DAG), then by branch order (default-choice branches first), then by plan order; with
  ``--preview-first`` the preview segments go before everything else.
* An idle worker takes the best ready task of its pool, preferring one whose model it already
  holds unless a task on a clearly longer path waits (a model switch costs its load time).
* A task in back-off waits; a retried task prefers another worker than the one it failed on
  when another worker of the pool is idle.
* Dispatch is pipelined: a worker may hold a short queue of tasks on its actor (the driver's
  ``queue_depth``, 2 by default), so that its next task starts when the last one ends, not a
  driver round trip later. Idle workers are served first; a task queued behind a running one
  goes to the worker whose running task should end first.
* A queued task that has not started is taken back: for a worker of its pool that falls idle
  when no ready task goes before it (:func:`steals`; preferring a worker that holds its model
  warm), or for a ready task on a clearly longer path that finds every queue full
  (:func:`preempts`).

No Ray and no clock here: the driver passes ``now`` and the estimates, and applies the result.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan.models import RenderPlan, RenderTask

DEFAULT_SWITCH_COST_S = 10.0


@dataclass(frozen=True)
class Ready:
    """A task that may be dispatched: its pool (the actors that can run it), the model it
    needs, its priority (lower first, see :func:`priority`), back-off and the worker to avoid."""

    task: str
    pool: Hashable
    model: str | None
    priority: tuple
    not_before: float = 0.0
    avoid: int | None = None


@dataclass(frozen=True)
class Idle:
    """An idle worker: its id, its pool and the model it holds warm (None: none yet)."""

    id: int
    pool: Hashable
    warm: str | None = None


class ReadyQueue:
    """The ready tasks, a heap per (pool, model) in dispatch order, so that a driver turn
    looks at the best few of each group (:meth:`best`), O(k log n), instead of every ready
    task: a studio's story has thousands ready at once.

    Entries are dropped lazily: a task removed (dispatched), queued again with another
    priority, or no longer ready (``alive`` says, in :meth:`best`) is skipped when it comes up.
    """

    def __init__(self) -> None:
        self._items: dict[str, Ready] = {}
        self._heaps: dict[tuple[Hashable, str | None], list[tuple[tuple, str]]] = (
            defaultdict(list))
        self._entries = 0

    def put(self, r: Ready) -> None:
        self._items[r.task] = r
        heapq.heappush(self._heaps[(r.pool, r.model)], (r.priority, r.task))
        self._entries += 1
        if self._entries > 2 * len(self._items) + 1024:
            self.compact()

    def __delitem__(self, task: str) -> None:
        del self._items[task]

    def __contains__(self, task: str) -> bool:
        return task in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> Iterable[tuple[str, Ready]]:
        return self._items.items()

    def keep(self, alive: Callable[[str], bool]) -> None:
        """Drop the tasks that are no longer ready."""
        self._items = {t: r for t, r in self._items.items() if alive(t)}
        self.compact()

    def compact(self) -> None:
        heaps: dict[tuple[Hashable, str | None], list[tuple[tuple, str]]] = defaultdict(list)
        for r in self._items.values():
            heaps[(r.pool, r.model)].append((r.priority, r.task))
        for h in heaps.values():
            heapq.heapify(h)
        self._heaps, self._entries = heaps, len(self._items)

    def best(self, pools: Mapping[Hashable, int], now: float,
             alive: Callable[[str], bool]) -> list[Ready]:
        """For each pool in ``pools`` (pool: how many tasks it could take), the best that
        many tasks of each of its models that are out of back-off, and every task passed on
        the way that must wait (back-off) or avoids a worker (so :func:`assign` and
        :func:`steals` see what they would have chosen from the whole queue)."""
        out: list[Ready] = []
        seen: set[str] = set()
        for (pool, _model), heap in self._heaps.items():
            k = pools.get(pool, 0)
            if k <= 0:
                continue
            taken: list[tuple[tuple, str]] = []
            found = 0
            while heap and found < k:
                entry = heapq.heappop(heap)
                r = self._items.get(entry[1])
                if r is None or r.priority != entry[0] or r.task in seen or not alive(r.task):
                    if r is not None and r.priority == entry[0] and r.task not in seen:
                        del self._items[r.task]  # no longer ready
                    self._entries -= 1
                    continue
                taken.append(entry)
                seen.add(r.task)
                out.append(r)
                if r.not_before <= now and r.avoid is None:
                    found += 1
            for entry in taken:
                heapq.heappush(heap, entry)
        return out


def priority(task: RenderTask, remaining: Mapping[str, float], branch_rank: Mapping[str, int],
             preview: frozenset[str] | set[str] = frozenset(), seq: int = 0) -> tuple:
    """Preview segments first (when asked), then the longest remaining path, then branch
    order, then ``seq`` (plan order)."""
    first = 0 if task.segment in preview else 1
    return (first, -remaining[task.id], branch_rank.get(task.id, 1 << 30), seq)


def branch_ranks(plan: RenderPlan) -> dict[str, int]:
    """Each task's first branch, by the plan's branch order (default choices first)."""
    rank: dict[str, int] = {}
    for i, b in enumerate(plan.branches):
        for tid in b.tasks:
            rank.setdefault(tid, i)
    return rank


def preview_segments(plan: RenderPlan) -> set[str]:
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


def remaining_seconds(tasks: Sequence[RenderTask], dependents: Mapping[str, Iterable[str]],
                      estimate: Mapping[str, float]) -> dict[str, float]:
    """Seconds from each task to the end of the DAG along its longest path (``tasks`` in
    topological order)."""
    rem: dict[str, float] = {}
    for t in reversed(tasks):
        tail = max((rem[d] for d in dependents[t.id]), default=0.0)
        rem[t.id] = estimate[t.id] + tail
    return rem


class Estimates:
    """Seconds each task is expected to take, refined from measured seconds per frame of each
    (backend, model) as the run goes, and the model load times seen (a switch's cost)."""

    def __init__(self, remaining: Mapping[str, float]) -> None:
        self.remaining: dict[str, float] = dict(remaining)
        self.load_cost: dict[str | None, float] = {}
        self._measured: dict[tuple[str, str | None], list[float]] = defaultdict(
            lambda: [0.0, 0])

    def measure(self, backend: str, model: str | None, frames: int, seconds: float,
                load_seconds: float) -> None:
        m = self._measured[(backend, model)]
        m[0] += max(0.0, seconds - load_seconds)
        m[1] += frames
        if load_seconds:
            self.load_cost[model] = load_seconds

    def seconds(self, task: RenderTask, model: str | None) -> float:
        """What ``task`` should take: its frames at the seconds per frame measured for its
        backend and model, or the plan's estimate."""
        m = self._measured.get((task.backend, model))
        return task.frames * (m[0] / m[1]) if m and m[1] else task.est_seconds

    def refine(self, plan: RenderPlan, model_of: Mapping[str, str | None]) -> bool:
        """Recompute the remaining paths from what was measured; False when nothing was."""
        if not self._measured:
            return False
        est = {t.id: self.seconds(t, model_of.get(t.id)) for t in plan.tasks}
        self.remaining = remaining_seconds(plan.tasks, plan.dependents, est)
        return True


def assign(ready: Iterable[Ready], idle: Sequence[Idle], *, now: float,
           remaining: Mapping[str, float],
           switch_cost: Mapping[str | None, float] | None = None) -> list[tuple[int, str]]:
    """``(worker id, task id)`` for each idle worker (in the given order) that gets a task.

    A worker takes the best eligible task of its pool; when that task needs another model
    than the one the worker holds warm and a task for the warm model waits whose remaining
    path is shorter by less than the switch cost (the new model's load time), the warm one."""
    switch_cost = switch_cost or {}
    groups: dict[tuple, list[Ready]] = defaultdict(list)
    for r in ready:
        groups[(r.pool, r.model)].append(r)
    idle_in_pool: dict[Hashable, int] = defaultdict(int)
    for w in idle:
        idle_in_pool[w.pool] += 1
    out: list[tuple[int, str]] = []
    for w in idle:
        others_idle = idle_in_pool[w.pool] > 1

        def eligible(r: Ready, w: Idle = w, others_idle: bool = others_idle) -> bool:
            return r.not_before <= now and not (r.avoid == w.id and others_idle)

        tops: dict[str | None, Ready] = {}
        for (pool, model), items in groups.items():
            if pool != w.pool:
                continue
            best = min((r for r in items if eligible(r)), key=_order, default=None)
            if best is not None:
                tops[model] = best
        idle_in_pool[w.pool] -= 1
        if not tops:
            continue
        chosen = min(tops.values(), key=_order)
        own = tops.get(w.warm) if w.warm is not None else None
        if own is not None and chosen.model != w.warm:
            cost = switch_cost.get(chosen.model, DEFAULT_SWITCH_COST_S)
            if remaining[chosen.task] - remaining[own.task] < cost:
                chosen = own
        groups[(chosen.pool, chosen.model)].remove(chosen)
        out.append((w.id, chosen.task))
    return out


@dataclass(frozen=True)
class Queued:
    """A task waiting on a worker's actor behind its running task; ``recallable`` while no
    recall of it is under way."""

    task: str
    model: str | None
    priority: tuple
    recallable: bool = True


@dataclass(frozen=True)
class Held:
    """A worker with its actor's calls: ``running`` (a task runs), the tasks ``queued``
    behind it, and the model its last call leaves warm."""

    id: int
    pool: Hashable
    warm: str | None = None
    running: bool = False
    queued: tuple[Queued, ...] = ()
    free_at: float = 0.0  # when its running task should end, from the estimates


def steals(ready: Iterable[Ready], workers: Sequence[Held], *, now: float,
           remaining: Mapping[str, float],
           switch_cost: Mapping[str | None, float] | None = None
           ) -> list[tuple[int, int, str]]:
    """``(idle worker id, worker id, task id)``: queued tasks to take back from their worker's
    actor and run on an idle worker instead, decided *before* :func:`assign` gives the idle
    workers ready tasks.

    A worker with nothing running and nothing queued takes the best queued task of its pool
    (the one whose model it holds warm, unless another waits on a path longer by more than
    the switch cost) when that task goes before every ready task left for it: a task queued
    behind a shot that runs longer than estimated would otherwise wait while a worker starts
    something less urgent. Idle workers are taken in order, each consuming the best ready
    task it does not steal for. The driver keeps a worker idle while its steal is answered."""
    switch_cost = switch_cost or {}
    taken: set[str] = set()
    out: list[tuple[int, int, str]] = []
    for members, queued, waiting in _by_pool(ready, workers, now):
        left = sorted(waiting, key=_order)
        for w in members:
            if w.running or w.queued:
                continue
            options = [(x, q) for x, q in queued if x.id != w.id and q.task not in taken]
            if not options:
                break
            best = min(options, key=lambda xq: (xq[1].priority, xq[1].task))
            own = [xq for xq in options if w.warm is not None and xq[1].model == w.warm]
            if own and best[1].model != w.warm:
                mine = min(own, key=lambda xq: (xq[1].priority, xq[1].task))
                cost = switch_cost.get(best[1].model, DEFAULT_SWITCH_COST_S)
                if remaining.get(best[1].task, 0.0) - remaining.get(mine[1].task, 0.0) < cost:
                    best = mine
            mine_ready = next((r for r in left if r.avoid != w.id), None)
            if mine_ready is not None and mine_ready.priority[:2] <= best[1].priority[:2]:
                left.remove(mine_ready)  # assign gives it this one
                continue
            taken.add(best[1].task)
            out.append((w.id, best[0].id, best[1].task))
    return out


def preempts(ready: Iterable[Ready], workers: Sequence[Held], *, now: float,
             remaining: Mapping[str, float],
             switch_cost: Mapping[str | None, float] | None = None) -> list[tuple[int, str]]:
    """``(worker id, task id)`` of queued tasks to take back from their worker's actor, after
    :func:`assign` has filled every free place (``ready``: the tasks it left).

    A ready task that found every queue of its pool full takes the place of a queued task on
    a shorter path (a task on the critical path does not wait behind one that is not; by more
    than the switch cost when it needs another model): the one on the worker whose running
    task should end first, so that it starts as soon as a worker frees. Ready tasks go in
    dispatch order; back-off is respected as in :func:`assign`. A queued task is named at
    most once; the driver requeues what the actor gives back (a task its actor has already
    started runs to its end)."""
    switch_cost = switch_cost or {}
    out: list[tuple[int, str]] = []
    for _members, queued, waiting in _by_pool(ready, workers, now):
        taken: set[str] = set()
        for r in sorted(waiting, key=_order):
            options = []
            for x, q in queued:
                if q.task in taken or r.priority[:2] >= q.priority[:2]:
                    continue
                # a task of another model takes the place only for a path longer by more
                # than the model switch costs (as a worker chooses between models in assign)
                gain = remaining.get(r.task, 0.0) - remaining.get(q.task, 0.0)
                if r.model != q.model and r.priority[0] == q.priority[0] and (
                        gain < switch_cost.get(r.model, DEFAULT_SWITCH_COST_S)):
                    continue
                options.append((x.free_at, q.priority, q.task, x.id))
            if not options:
                break
            _, _, task, wid = min(options, key=lambda o: (o[0], tuple(-v for v in o[1][:2])))
            taken.add(task)
            out.append((wid, task))
    return out


def _by_pool(ready: Iterable[Ready], workers: Sequence[Held], now: float
             ) -> Iterator[tuple[list[Held], list[tuple[Held, Queued]], list[Ready]]]:
    """Per pool with recallable queued tasks: its workers, those tasks (with their worker) and
    its ready tasks out of back-off."""
    pools: dict[Hashable, list[Held]] = defaultdict(list)
    for w in workers:
        pools[w.pool].append(w)
    waiting: dict[Hashable, list[Ready]] = defaultdict(list)
    for r in ready:
        if r.not_before <= now:
            waiting[r.pool].append(r)
    for pool, members in pools.items():
        queued = [(w, q) for w in members for q in w.queued if q.recallable]
        if queued:
            yield members, queued, waiting[pool]


def _order(r: Ready) -> tuple:
    return (r.priority, r.task)
