"""The farm: one named, detached Ray actor per cluster that owns the renderer actors and leases
them to jobs (``render``, ``submit`` and ``nightly`` drivers).

The farm starts actors (through :class:`~.pool.WorkerPool`, the one place actors are made) for
the work every job reports, keeps them warm between jobs, and decides with the pure policy in
:mod:`.lease` which job each actor works for. A job's driver calls its leased actors directly
(no hop through the farm per task) and syncs with the farm every few hundred milliseconds and
at state changes (:meth:`Farm.sync`): what it needs, what it gives back, what died. A revoked
actor comes back at its job's next task boundary.

* A job that leaves (finished, cancelled, SIGTERM) gives its actors back at once; the actors
  still rendering for it are killed (and replaced where work remains).
* A job whose driver is dead (its Ray job ended, or no sync for :data:`LEASE_TTL_S`) is
  dropped and its actors come back.
* An actor nobody has used for the idle timeout exits, so an autoscaler can scale down; an
  idle actor of a pool nobody needs exits at once when another pool's actors wait for room.
* Actors are made by the farm, so they die with it: when the farm dies, jobs lose their
  running tasks (requeued; every finished clip is in the store) and the next sync, or the next
  job, starts a new farm.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import lease
from .pool import Pool, WorkerPool, WorkerStartError

FARM_NAME = "reelfarm-farm"
NAMESPACE = "reelfarm"
#: Farm name from the environment (a test session, or two farms on one cluster).
FARM_ENV = "REELFARM_FARM"
DEFAULT_IDLE_TIMEOUT_S = 300.0
#: A driver that has not synced for this long is taken for dead and its leases come back.
LEASE_TTL_S = 60.0
HOUSEKEEPING_S = 0.25
GROW_EVERY_S = 0.5  # how often actors are started for the jobs' work (a call to the GCS)
DEAD_CHECK_S = 1.0  # how often the farm asks Ray which jobs' drivers have ended
#: Seconds an actor may wait for room before idle actors of pools nobody needs are stopped.
ROOM_WAIT_S = 1.0
#: Bumped when sync's messages or the renderer actors' calls change: a driver refuses a farm
#: of another (2: render calls carry a ticket, and actors answer recalls).
PROTOCOL = 2


def farm_name() -> str:
    return os.environ.get(FARM_ENV, "").strip() or FARM_NAME


def who() -> str:
    """``user@host``: who runs a job (the farm's queue and the run record say the same)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry for the uid (a container)
        user = os.environ.get("USER") or "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class _Job:
    job: str
    order: int
    priority: int
    user: str = ""
    story: str = ""
    ray_job: str = ""
    cap: int | None = None
    want: dict = field(default_factory=dict)
    work: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    busy: set = field(default_factory=set)
    seen: float = 0.0
    joined: float = 0.0
    starved_s: float = 0.0
    revoked: set = field(default_factory=set)
    errors: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    syncs: int = 0

    def demand(self) -> lease.JobDemand:
        return lease.JobDemand(self.job, self.priority, self.order, self.want, self.work,
                               self.models, self.cap, self.starved_s)


class Farm:
    """The farm actor (see the module). Threaded: :meth:`sync` and :meth:`status` run beside a
    housekeeping thread that brings started actors up, drops dead jobs and stops idle actors;
    one lock guards the state."""

    def __init__(self, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> None:
        self.pool = WorkerPool(None, None, None)  # type: ignore[arg-type]
        self.idle_timeout_s = idle_timeout_s
        self.jobs: dict[str, _Job] = {}
        self.lessee: dict[int, str] = {}
        self.free_since: dict[int, float] = {}
        self.started = time.time()
        self._order = itertools.count()
        self._lock = threading.RLock()
        self._last_decide = self._last_dead_check = self._last_grow = 0.0
        self._stop = False
        self._thread = threading.Thread(target=self._housekeeping, daemon=True,
                                        name="farm-housekeeping")
        self._thread.start()

    # -- the protocol ----------------------------------------------------------------------
    def sync(self, job: str, report: dict[str, Any]) -> dict[str, Any]:
        """A job's state, and what it gets back: ``grant`` (new leases: id, pool, handle, node,
        warm model), ``revoke`` (ids to give back at their task boundary), ``held`` (every id
        the farm counts as this job's), ``errors`` (pools whose actors cannot start),
        ``notes`` and ``place`` (the job's place in line, 0 when it has workers)."""
        now = time.monotonic()
        with self._lock:
            j = self.jobs.get(job)
            new_pools = j is None or not set(report.get("work", {})) <= set(j.work)
            if j is None:
                j = self.jobs[job] = _Job(job, next(self._order), int(report["priority"]),
                                          joined=now)
            j.priority = int(report["priority"])
            j.user, j.story = report.get("user", ""), report.get("story", "")
            j.ray_job, j.cap = report.get("ray_job", ""), report.get("cap")
            if report.get("idle_timeout_s"):
                self.idle_timeout_s = float(report["idle_timeout_s"])
            if report.get("autoscaler") is not None:  # what check_placeable found on the driver
                self.pool.autoscaler = report["autoscaler"]
            for key, pool in report.get("pools", {}).items():
                if key not in self.pool.pools:
                    self.pool.pools[key] = Pool(key, pool.backend, pool.resources)
            for wid, model in report.get("release", []):
                self._give_back(job, wid, model)
            for wid in report.get("lost", []):
                self._forget(wid)
            if j.seen:
                self._age(j, now)
            j.want, j.work = dict(report.get("want", {})), dict(report.get("work", {}))
            j.models = {k: dict(v) for k, v in report.get("models", {}).items()}
            j.busy = set(report.get("busy", ()))
            j.seen = now
            j.syncs += 1
            self._decide(now, grow=new_pools)
            grants = [self._lease_doc(w) for w in self.pool.workers.values()
                      if self.lessee.get(w.id) == job and w.id not in report.get("held", ())
                      and w.ready]
            for g in grants:
                self.free_since.pop(g["id"], None)
            errors, j.errors = j.errors, []
            notes, j.notes = j.notes, []
            held = sorted(w for w, owner in self.lessee.items() if owner == job)
            mine = set(j.work) | set(j.want)
            starting = sum(1 for w in self.pool.starting() if w.pool in mine)
            return {"starting": starting, "grant": grants, "held": held,
                    "revoke": sorted(j.revoked & set(held)), "errors": errors,
                    "notes": notes, "place": self._place(job), "protocol": PROTOCOL,
                    "waiting_for": self.pool.waiting_for()}

    def leave(self, job: str, release: list[tuple[int, str | None]] = (),
              kill: list[int] = ()) -> None:
        """A job ends: ``release`` (idle actors, with their warm model) go back to the farm,
        ``kill`` (actors still rendering for it, the job being cancelled) are stopped; every
        other lease it had is given back too."""
        with self._lock:
            for wid in kill:
                w = self.pool.workers.get(wid)
                if w is not None:
                    self.pool.replace(w)
                self._forget(wid)
            for wid, model in release:
                self._give_back(job, wid, model)
            self._drop(job)
            # at once: the autoscaler's request follows the work that is left (none: withdrawn)
            self._decide(time.monotonic(), grow=True)

    def status(self) -> dict[str, Any]:
        """The queue: jobs (priority, effective priority, place in line, leases), and every
        actor (pool, node, warm model, lessee)."""
        with self._lock:
            now = time.monotonic()
            jobs = []
            for j in sorted(self.jobs.values(), key=lambda j: j.order):
                held = sum(1 for owner in self.lessee.values() if owner == j.job)
                jobs.append({
                    "job": j.job, "story": j.story, "user": j.user, "priority": j.priority,
                    "effective_priority": round(lease.effective_priority(j.demand()), 2),
                    "place": self._place(j.job), "leases": held,
                    "returning": len(j.revoked), "syncs": j.syncs,
                    "busy": len(j.busy), "want": sum(j.want.values()),
                    "unfinished": sum(j.work.values()),
                    "waiting_s": round(j.starved_s, 1), "age_s": round(now - j.joined, 1),
                })
            workers = []
            for w in sorted(self.pool.workers.values(), key=lambda w: w.id):
                owner = self.lessee.get(w.id)
                state = ("starting" if not w.ready else
                         "busy" if owner and w.id in self.jobs[owner].busy else
                         "leased" if owner else "idle")
                workers.append({
                    "id": w.id, "pool": self.pool.pools[w.pool].label, "node": w.node,
                    "model": w.model, "job": owner, "state": state,
                    "idle_s": (round(now - self.free_since[w.id], 1)
                               if w.id in self.free_since and not owner else None),
                })
            return {"farm": farm_name(), "protocol": PROTOCOL,
                    "idle_timeout_s": self.idle_timeout_s,
                    "up_s": round(time.time() - self.started, 1),
                    "jobs": jobs, "workers": workers}

    # -- housekeeping ----------------------------------------------------------------------
    def _housekeeping(self) -> None:
        while not self._stop:
            try:
                self._housekeep()
            except Exception:  # noqa: BLE001 - a failed pass is retried on the next
                time.sleep(HOUSEKEEPING_S)

    def _housekeep(self) -> None:
        """One pass: wait (up to :data:`HOUSEKEEPING_S`) for starting actors, lease each one
        that came up at once (its job's next sync brings it), drop dead jobs, stop idle
        actors."""
        import ray

        with self._lock:
            starting = {w.ready_ref: w for w in self.pool.starting()}
        if starting:
            done, rest = ray.wait(list(starting), num_returns=1, timeout=HOUSEKEEPING_S)
            if done and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                done += more
        else:
            time.sleep(HOUSEKEEPING_S)
            done = []
        now = time.monotonic()
        with self._lock:
            for ref in done:
                self._came_up(starting[ref], now)
            self._drop_dead(now)
            self._stop_idle(now)
            if done or now - self._last_decide > 1.0:
                self._decide(now)

    def _came_up(self, w, now: float) -> None:
        try:
            up = self.pool.came_up(w)
        except WorkerStartError as err:
            self._fail_pool(w.pool, str(err))
            return
        finally:
            notes, self.pool.notes = self.pool.notes, []
            for j in self.jobs.values():
                if j.want.get(w.pool) or j.work.get(w.pool):
                    j.notes.extend(notes)
        if up:
            self.free_since[w.id] = now

    def _fail_pool(self, key, message: str) -> None:
        """Actors of a pool cannot start: every job that needs it hears so (and fails); the
        pool starts afresh for the next job."""
        for j in self.jobs.values():
            if j.want.get(key) or j.work.get(key):
                j.errors.append(message)
        for w in [w for w in self.pool.workers.values() if w.pool == key]:
            self.pool.replace(w)
            self._forget(w.id)
        self.pool.pools.pop(key, None)

    def _drop_dead(self, now: float) -> None:
        dead = {j.job for j in self.jobs.values() if now - j.seen > LEASE_TTL_S}
        if now - self._last_dead_check >= DEAD_CHECK_S:
            self._last_dead_check = now
            ended = _ended_ray_jobs({j.ray_job for j in self.jobs.values() if j.ray_job})
            dead |= {j.job for j in self.jobs.values() if j.ray_job in ended}
        for job in dead:
            j = self.jobs[job]
            for wid in [w for w, owner in self.lessee.items() if owner == job]:
                w = self.pool.workers.get(wid)
                if w is not None and wid in j.busy:
                    self.pool.replace(w)  # rendering for nobody
                    self._forget(wid)
            self._drop(job)

    def _stop_idle(self, now: float) -> None:
        demand = {k for j in self.jobs.values() for d in (j.work, j.want) for k, n in d.items()
                  if n}
        waiting = any(w.ready_ref is not None and not w.ready and now - w.since > ROOM_WAIT_S
                      for w in self.pool.starting() if hasattr(w, "since"))
        for w in list(self.pool.workers.values()):
            if not w.ready or w.id in self.lessee:
                continue
            idle = now - self.free_since.get(w.id, now)
            if idle > self.idle_timeout_s or (waiting and w.pool not in demand):
                self.pool.replace(w)
                self._forget(w.id)

    # -- decisions -------------------------------------------------------------------------
    def _decide(self, now: float, *, grow: bool = False) -> None:
        self._last_decide = now
        if grow or now - self._last_grow >= GROW_EVERY_S:
            self._last_grow = now
            self._grow()
        workers = [lease.FarmWorker(w.id, w.pool, w.model, self.lessee.get(w.id),
                                    busy=self._busy(w.id),
                                    returning=self._returning(w.id))
                   for w in self.pool.workers.values() if w.ready]
        d = lease.decide([j.demand() for j in self.jobs.values()], workers)
        for wid, job in d.grants.items():
            self.lessee[wid] = job
            self.free_since.pop(wid, None)
        for wid in d.revoke:
            self.jobs[self.lessee[wid]].revoked.add(wid)

    def _grow(self) -> None:
        work: Counter = Counter()
        for j in self.jobs.values():
            for k, n in lease.capped(j.demand(), j.work).items():
                work[k] += n
        before = set(self.pool.workers)
        try:
            self.pool.grow(work)
        except WorkerStartError as err:
            for key, pool in list(self.pool.pools.items()):
                if pool.closed and work.get(key):
                    self._fail_pool(key, str(err))
        now = time.monotonic()
        for wid in set(self.pool.workers) - before:
            self.pool.workers[wid].since = now

    def _busy(self, wid: int) -> bool:
        owner = self.lessee.get(wid)
        return owner is not None and wid in self.jobs[owner].busy

    def _returning(self, wid: int) -> bool:
        owner = self.lessee.get(wid)
        return owner is not None and wid in self.jobs[owner].revoked

    def _age(self, j: _Job, now: float) -> None:
        """Waiting with ready work and no worker earns a job aging points."""
        held = any(owner == j.job for owner in self.lessee.values())
        if any(j.want.values()) and not held:
            j.starved_s += now - j.seen

    def _place(self, job: str) -> int:
        """0 for a job holding workers or with nothing to run; else its place among the jobs
        waiting for a worker, by effective priority (1 = next)."""
        waiting = [j for j in self.jobs.values() if any(j.want.values())
                   and not any(owner == j.job for owner in self.lessee.values())]
        waiting.sort(key=lambda j: (-lease.effective_priority(j.demand()), j.order))
        for i, j in enumerate(waiting, 1):
            if j.job == job:
                return i
        return 0

    # -- leases ----------------------------------------------------------------------------
    def _lease_doc(self, w) -> dict[str, Any]:
        return {"id": w.id, "pool": w.pool, "handle": w.handle, "node": w.node,
                "model": w.model}

    def _give_back(self, job: str, wid: int, model: str | None) -> None:
        w = self.pool.workers.get(wid)
        if self.lessee.get(wid) == job:
            del self.lessee[wid]
        j = self.jobs.get(job)
        if j is not None:
            j.revoked.discard(wid)
            j.busy.discard(wid)
        if w is not None:
            if model is not None:
                w.model = model
            self.free_since[wid] = time.monotonic()

    def _forget(self, wid: int) -> None:
        w = self.pool.workers.pop(wid, None)
        if w is not None:
            self.pool.retired_switches += w.switches
        owner = self.lessee.pop(wid, None)
        if owner in self.jobs:
            self.jobs[owner].revoked.discard(wid)
            self.jobs[owner].busy.discard(wid)
        self.free_since.pop(wid, None)

    def _drop(self, job: str) -> None:
        for wid in [w for w, owner in self.lessee.items() if owner == job]:
            del self.lessee[wid]
            self.free_since[wid] = time.monotonic()
        self.jobs.pop(job, None)


def _ended_ray_jobs(ids: set[str]) -> set[str]:
    """Which of these Ray job ids (hex) have ended (their driver exited or died)."""
    if not ids:
        return set()
    try:
        from ray._private.state import state

        table = state.job_table()
    except Exception:  # noqa: BLE001 - the TTL still drops them
        return set()
    return {j["JobID"] for j in table if j.get("IsDead") and j.get("JobID") in ids}


# -- the actor, from a driver ---------------------------------------------------------------
def get_farm(*, create: bool = True, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> Any:
    """The cluster's farm actor (created when there is none and ``create``), or None."""
    import ray

    name = farm_name()
    if not create:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return None
    return (ray.remote(Farm)
            .options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                     num_cpus=0, max_concurrency=8, max_restarts=0)
            .remote(idle_timeout_s))


def kill_farm() -> bool:
    """Stop the farm (and with it its actors); False when there was none."""
    import ray

    farm = get_farm(create=False)
    if farm is None:
        return False
    with contextlib.suppress(Exception):
        ray.kill(farm, no_restart=True)
    return True


__all__ = ["FARM_NAME", "NAMESPACE", "Farm", "farm_name", "get_farm", "kill_farm", "who"]
