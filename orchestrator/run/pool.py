"""The worker pool: every Ray call for renderer actors. Placement, capacity, start-up,
replacement, dispatch, and Ray's exceptions turned into typed completions.

Actors are grouped in *pools* by backend and resource shape (one actor per slot a node
offers); a pool grows while it has work, up to what the cluster offers and ``max_workers``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.backends import Backend, Resources, get_backend

from ..store.base import ActionRecord, CorruptBlob
from . import capacity

if TYPE_CHECKING:
    from ..plan.models import RenderTask
    from ..store.base import BlobRef

MAX_START_FAILURES = 5  # actors of a pool failing to start before any came up
MAX_POOL_START_FAILURES = 20  # failed starts of a pool in all: then no more actors for it


class WorkerStartError(Exception):
    """Renderer actors keep failing to start (a broken worker environment, a backend that
    cannot be imported there): nothing could ever render."""


class Unplaceable(Exception):
    """Some tasks ask for resources that no node of the cluster has (nor any node type its
    autoscaler can launch)."""


class CapacityTimeout(Exception):
    """Ready work waited longer than ``--capacity-timeout`` for the autoscaler's nodes."""


@dataclass
class Call:
    """One render sent to a worker's actor: its task, the call's reference and ticket (named
    in a recall), and the worker's warm model before it (restored when it is recalled)."""

    task: str
    ref: Any
    ticket: str
    model_before: str | None = None
    switched: bool = False
    recalling: Any = None  # the recall's reference while one is asked
    started: bool = False  # the driver counts it as running (it is, or was, the first)


@dataclass
class Worker:
    """A renderer actor. ``calls``: the renders sent to it, in order; the first runs, the
    others wait on the actor (pipelined dispatch), each starting when the one before ends."""

    id: int
    pool: tuple
    handle: Any
    ready_ref: Any
    ready: bool = False
    node: str = "?"
    model: str | None = None  # warm after its last call
    calls: list[Call] = field(default_factory=list)
    switches: int = 0
    rendered: int = 0

    @property
    def task(self) -> str | None:
        """The running task's id (the first call's), or None when the worker is free."""
        return self.calls[0].task if self.calls else None

    @property
    def ref(self) -> Any:
        return self.calls[0].ref if self.calls else None


@dataclass
class Pool:
    key: tuple
    backend: Backend
    resources: Resources
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


# -- what a finished render turned out to be -------------------------------------------------
@dataclass(frozen=True)
class Rendered:
    record: ActionRecord


@dataclass(frozen=True)
class Lost:
    """The actor or its node died (not the task's fault)."""


@dataclass(frozen=True)
class Corrupt:
    digest: str


@dataclass(frozen=True)
class Recalled:
    """A queued call that its actor gave back unstarted (:meth:`WorkerPool.recall`)."""


@dataclass(frozen=True)
class Raised:
    error: str  # one line
    log: str | None = None  # sha256 of the shot's log blob, when the actor stored one
    traceback: str | None = None  # the full traceback, as text


Completion = Rendered | Lost | Corrupt | Raised | Recalled


