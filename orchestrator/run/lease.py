"""The farm's lease policy: which job each renderer actor works for. Pure functions over plain
data, no Ray and no clock (the farm passes what it knows and applies the result).

* A job's **effective priority** is its ``--priority`` (0-100) plus aging: points it earns
  while it waits with ready work and holds no worker of a pool (:data:`AGING_POINTS_PER_S`), so
  a low-priority job is never starved for ever.
* Per pool (actors of one backend and resource shape), jobs are served by tiers of effective
  priority, highest first; within a tier the pool is shared max-min fairly (every job gets an
  equal share, a job that needs less leaves the rest to the others).
* A job keeps the workers it holds until another job needs them: only then are workers held
  beyond a job's share **revoked**, lowest effective priority first, idle ones before busy ones
  (a busy one comes back at its task boundary). Workers nobody needs stay with their job.
* Free workers go to jobs below their share, a worker warm with a model a job has ready tasks
  for first (affinity across jobs); then free workers left over go to jobs with unfinished work,
  so that a job alone on the farm holds its whole pool as before.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

#: Priority points a job earns per second it waits with ready work and no worker: a job 80
#: points below another runs beside it after 8 minutes of waiting.
AGING_POINTS_PER_S = 1 / 6
DEFAULT_PRIORITY = 50


@dataclass(frozen=True)
class JobDemand:
    """What one job asks of the farm.

    ``want``: by pool, the workers it can use now (ready tasks plus tasks running on its
    workers); ``work``: by pool, its unfinished tasks (what it could use later); ``models``: by
    pool, ready tasks per model (for affinity); ``cap``: its ``--max-workers``; ``order``:
    when it joined (earlier first among equals); ``starved_s``: seconds it has waited with
    ready work and no worker."""

    job: str
    priority: int = DEFAULT_PRIORITY
    order: int = 0
    want: Mapping[Hashable, int] = field(default_factory=dict)
    work: Mapping[Hashable, int] = field(default_factory=dict)
    models: Mapping[Hashable, Mapping[str | None, int]] = field(default_factory=dict)
    cap: int | None = None
    starved_s: float = 0.0


@dataclass(frozen=True)
class FarmWorker:
    """A renderer actor that is up: its pool, the model it holds warm, the job it is leased to
    (None: free) and whether it is rendering."""

    id: int
    pool: Hashable
    warm: str | None = None
    lessee: str | None = None
    busy: bool = False
    returning: bool = False  # revoked already: its job gives it back at its task boundary


@dataclass(frozen=True)
class Decision:
    grants: dict[int, str]  # free worker -> the job it is leased to now
    revoke: frozenset[int]  # leased workers whose job gives them back at its next task boundary
    shares: dict[str, dict[Hashable, int]]  # each job's fair share of each pool


def effective_priority(job: JobDemand, aging_per_s: float = AGING_POINTS_PER_S) -> float:
    return job.priority + job.starved_s * aging_per_s


def tier(job: JobDemand, aging_per_s: float = AGING_POINTS_PER_S) -> int:
    return math.floor(effective_priority(job, aging_per_s))


def capped(job: JobDemand, counts: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """``counts`` with the job's ``--max-workers`` applied across pools (in pool order)."""
    left = job.cap if job.cap is not None else 1 << 30
    out = {}
    for pool in sorted(counts, key=repr):
        n = max(0, min(counts[pool], left))
        out[pool] = n
        left -= n
    return out


