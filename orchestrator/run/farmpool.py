"""A job's renderer actors when they are leased from the cluster's farm (:mod:`.farm`).

:class:`FarmPool` is a :class:`~.pool.WorkerPool` whose actors the farm makes and lends: the
driver renders on them directly, as on actors of its own, and syncs with the farm (one actor
call, at most every :data:`SYNC_EVERY_S` and at once when it has something to give back):
what it needs by pool and model, which of its actors are busy, which it gives back or lost.
The reply brings new leases and revocations; a revoked actor is given back when its task ends.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.backends import get_backend
from actors.renderer import BackendPayload

from . import farm as farm_mod
from .pool import Pool, Worker, WorkerPool, WorkerStartError

if TYPE_CHECKING:
    from ..plan.models import RenderTask
    from ..store.base import BlobRef

SYNC_EVERY_S = 0.2
SYNC_STARTING_S = 0.05
LEAVE_TIMEOUT_S = 10.0


class FarmPool(WorkerPool):
    def __init__(self, store_url: str, s3_endpoint: str | None, max_workers: int | None, *,
                 job: str, story: str, priority: int,
                 idle_timeout_s: float = farm_mod.DEFAULT_IDLE_TIMEOUT_S) -> None:
        super().__init__(store_url, s3_endpoint, max_workers)
        self.job, self.story, self.priority = job, story, priority
        self.idle_timeout_s = idle_timeout_s
        self.farm: Any = None
        self.sync_ref: Any = None
        self.last_sync = 0.0
        self.revoked: set[int] = set()
        self.lost: list[int] = []
        self.work: dict[tuple, int] = {}
        self.place = 0
        self.starting_in_farm = 0
        self._payloads: dict[int, BackendPayload] = {}
        self._awaited: str | None = None  # what the farm waits for from the autoscaler
        self._user = farm_mod.who()
        self._ray_job = ""

    # -- pools: one per backend object and resource shape ------------------------------------
    def pool_for(self, task: RenderTask) -> Pool:
        backend = get_backend(task.backend)
        res = backend.resources(task.renderer)
        payload = self._payloads.get(id(backend))
        if payload is None:
            payload = self._payloads[id(backend)] = BackendPayload.of(backend)
        key = (backend.name, res.shape(), hashlib.sha256(payload.data).hexdigest()[:16])
        if key not in self.pools:
            self.pools[key] = Pool(key, backend, res)
        self.pool_of[task.id] = key
        self.model_of[task.id] = backend.model_ref(task.renderer)
        return self.pools[key]

    def grow(self, work: dict[tuple, int]) -> None:
        """Actors are the farm's to start: remember the unfinished work for the next sync."""
        self.work = {k: n for k, n in work.items() if k is not None}

    def starting(self) -> list[Worker]:
        return []

    def usable(self) -> list[Worker]:
        """Not the revoked ones: they go back to the farm when their calls end."""
        return [w for w in super().usable() if w.id not in self.revoked]

    def _submit(self, w: Worker, task: RenderTask, condition: BlobRef | None,
                ticket: str) -> Any:
        """A farm's actor serves many jobs: each render names this job's store."""
        return w.handle.render.remote(task, condition, (self.store_url, self.s3_endpoint),
                                      ticket)

    def replace(self, w: Worker) -> None:
        """Kill a leased actor (it died, or its task timed out): the farm hears of it."""
        super().replace(w)
        self.lost.append(w.id)
        self.revoked.discard(w.id)

    # -- the farm ----------------------------------------------------------------------------
    def _farm(self) -> Any:
        if self.farm is None:
            import ray

            self.farm = farm_mod.get_farm(idle_timeout_s=self.idle_timeout_s)
            self._ray_job = ray.get_runtime_context().get_job_id()
        return self.farm

    def due(self, now: float) -> bool:
        if self.sync_ref is not None:
            return False
        # while the farm starts actors for this job, sync often: each is leased as it comes up
        every = SYNC_STARTING_S if self.starting_in_farm else SYNC_EVERY_S
        return now - self.last_sync >= every or any(
            w.task is None for w in self._returning())

    def _returning(self) -> list[Worker]:
        return [self.workers[i] for i in self.revoked if i in self.workers]

    def send(self, now: float, ready: Mapping[tuple, Mapping[str | None, int]]) -> Any:
        """Start a sync (``ready``: ready tasks by pool and model); returns its reference."""
        release = []
        for w in self._returning():
            if w.task is None:
                release.append((w.id, w.model))
                self.retired_switches += w.switches
                del self.workers[w.id]
                self.revoked.discard(w.id)
        busy: Counter = Counter()  # tasks sent to actors: as many workers could run them
        for w in self.workers.values():
            busy[w.pool] += len(w.calls)
        pools = set(ready) | set(self.work) | set(busy)
        report = {
            "priority": self.priority, "story": self.story, "user": self._user,
            "cap": self.max_workers, "idle_timeout_s": self.idle_timeout_s,
            "pools": {k: Pool(k, self._payloads[id(self.pools[k].backend)],
                              self.pools[k].resources) for k in pools if k in self.pools},
            "want": {k: sum(ready.get(k, {}).values()) + busy[k] for k in pools},
            "work": dict(self.work),
            "models": {k: dict(v) for k, v in ready.items()},
            "busy": [w.id for w in self.workers.values() if w.task is not None],
            "held": list(self.workers), "release": release, "lost": self.lost,
            "autoscaler": self.autoscaler,  # the farm asks it for nodes for every job's work
        }
        farm = self._farm()
        report["ray_job"] = self._ray_job
        self.lost = []
        self.last_sync = now
        self.sync_ref = farm.sync.remote(self.job, report)
        return self.sync_ref

    def synced(self, timeout: float | None = None) -> list[str]:
        """Apply the farm's reply to the sync in flight; returns notes to show. Raises
        :class:`WorkerStartError` when the farm cannot start actors for this job's pools."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        ref, self.sync_ref = self.sync_ref, None
        try:
            reply = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            return []
        except RayActorError:
            # The farm died, and its actors with it: the busy ones come back as lost; the
            # idle ones are gone. The next sync starts a new farm.
            self.farm = None
            for w in [w for w in self.workers.values() if w.task is None]:
                del self.workers[w.id]
            self.revoked.clear()
            return ["the farm actor died; its renderer actors with it: starting a new farm"]
        if reply.get("protocol") != farm_mod.PROTOCOL:
            raise WorkerStartError(
                f"the cluster's farm speaks protocol {reply.get('protocol')}, this reelfarm "
                f"{farm_mod.PROTOCOL}: run the same reelfarm version as the cluster")
        if reply["errors"]:
            raise WorkerStartError(reply["errors"][0])
        for g in reply["grant"]:
            if g["id"] not in self.workers:
                self.workers[g["id"]] = Worker(g["id"], g["pool"], g["handle"], None,
                                               ready=True, node=g["node"], model=g["model"])
        held = set(reply["held"])
        for w in list(self.workers.values()):  # not ours any more (the farm dropped the job)
            if w.id not in held:
                if w.task is None:
                    del self.workers[w.id]
                else:
                    self.revoked.add(w.id)
        self.revoked |= set(reply["revoke"]) & set(self.workers)
        self.place = reply["place"]
        self.starting_in_farm = reply.get("starting", 0)
        self._awaited = reply.get("waiting_for")
        return list(reply["notes"])

    def shutdown(self) -> None:
        """Give every lease back at once; actors still rendering (a cancelled job) are
        killed, the idle ones stay warm for the next job."""
        import ray

        release = [(w.id, w.model) for w in self.workers.values() if w.task is None]
        kill = [w.id for w in self.workers.values() if w.task is not None]
        for w in self.workers.values():
            self.retired_switches += w.switches
            if w.task is not None:
                with contextlib.suppress(Exception):
                    ray.kill(w.handle, no_restart=True)
        self.workers.clear()
        self.revoked.clear()
        if self.farm is not None:
            with contextlib.suppress(Exception):
                ray.get(self.farm.leave.remote(self.job, release, kill),
                        timeout=LEAVE_TIMEOUT_S)

    def waiting_for(self) -> str | None:
        """What the farm waits for from the autoscaler (it asks for every job's work)."""
        return self._awaited

    def withdraw(self) -> None:
        """The farm holds the cluster's request to the autoscaler, not this job."""

    def starving_notes(self, pools: list[Pool], waited_s: float) -> list[str]:
        where = (f"place {self.place} in the farm's line" if self.place
                 else "the farm is starting actors")
        return [f"waiting {waited_s:.0f}s for renderer actors ({p.label}): {where}"
                for p in pools]


__all__ = ["SYNC_EVERY_S", "FarmPool"]