class WorkerPool:
    def __init__(self, store_url: str, s3_endpoint: str | None, max_workers: int | None) -> None:
        self.store_url = store_url
        self.s3_endpoint = s3_endpoint
        self.max_workers = max_workers
        self.workers: dict[int, Worker] = {}
        self.pools: dict[tuple, Pool] = {}
        self.pool_of: dict[str, tuple] = {}
        self.model_of: dict[str, str | None] = {}
        self.retired_switches = 0
        self._wid = itertools.count(1)
        self._ticket = itertools.count(1)
        self.job = ""  # names this driver's calls (tickets) on actors shared with other jobs
        self.notes: list[str] = []  # for the driver to show (a pool that stopped growing)
        # -- autoscale: the cluster's autoscaler (capacity.py), read by check_placeable; None
        # where there is none, and then nothing below changes today's behaviour.
        self.autoscaler: capacity.Autoscaler | None = None
        self.demand = capacity.Demand()  # the bundles asked of the autoscaler
        self.awaited: list[dict[str, float]] = []  # asked for, and not on a live node yet

    # -- pools -----------------------------------------------------------------------------
    def pool_for(self, task: RenderTask) -> Pool:
        backend = get_backend(task.backend)
        res = backend.resources(task.renderer)
        key = (backend.name, res.shape())
        if key not in self.pools:
            self.pools[key] = Pool(key, backend, res)
        self.pool_of[task.id] = key
        self.model_of[task.id] = backend.model_ref(task.renderer)
        return self.pools[key]

    def nodes(self) -> list[dict[str, float]]:
        import ray

        return [n["Resources"] for n in ray.nodes() if n.get("Alive")]

    def check_placeable(self, tasks: Iterable[RenderTask]) -> None:
        todo = list(tasks)
        if not todo:
            return
        nodes = self.nodes()
        self.autoscaler = capacity.discover()  # autoscale
        problems = []
        for key in {self.pool_for(t).key for t in todo}:
            need = needs(self.pools[key].resources)
            if not any(all(n.get(k, 0.0) >= v for k, v in need.items()) for n in nodes):
                if self._launchable(need):  # autoscale: a node type it can launch fits
                    continue
                shots = sorted({t.shot for t in todo if self.pool_of[t.id] == key})
                offer = "; ".join(describe(n) for n in nodes) or "no live nodes"
                problems.append(
                    f"no node can run {len(shots)} shot(s) ({', '.join(shots[:5])}"
                    f"{', ...' if len(shots) > 5 else ''}): they need {describe(need)}; "
                    f"the cluster's nodes offer: {offer}{self._types_offer()}"
                )
        if problems:
            raise Unplaceable("\n".join(problems))

    # -- autoscale (capacity.py) -----------------------------------------------------------
    def _launchable(self, need: dict[str, float]) -> bool:
        """Whether the autoscaler could add a node for ``need`` (yes when its node types are
        unknown: only the wait, bounded by --capacity-timeout, can tell)."""
        a = self.autoscaler
        if a is None:
            return False
        return a.node_types is None or bool(capacity.launchable_for(need, a.node_types))

    def _types_offer(self) -> str:
        a = self.autoscaler
        if a is None or a.node_types is None:
            return ""
        types = "; ".join(t.text() for t in a.node_types) or "none"
        return f"; nor does any node type the autoscaler can launch: {types}"

    def _ask_autoscaler(self, work: dict[tuple, int]) -> None:
        """Ask the autoscaler for one bundle per actor the work wants (capped by
        ``max_workers``) once live nodes cannot hold them all; keep the request in step with
        the work from then on, and withdraw it when no work is left."""
        if self.autoscaler is None:
            return
        wants = [(needs(p.resources), work.get(p.key, 0)) for p in self.pools.values()
                 if not p.closed]
        wanted = capacity.bundles(wants, self.max_workers)
        self.awaited = capacity.shortfall(wanted, self.nodes())
        try:
            if not wanted:
                self.demand.withdraw()
            elif self.awaited or self.demand.sent:
                self.demand.request(wanted)
        except Exception as err:  # noqa: BLE001 - asked again at the next grow; the wait is
            # bounded by --capacity-timeout either way
            note = f"could not ask the autoscaler for nodes: {one_line(err)}"
            if note not in self.notes:
                self.notes.append(note)

    def waiting_for(self) -> str | None:
        """``4 × {GPU: 1} from the autoscaler``, or ``None`` when nothing is awaited."""
        if not self.awaited:
            return None
        return f"{capacity.awaited_text(self.awaited)} from the autoscaler"

    def stuck(self, waiting: set) -> list[Pool]:
        """Pools among ``waiting`` (pools with ready work) with no actor at all and no live
        node that could hold one: only the autoscaler can get them going."""
        have = {w.pool for w in self.workers.values()}
        return [p for p in self.pools.values()
                if p.key in waiting and p.key not in have and self.capacity(p) == 0]

    def withdraw(self) -> None:
        """Withdraw the request to the autoscaler, so the cluster can scale back down."""
        with contextlib.suppress(Exception):  # Ray already gone: so is the request's owner
            self.demand.withdraw()
        self.awaited = []

    # -- capacity ----------------------------------------------------------------------------
    def capacity(self, pool: Pool) -> int:
        need = needs(pool.resources)
        return sum(
            min((math.floor(n.get(k, 0.0) / v) for k, v in need.items() if v > 0), default=1)
            for n in self.nodes()
        )

    def grow(self, work: dict[tuple, int]) -> None:
        """Start actors for pools with work (``work``: unfinished tasks by pool), up to what
        the cluster offers now and ``max_workers``."""
        cap_total = self.max_workers or 1 << 30
        for pool in self.pools.values():
            if pool.closed:
                if not any(w.pool == pool.key for w in self.workers.values()) and work.get(
                        pool.key, 0):
                    raise WorkerStartError(
                        f"renderer actors ({pool.label}) failed to start {pool.failed_starts} "
                        "times and none is left to finish the work")
                continue
            have = sum(1 for w in self.workers.values() if w.pool == pool.key)
            want = min(self.capacity(pool), work.get(pool.key, 0), cap_total - len(self.workers))
            for _ in range(max(0, want - have)):
                opts = pool.resources.ray_options()
                handle = (
                    _remote_renderer()
                    .options(max_restarts=0, max_task_retries=0, max_concurrency=1, **opts)
                    .remote(self.store_url, self.s3_endpoint, pool.backend)
                )
                wid = next(self._wid)
                self.workers[wid] = Worker(wid, pool.key, handle, handle.info.remote())
        self._ask_autoscaler(work)  # autoscale

    # -- workers ---------------------------------------------------------------------------
    def starting(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.ready]

    def usable(self) -> list[Worker]:
        """Workers that may be sent tasks (ready ones)."""
        return [w for w in self.workers.values() if w.ready]

    def idle(self) -> list[Worker]:
        return [w for w in self.usable() if not w.calls]

    def busy(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.calls]

    def came_up(self, w: Worker) -> bool:
        """A worker's start-up finished: True when it is ready; False when it failed and was
        replaced. Raises :class:`WorkerStartError` when a pool's actors keep failing before
        any came up, or when a pool that stopped growing (:data:`MAX_POOL_START_FAILURES`
        failed starts, say on a node without the backend's extra) has no actor left."""
        import ray

        try:
            info = ray.get(w.ready_ref)
        except Exception as err:  # noqa: BLE001 - an actor that cannot start is replaced
            self.replace(w)
            pool = self.pools[w.pool]
            pool.failed_starts += 1
            cause = getattr(err, "cause", None) or err
            if pool.started == 0:
                pool.start_failures += 1
                if pool.start_failures >= MAX_START_FAILURES:
                    raise WorkerStartError(
                        f"renderer actors ({pool.label}) failed to start "
                        f"{pool.start_failures} times; last error: {one_line(cause)}"
                    ) from None
            elif pool.failed_starts >= MAX_POOL_START_FAILURES and not pool.closed:
                # Some node cannot run this pool's actors: stop starting new ones; the actors
                # that are up finish the work.
                pool.closed = True
                self.notes.append(
                    f"renderer actors ({pool.label}) failed to start {pool.failed_starts} "
                    f"times; no more are started, the {self._ready_in(pool)} running finish "
                    f"the work; last error: {one_line(cause)}")
            if pool.closed and self._ready_in(pool) == 0:
                raise WorkerStartError(
                    f"renderer actors ({pool.label}) failed to start {pool.failed_starts} "
                    f"times and none is left; last error: {one_line(cause)}") from None
            return False
        self.pools[w.pool].started += 1
        w.ready, w.node = True, info["node"]
        return True

    def _ready_in(self, pool: Pool) -> int:
        return sum(1 for w in self.workers.values() if w.pool == pool.key and w.ready)

    def render(self, w: Worker, task: RenderTask, condition: BlobRef | None) -> Call:
        """Send ``task`` to ``w``'s actor, behind the calls it has; returns the call."""
        model = self.model_of[task.id]
        call = Call(task.id, None, f"{self.job}:{next(self._ticket)}", model_before=w.model)
        if model is not None and w.model is not None and model != w.model:
            w.switches += 1
            call.switched = True
        w.model = model if model is not None else w.model
        call.ref = self._submit(w, task, condition, call.ticket)
        w.calls.append(call)
        return call

    def _submit(self, w: Worker, task: RenderTask, condition: BlobRef | None,
                ticket: str) -> Any:
        """The actor call that renders ``task`` on ``w``; its reference."""
        return w.handle.render.remote(task, condition, None, ticket)

    def recall(self, w: Worker, call: Call) -> Any:
        """Ask ``w``'s actor to give ``call`` back unstarted; returns the reference of its
        answer (True: it will not run; False: it has started)."""
        from actors.renderer import CONTROL

        call.recalling = w.handle.recall.options(concurrency_group=CONTROL).remote(call.ticket)
        return call.recalling

    def recalled(self, w: Worker, call: Call) -> bool:
        """Apply a recall's answer: True when the call was given back (it is dropped from the
        worker, whose warm model is what it was before the call when it was the last)."""
        import ray

        ref, call.recalling = call.recalling, None
        try:
            given_back = bool(ray.get(ref))
        except Exception:  # noqa: BLE001 - the actor died: its calls come back as lost
            return False
        if given_back:
            self.drop(w, call)
        return given_back

    def drop(self, w: Worker, call: Call) -> None:
        """Forget a call its actor gave back."""
        if call not in w.calls:
            return
        if w.calls[-1] is call:
            w.model = call.model_before
            w.switches -= call.switched
        w.calls.remove(call)

    def collect(self, w: Worker, call: Call) -> Completion:
        """The outcome of a finished call (the worker's first, or one its actor gave back);
        the call is done (or the worker replaced, when it died)."""
        import ray
        from ray.exceptions import ActorDiedError, RayActorError, WorkerCrashedError

        try:
            rec: ActionRecord | None = ray.get(call.ref)
        except Exception as err:  # noqa: BLE001 - classified below
            cause = getattr(err, "cause", None) or err
            dead = (RayActorError, ActorDiedError, WorkerCrashedError)
            if isinstance(err, dead) or isinstance(cause, dead):
                self.replace(w)
                return Lost()
            w.calls.remove(call)
            if isinstance(cause, CorruptBlob):
                return Corrupt(cause.digest)
            # a render that raised (actors.renderer.ShotFailed) names its log and traceback
            return Raised(getattr(cause, "summary", None) or one_line(cause),
                          log=getattr(cause, "log", None),
                          traceback=getattr(cause, "traceback", None))
        if rec is None:  # given back unstarted (recalled)
            self.drop(w, call)
            return Recalled()
        w.calls.remove(call)
        w.rendered += 1
        return Rendered(rec)

    def replace(self, w: Worker) -> None:
        """Kill a worker; :meth:`grow` starts another where work remains."""
        _kill(w.handle)
        self.workers.pop(w.id, None)
        self.retired_switches += w.switches

    def shutdown(self) -> None:
        for w in list(self.workers.values()):
            self.retired_switches += w.switches
            _kill(w.handle)
        self.workers.clear()
        self.withdraw()  # autoscale

    def starving(self, waiting: set) -> list[Pool]:
        """The pools among ``waiting`` (pools with ready work) that have no ready actor."""
        up = {w.pool for w in self.workers.values() if w.ready}
        return [p for p in self.pools.values() if p.key not in up and p.key in waiting]

    def starving_notes(self, pools: list[Pool], waited_s: float) -> list[str]:
        pending = len(self.starting())
        offer = "; ".join(describe(n) for n in self.nodes())
        return [f"waiting {waited_s:.0f}s for Ray to start renderer actors ({p.label}; "
                f"{pending} pending); the cluster offers: {offer}" for p in pools]

    def model_switches(self) -> int:
        return sum(w.switches for w in self.workers.values()) + self.retired_switches