def shares(jobs: Sequence[JobDemand], sizes: Mapping[Hashable, int],
           held: Mapping[str, Mapping[Hashable, int]] | None = None,
           aging_per_s: float = AGING_POINTS_PER_S) -> dict[str, dict[Hashable, int]]:
    """Each job's share of each pool (``sizes``: workers by pool): tiers of effective priority,
    highest first; max-min fair within a tier (ties go to the job holding more, then to the
    earlier one, so shares do not move workers for nothing)."""
    held = held or {}
    wants = {j.job: capped(j, j.want) for j in jobs}
    out: dict[str, dict[Hashable, int]] = {j.job: {} for j in jobs}
    tiers: dict[int, list[JobDemand]] = defaultdict(list)
    for j in jobs:
        tiers[tier(j, aging_per_s)].append(j)
    for pool, size in sizes.items():
        left = size
        for t in sorted(tiers, reverse=True):
            members = tiers[t]
            alloc = dict.fromkeys((j.job for j in members), 0)
            while left > 0:
                open_ = [j for j in members if alloc[j.job] < wants[j.job].get(pool, 0)]
                if not open_:
                    break
                j = min(open_, key=lambda j: (alloc[j.job], -held.get(j.job, {}).get(pool, 0),
                                              j.order, j.job))
                alloc[j.job] += 1
                left -= 1
            for job, n in alloc.items():
                out[job][pool] = n
    return out


def decide(jobs: Sequence[JobDemand], workers: Sequence[FarmWorker],
           aging_per_s: float = AGING_POINTS_PER_S) -> Decision:
    """Grants of free workers and revocations of leased ones (see the module's rules)."""
    by_job = {j.job: j for j in jobs}
    sizes: dict[Hashable, int] = defaultdict(int)
    held: dict[str, dict[Hashable, int]] = defaultdict(lambda: defaultdict(int))
    for w in workers:
        sizes[w.pool] += 1
        if w.lessee in by_job:
            held[w.lessee][w.pool] += 1
    share = shares(jobs, sizes, held, aging_per_s)
    rank = sorted(jobs, key=lambda j: (-effective_priority(j, aging_per_s), j.order, j.job))
    grants: dict[int, str] = {}
    revoke: set[int] = set()
    for pool in sizes:
        in_pool = [w for w in workers if w.pool == pool]
        free = [w for w in in_pool if w.lessee is None or w.lessee not in by_job]
        deficit = {j.job: share[j.job].get(pool, 0) - held[j.job][pool] for j in rank}
        # 1. free workers to jobs below their share, warm models first
        _grant(free, [j for j in rank if deficit[j.job] > 0], deficit, pool, grants)
        # 2. what is still missing is taken back from jobs above their share
        missing = sum(max(0, d) for d in deficit.values())
        missing -= sum(1 for w in in_pool if w.returning and w.lessee in by_job)
        for j in reversed(rank):  # lowest effective priority gives back first
            if missing <= 0:
                break
            mine = [w for w in in_pool if w.lessee == j.job and not w.returning]
            excess = -deficit[j.job] - (held[j.job][pool] - len(mine))
            if excess <= 0:
                continue
            ready_models = j.models.get(pool, {})
            mine.sort(key=lambda w, m=ready_models: (w.busy, m.get(w.warm, 0) > 0, -w.id))
            for w in mine[:min(excess, missing)]:
                revoke.add(w.id)
                missing -= 1
        # 3. free workers left over: to jobs with unfinished work, up to it
        granted = defaultdict(int)
        for w in in_pool:
            if w.id in grants:
                granted[grants[w.id]] += 1
        extra = {j.job: capped(j, j.work).get(pool, 0) - held[j.job][pool] - granted[j.job]
                 for j in rank}
        _grant(free, [j for j in rank if extra[j.job] > 0], extra, pool, grants)
    return Decision(grants, frozenset(revoke), share)


def _grant(free: list[FarmWorker], jobs: list[JobDemand], need: dict[str, int], pool: Hashable,
           grants: dict[int, str]) -> None:
    """Hand ``free`` workers (taken out of the list) to ``jobs``, up to ``need`` each (counted
    down): first every job's workers warm with a model it has ready tasks for, then workers
    that hold no model, then any; within a rule, jobs in the given order."""
    for rule in ("warm", "cold", "any"):
        for j in jobs:
            models = j.models.get(pool, {})
            for w in list(free):
                if need[j.job] <= 0:
                    break
                if rule == "warm" and not (w.warm is not None and models.get(w.warm, 0) > 0):
                    continue
                if rule == "cold" and w.warm is not None:
                    continue
                free.remove(w)
                grants[w.id] = j.job
                need[j.job] -= 1