_REMOTE_RENDERER: Any = None


def _remote_renderer() -> Any:
    """The renderer actor class, made remote once per process (each ``ray.remote`` exports
    the class to the cluster again)."""
    global _REMOTE_RENDERER
    if _REMOTE_RENDERER is None:
        import ray

        from actors.renderer import ACTOR_OPTIONS, ShotRenderer

        _REMOTE_RENDERER = ray.remote(**ACTOR_OPTIONS)(ShotRenderer)
    return _REMOTE_RENDERER


def _kill(handle: Any) -> None:
    import ray

    # already dead, or its creation was cancelled: either way it is gone
    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)


def needs(r: Resources) -> dict[str, float]:
    need = {"CPU": r.num_cpus, "GPU": r.num_gpus, **r.custom}
    if r.memory_gb:
        need["memory"] = r.memory_gb * 1024**3
    return {k: v for k, v in need.items() if v > 0}


def describe(res: dict[str, float]) -> str:
    parts = []
    for k, v in sorted(res.items()):
        if k.startswith("node:") or k.startswith("object_store") or k == "memory":
            continue
        parts.append(f"{k}={v:g}")
    return "{" + ", ".join(parts) + "}"


def one_line(err: BaseException) -> str:
    """``Type: last line of the message``, at most 500 characters."""
    text = str(err).strip().splitlines()
    msg = text[-1] if text else ""
    return f"{type(err).__name__}: {msg}"[:500]
