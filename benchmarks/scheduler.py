"""Scheduler benchmark: reelfarm's driver against the lower bound and two plain-Ray baselines.

For each (shots, GPUs) configuration it generates a seeded branching story (segments that branch
and reconverge, ``continuity: previous`` on some shots so continuity variants appear, shot
lengths drawn from a lognormal and a render cost that follows the length, median 1 s, with
+-15 % noise no estimate sees: a farm's shots take seconds, and roughly what their length
says), starts a local Ray with that many fake GPUs (``ray.init(num_gpus=N)``; a sleep costs no
CPU, so N sleeping renderers fit on a small machine) and measures, in one run:

* ``render_path_fixed_cost``: what the render path costs per task beyond the backend's sleep
  (frames, the ``ClipEncoder`` encode, clip, last frame and record into the store): zero-cost
  renders through ``actors.renderer.ShotRenderer.render``, one after another in one Ray task on
  the idle cluster; its median is the fixed cost below;
* ``lower_bound_s = max(critical path, total work / N)``, where a task's work is its sleep plus
  the measured fixed cost; ``lower_bound_sleep_only_s`` is the same bound from the sleeps alone;
* ``reelfarm``: the real :class:`orchestrator.run.driver.Scheduler` with a local store in a
  temporary directory, its actors started (``Scheduler.start_workers``) before the clock, as
  the baselines' workers are; ``makespan_s`` runs from ``Scheduler.run()`` until the last clip
  is in the store, ``total_s`` also includes assembling the masters, and
  ``efficiency = lower_bound_s / makespan_s``;
* ``reelfarm_cold``: the same render with the actors' start-up inside the makespan, beside
  ``bare_actor_startup_s``, what Ray takes to start N empty one-GPU actors on this machine;
* baseline **per_path**: one Ray task per shot per branch path, each path's shots in sequence,
  nothing shared between branches; baseline **ray_dag**: one Ray task per unique render task,
  its conditioning task's record passed as an ObjectRef, submitted in plan order (Ray's own
  scheduling). Each baseline task does exactly what a reelfarm actor does for a task: it calls
  ``ShotRenderer.render`` on a plain object made in the task (same backend render, same encode,
  same store writes, its own store in a temporary directory), ``num_gpus=1``; its workers are
  started before it is timed. Makespans, and ratios to reelfarm's (``vs_reelfarm``, > 1 when
  reelfarm is faster; ``vs_reelfarm_cold`` against the cold run);
* ``reelfarm_queue_depth_1``: the warm render again with pipelined dispatch off (each actor is
  sent its next task only once its last has returned), beside the default depth 2;
* ``overhead``: reelfarm on the same story with zero-cost shots (what the driver, the actor
  call, the clip encode and the store writes cost per task), beside the raw Ray actor-call rate
  to a no-op method measured on the same cluster;
* ``driver``: the driver's own cost per task, with nothing else in it: a story of independent
  shots on the no-op backend (``tests/backends_for_tests.NoopBackend``: the actor call returns at
  once, nothing is encoded or stored) rendered by the real Scheduler at queue depth 1 and 2,
  beside a minimal hand-written Ray loop over the same number of actors (``ray.wait`` for one,
  send it the next call, keeping the same number of calls per actor in flight) and the raw
  actor-call rate: wall and driver-CPU milliseconds per task for each;
* ``farm``: jobs sharing the cluster's farm of renderer actors (``orchestrator.run.farm``).
  **back_to_back**: the same story rendered by two jobs one after the other, each into a
  store of its own, neither starting actors before its clock: the first on a cold farm (its
  actors start inside its makespan), the second on the warm farm the first left (it leases
  warm actors); their efficiencies (``lower_bound_s / makespan``) and the ratio side by side.
  **two_concurrent**: a priority-90 job's makespan alone on a warm farm, and beside a
  priority-10 job (another story of the same size) that started first and holds every actor;
  ``slowdown = beside / alone`` (1.0: the low-priority job costs it nothing);
* ``assembly``: one master of 600 distinct clips joined by ``actors.assemble.concat_clips``,
  probing the clips one ffmpeg at a time (as it did) and concurrently (as it does).

Clips are real (ffmpeg) but tiny (64x64, 8 frames for a median shot) so the encode stays small
beside the sleeps; it is in every side's work alike.

Baseline tasks reuse their worker processes (``max_calls=0``). Ray's default for a task that
asks for a GPU is ``max_calls=1``, a fresh worker process per task (``--baseline-max-calls 1``
shows it), which on a real farm means loading the model for every shot.

The default (200 shots x 8,32 GPUs) takes about 10 minutes on 2 cores. ``--shots 2000`` runs
for about an hour there: per_path alone renders 1,200 one-second shots in a row.

Prints one JSON document on stdout; progress goes to stderr. Not a test: nothing is asserted.

    .venv/bin/python benchmarks/scheduler.py                     # 200 shots x 8,32 GPUs
    .venv/bin/python benchmarks/scheduler.py --quick             # 200 shots x 8 GPUs, 0.3 s
    .venv/bin/python benchmarks/scheduler.py --shots 200,2000 --gpus 8,32
    .venv/bin/python benchmarks/scheduler.py --shots 500 --gpus 16 --seed 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import ray  # noqa: E402

from actors.backends import Backend, Renderer, Resources, register_backend  # noqa: E402
from orchestrator.plan import RenderPlan  # noqa: E402
from orchestrator.plan.expand import expand  # noqa: E402
from orchestrator.run.driver import Scheduler, SchedulerOptions  # noqa: E402
from orchestrator.run.farm import kill_farm  # noqa: E402
from orchestrator.spec.manifest import Story  # noqa: E402
from orchestrator.store import open_store  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from backends_for_tests import NoopBackend, use  # noqa: E402

FPS = 8
FRAMES = 2  # per clip in the assembly benchmark
MEDIAN_FRAMES = 8  # a story's median shot length, in frames (1 s at FPS)
SIZE = 64


def log(msg: str) -> None:
    print(f"[scheduler-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the synthetic backend ------------------------------------------------------------------------


class _BenchRenderer(Renderer):
    def __init__(self, costs: dict[str, float]) -> None:
        self.costs = costs

    def render(self, task, condition) -> Iterator[np.ndarray]:
        cost = self.costs.get(task.shot, 0.0)
        if cost > 0:
            time.sleep(cost)
        frame = np.full((task.profile.height, task.profile.width, 3), task.seed % 251, np.uint8)
        for _ in range(task.frames):
            yield frame


class BenchSleepBackend(Backend):
    """A render is a sleep of the shot's drawn cost (no CPU), then a tiny solid-colour clip.

    Its estimate is the nominal ``per_frame_s`` (a real backend knows roughly what a frame costs
    at its steps and size); the sleeps carry noise the estimate does not see."""

    version = "1"

    def __init__(self, name: str, costs: dict[str, float], per_frame_s: float) -> None:
        self.name = name
        self.costs = costs
        self.per_frame_s = per_frame_s

    def key_params(self, task) -> dict[str, Any]:
        return {"cost": self.costs.get(task.shot, 0.0)}

    def resources(self, renderer) -> Resources:
        return Resources(num_cpus=0.0, num_gpus=1.0)

    def seconds_per_frame(self, renderer, profile) -> float:
        return self.per_frame_s

    def create_renderer(self) -> Renderer:
        return _BenchRenderer(self.costs)


# -- the story ------------------------------------------------------------------------------------


def make_story(shots: int, seed: int, *, layers: int, continuity: float, median_s: float,
               sigma: float, noise: float, backend: str,
               blind: bool = False) -> tuple[dict, dict[str, float]]:
    """A start segment, then ``layers`` layers of two segments; every segment of a layer offers
    both segments of the next (branches reconverge at every layer: 2**layers paths). Shots are
    spread over the segments; a shot continues the previous one with probability
    ``continuity`` (a segment's first shot too, so reconverging segments get variants).

    A shot's length is drawn from a lognormal (median ``MEDIAN_FRAMES`` frames, ``sigma``), and
    its cost is its frames at ``median_s / MEDIAN_FRAMES`` a frame, times a uniform factor in
    ``1 ± noise`` that no estimate sees: a render costs about what its length says, not exactly.
    ``blind``: every shot is ``MEDIAN_FRAMES`` long and its cost alone is drawn from the
    lognormal, so no estimate can tell shots apart. Returns the manifest and each shot's cost
    in seconds."""
    rng = random.Random(seed)
    names = ["s0"] + [f"l{k}{c}" for k in range(1, layers + 1) for c in "ab"]
    per = [shots // len(names)] * len(names)
    for i in range(shots - sum(per)):
        per[i] += 1
    costs: dict[str, float] = {}
    segments = []
    n = 0
    for i, sid in enumerate(names):
        seg_shots = []
        for j in range(per[i]):
            n += 1
            shot_id = f"{sid}-{j:04d}"
            spread = min(10.0, math.exp(rng.gauss(0.0, sigma)))
            factor = 1.0 + rng.uniform(-noise, noise)
            if blind:
                frames, factor = MEDIAN_FRAMES, factor * spread
            else:
                frames = max(1, round(MEDIAN_FRAMES * spread))
            costs[shot_id] = round(frames * median_s / MEDIAN_FRAMES * factor, 4)
            shot: dict[str, Any] = {"id": shot_id, "prompt": f"shot {n}",
                                    "duration": frames / FPS}
            # The first shot of each layer's "a" segment (entered from both segments before it)
            # always continues: continuity variants appear in every story.
            forced = j == 0 and i >= 3 and sid.endswith("a")
            if forced or ((i or j) and rng.random() < continuity):
                shot["continuity"] = "previous"
            seg_shots.append(shot)
        seg: dict[str, Any] = {"id": sid, "shots": seg_shots}
        layer = 0 if i == 0 else (i + 1) // 2
        if layer < layers:
            seg["choice"] = {
                "prompt": "which way?",
                "default": 0,
                "options": [{"label": f"to {c}", "next": f"l{layer + 1}{c}"} for c in "ab"],
            }
        segments.append(seg)
    doc = {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": f"bench-{shots}-{seed}", "title": "scheduler benchmark"},
        "spec": {
            "profile": {"width": SIZE, "height": SIZE, "fps": FPS},
            "renderer": {"backend": backend},
            "seed": seed,
            "start": "s0",
            "masters": "all",
            "segments": segments,
        },
    }
    return doc, costs


def task_costs(plan: RenderPlan, costs: dict[str, float]) -> dict[str, float]:
    return {t.id: costs.get(t.shot, 0.0) for t in plan.tasks}


def bounds(plan: RenderPlan, cost: dict[str, float], gpus: int,
           fixed_s: float = 0.0) -> dict[str, float]:
    """``max(critical path, work / N)``; ``fixed_s`` is added to every task (encode + store)."""
    rem: dict[str, float] = {}
    for t in reversed(plan.tasks):
        tail = max((rem[d] for d in plan.dependents[t.id]), default=0.0)
        rem[t.id] = cost[t.id] + fixed_s + tail
    crit = max(rem.values(), default=0.0)
    work = sum(cost.values()) + fixed_s * len(cost)
    return {"critical_path_s": crit, "total_work_s": work,
            "lower_bound_s": max(crit, work / gpus)}


# -- Ray ------------------------------------------------------------------------------------------


def start_ray(gpus: int) -> None:
    if ray.is_initialized():
        ray.shutdown()
    # address="local": a fresh Ray of our own, even where another is running on this machine
    ray.init(address="local", num_cpus=gpus, num_gpus=gpus, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    settle()


def settle(max_wait_s: float = 15.0) -> None:
    """Let start-up work (prestarted workers) finish so it is not measured."""
    try:
        load = os.getloadavg
    except AttributeError:
        time.sleep(3)
        return
    cores = os.cpu_count() or 1
    t0 = time.monotonic()
    time.sleep(2)
    while time.monotonic() - t0 < max_wait_s and load()[0] > cores * 1.5:
        time.sleep(1)


@ray.remote
class _Noop:
    def ping(self) -> None:
        return None


def actor_call_rate(calls: int) -> dict[str, float]:
    a = _Noop.options(num_cpus=0).remote()
    ray.get(a.ping.remote())
    t0 = time.perf_counter()
    for _ in range(calls):
        ray.get(a.ping.remote())
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.get([a.ping.remote() for _ in range(calls)])
    pipe = time.perf_counter() - t0
    ray.kill(a)
    return {
        "calls": calls,
        "sequential_calls_per_s": round(calls / seq, 1),
        "sequential_ms_per_call": round(1000 * seq / calls, 3),
        "pipelined_calls_per_s": round(calls / pipe, 1),
    }


def bare_actor_startup(n: int) -> float:
    """Seconds for Ray to start ``n`` empty actors of one fake GPU each: the floor under any
    pool of ``n`` renderer actors on this machine."""
    t0 = time.perf_counter()
    actors = [_Noop.options(num_cpus=0, num_gpus=1).remote() for _ in range(n)]
    ray.get([a.ping.remote() for a in actors])
    took = time.perf_counter() - t0
    for a in actors:
        ray.kill(a)
    return round(took, 3)


# -- reelfarm -------------------------------------------------------------------------------------


class _Clock:
    """A quiet Progress stand-in that notes when actors and renders start and finish."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.first_start: float | None = None
        self.last_render: float = self.t0
        self.rendered = 0

    def start(self, sched) -> None:
        self.t0 = time.monotonic()

    def task_started(self, sched, run, w) -> None:
        if self.first_start is None:
            self.first_start = time.monotonic()

    def task_finished(self, sched, run) -> None:
        self.last_render = time.monotonic()
        self.rendered += 1

    def branch_finished(self, sched, b) -> None:
        pass

    def note(self, text: str) -> None:
        log(f"  note: {text}")

    def tick(self, sched) -> None:
        pass

    def finish(self, sched) -> None:
        pass


def run_reelfarm(plan: RenderPlan, gpus: int, *, warm: bool, fresh_farm: bool = True,
                 priority: int = 50, on_run: Any = None, depth: int = 2) -> dict[str, Any]:
    """One render by the real Scheduler. ``warm``: its actors are started (``start_workers``)
    before the clock, as the baselines' workers are; otherwise their start-up is timed too.
    ``fresh_farm``: the cluster's farm is stopped first, so that no actor of an earlier run is
    warm; otherwise the job leases what the farm has. ``on_run()`` is called as the clock
    starts (to start a concurrent job)."""
    if fresh_farm:
        kill_farm()
    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-") as tmp:
        store_url = str(Path(tmp) / "store")
        store = open_store(store_url)
        clock = _Clock()
        cpu0 = time.process_time()
        sched = Scheduler(plan, store, store_url=store_url,
                          options=SchedulerOptions(max_workers=gpus, priority=priority,
                                                   queue_depth=depth),
                          progress=clock)
        sched.lookup()
        startup = None
        if warm:
            s0 = time.monotonic()
            ready = sched.start_workers()
            startup = round(time.monotonic() - s0, 3)
            settle()
            log(f"    {ready} actors ready in {startup}s")
        t0 = time.monotonic()
        if on_run is not None:
            on_run()
        sched.run()
        total = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        counts = sched.counts()
        secs = [r.seconds for r in sched.runs.values() if r.status == "rendered"]
        masters = [b for b in sched.branches if b.status == "done"]
    return {
        "makespan_s": round(clock.last_render - t0, 3),
        "actors_started_before_clock_s": startup,
        "total_s": round(total, 3),
        # masters are assembled as branches complete; this is what is left after the last clip
        "assembly_after_last_clip_s": round(t0 + total - clock.last_render, 3),
        "masters": len(masters),
        "first_dispatch_s": round((clock.first_start or t0) - t0, 3),
        "driver_cpu_s": round(cpu, 3),
        "rendered": counts["rendered"],
        "failed": counts["failed"] + counts["blocked"],
        "actor_render_s_sum": round(sum(secs), 3),
        "actor_render_s_median": round(statistics.median(secs), 4) if secs else None,
        "model_switches": sched.model_switches(),
        "queue_depth": depth,
        "recalls": sched.recalls,
    }


# -- the driver's own cost ------------------------------------------------------------------------


def noop_plan(tasks: int, seed: int) -> RenderPlan:
    """``tasks`` independent shots (no continuity) on the no-op backend, one fake GPU each."""
    use(NoopBackend())
    doc, _ = make_story(tasks, seed, layers=max(1, math.ceil(tasks / 1000) - 1),
                        continuity=0.0, median_s=0.0, sigma=0.0, noise=0.0, backend="noop")
    doc["spec"]["renderer"] = {"backend": "noop", "gpus": 1}
    doc["spec"]["masters"] = "endings"  # not one per path: 10,000 tasks make 512 paths
    for seg in doc["spec"]["segments"]:
        for s in seg["shots"]:
            s.pop("continuity", None)
    plan = expand(Story.model_validate(doc))
    assert all(t.upstream is None for t in plan.tasks)
    # a no-op render makes no clip: nothing to assemble
    return plan.model_copy(update={"branches": []})


def run_noop_driver(plan: RenderPlan, gpus: int, depth: int) -> dict[str, Any]:
    """The real Scheduler on a no-op plan, its actors warm before the clock: what is left of a
    task is the driver's turn and the actor call."""
    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-noop-") as tmp:
        store_url = str(Path(tmp) / "store")
        clock = _Clock()
        sched = Scheduler(plan, open_store(store_url), store_url=store_url,
                          options=SchedulerOptions(max_workers=gpus, queue_depth=depth),
                          progress=clock)
        sched.lookup()
        sched.start_workers()
        settle()
        cpu0, t0 = time.process_time(), time.monotonic()
        sched.run()
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        n = sched.counts()["rendered"]
    return {"tasks": n, "queue_depth": depth, "wall_s": round(wall, 3),
            "ms_per_task_wall": round(1000 * wall / n, 3),
            "driver_cpu_ms_per_task": round(1000 * cpu / n, 3),
            "tasks_per_s": round(n / wall, 1), "recalls": sched.recalls,
            "driver_peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports it in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def raw_loop(gpus: int, tasks: int, depth: int) -> dict[str, Any]:
    """A minimal hand-written Ray driver: ``gpus`` no-op actors (one fake GPU each), each kept
    ``depth`` calls deep; ``ray.wait`` for any, send that actor its next call."""
    actors = [_Noop.options(num_cpus=0, num_gpus=1).remote() for _ in range(gpus)]
    ray.get([a.ping.remote() for a in actors])
    settle()
    cpu0, t0 = time.process_time(), time.monotonic()
    owner: dict[Any, Any] = {}
    sent = 0
    for a in actors:
        for _ in range(depth):
            if sent < tasks:
                owner[a.ping.remote()] = a
                sent += 1
    done = 0
    while owner:
        ready, _ = ray.wait(list(owner), num_returns=1)
        for ref in ready:
            a = owner.pop(ref)
            ray.get(ref)
            done += 1
            if sent < tasks:
                owner[a.ping.remote()] = a
                sent += 1
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    for a in actors:
        ray.kill(a)
    return {"tasks": done, "queue_depth": depth, "wall_s": round(wall, 3),
            "ms_per_task_wall": round(1000 * wall / done, 3),
            "driver_cpu_ms_per_task": round(1000 * cpu / done, 3),
            "tasks_per_s": round(done / wall, 1)}


def bench_driver(tasks: int, gpus: int, seed: int, rate: dict[str, float]) -> dict[str, Any]:
    plan = noop_plan(tasks, seed)
    out: dict[str, Any] = {"tasks": len(plan.tasks), "actors": gpus}
    for depth in (1, 2):
        log(f"  driver: no-op plan of {len(plan.tasks)} tasks, queue depth {depth}")
        kill_farm()
        out[f"reelfarm_depth_{depth}"] = run_noop_driver(plan, gpus, depth)
        kill_farm()  # its warm actors hold the fake GPUs the raw loop's actors need
        settle()
        log(f"  driver: raw Ray loop, depth {depth}")
        out[f"raw_loop_depth_{depth}"] = raw_loop(gpus, len(plan.tasks), depth)
        settle()
    kill_farm()
    best = out["reelfarm_depth_2"]["ms_per_task_wall"]
    out["raw_actor_call_ms"] = rate["sequential_ms_per_call"]
    out["reelfarm_ms_per_task_vs_raw_call"] = round(best / rate["sequential_ms_per_call"], 3)
    out["reelfarm_ms_per_task_vs_raw_loop"] = round(
        best / out["raw_loop_depth_2"]["ms_per_task_wall"], 3)
    return out


# -- jobs sharing the farm ----------------------------------------------------------------------


def warm_farm(plan: RenderPlan, gpus: int) -> int:
    """Start the actors a render of ``plan`` would use and hand them back to the farm idle
    (and warm): what a finished job leaves behind."""
    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-") as tmp:
        store_url = str(Path(tmp) / "store")
        sched = Scheduler(plan, open_store(store_url), store_url=store_url,
                          options=SchedulerOptions(max_workers=gpus))
        sched.lookup()
        n = sched.start_workers()
        sched.shutdown()
    return n


def bench_farm(plan: RenderPlan, other: RenderPlan, gpus: int, lb: float) -> dict[str, Any]:
    """Back-to-back jobs (cold farm, then warm) and two concurrent jobs (priority 90 beside
    priority 10, against alone); ``lb`` is ``plan``'s lower bound."""
    import threading

    log("  farm: back-to-back, first job on a cold farm")
    first = run_reelfarm(plan, gpus, warm=False, fresh_farm=True)
    log("  farm: back-to-back, second job on the warm farm")
    second = run_reelfarm(plan, gpus, warm=False, fresh_farm=False)
    e1, e2 = lb / first["makespan_s"], lb / second["makespan_s"]
    log(f"    efficiency {e1:.3f} cold, {e2:.3f} warm")
    settle()
    kill_farm()
    warm_farm(plan, gpus)
    log("  farm: priority-90 job alone (warm farm)")
    alone = run_reelfarm(plan, gpus, warm=False, fresh_farm=False, priority=90)
    settle()
    low: dict[str, Any] = {}
    started = threading.Event()

    class _Started(_Clock):
        def task_started(self, sched, run, w) -> None:
            super().task_started(sched, run, w)
            started.set()

    def run_low() -> None:
        with tempfile.TemporaryDirectory(prefix="reelfarm-bench-") as tmp:
            store_url = str(Path(tmp) / "store")
            clock = _Started()
            sched = Scheduler(other, open_store(store_url), store_url=store_url,
                              options=SchedulerOptions(max_workers=gpus, priority=10),
                              progress=clock)
            sched.lookup()
            t0 = time.monotonic()
            sched.run()
            low["makespan_s"] = round(clock.last_render - t0, 3)
            low["rendered"] = sched.counts()["rendered"]

    log("  farm: priority-90 job beside a priority-10 job that started first")
    th = threading.Thread(target=run_low)
    th.start()
    started.wait(600)
    time.sleep(1.0)  # the low job holds every actor and has renders under way
    beside = run_reelfarm(plan, gpus, warm=False, fresh_farm=False, priority=90)
    th.join()
    slow = beside["makespan_s"] / alone["makespan_s"]
    log(f"    priority-90 makespan {alone['makespan_s']}s alone, {beside['makespan_s']}s "
        f"beside priority 10 ({slow:.3f}x)")
    kill_farm()
    return {
        "back_to_back": {
            "first_job_cold_farm": {**first, "efficiency": round(e1, 4)},
            "second_job_warm_farm": {**second, "efficiency": round(e2, 4)},
            "efficiency_cold": round(e1, 4),
            "efficiency_warm": round(e2, 4),
            "warm_vs_cold": round(e2 / e1, 3),
        },
        "two_concurrent": {
            "priority_90_alone": alone,
            "priority_90_beside_priority_10": beside,
            "priority_10_job": low,
            "makespan_alone_s": alone["makespan_s"],
            "makespan_beside_s": beside["makespan_s"],
            "slowdown": round(slow, 3),
        },
    }


# -- baselines ------------------------------------------------------------------------------------


def _render_in_task(store_url: str, backend: Any, task: Any, upstream: Any = None) -> Any:
    """One baseline task: exactly what a reelfarm renderer actor does for a task (backend
    render, ClipEncoder encode, clip, last frame and record into the store), through the same
    :meth:`actors.renderer.ShotRenderer.render`, on a plain object made in the task (no warm
    actor). ``upstream`` is the previous task's record: the condition when the task continues
    it, otherwise only an ordering dependency."""
    from actors.renderer import ShotRenderer

    cond = upstream.outputs["last_frame"] if upstream is not None and task.upstream else None
    return ShotRenderer(store_url, None, backend).render(task, cond)


def _warm(seconds: float) -> int:
    import actors.renderer  # noqa: F401 - what a baseline task imports

    time.sleep(seconds)
    return os.getpid()


def warm_task_workers(gpus: int, max_calls: int) -> int:
    """Start N task workers (one per fake GPU) before a timed baseline, as reelfarm's actors are
    started before its first dispatch: the baselines' makespans leave worker start-up out."""
    fn = ray.remote(num_gpus=1, num_cpus=0, max_calls=max_calls)(_warm)
    seen = 0
    for hold in (2.0, 5.0, 10.0):  # until one round runs on N workers at once
        seen = len(set(ray.get([fn.remote(hold) for _ in range(gpus)])))
        if seen >= gpus:
            break
    return seen


def run_per_path(plan: RenderPlan, backend: Any, max_calls: int) -> dict[str, Any]:
    """One task per shot per branch path; a path's shots in order; nothing shared."""
    fn = ray.remote(num_gpus=1, num_cpus=0, max_calls=max_calls)(_render_in_task)
    by_id = {t.id: t for t in plan.tasks}
    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-pp-") as tmp:
        store_url = str(Path(tmp) / "store")
        bref = ray.put(backend)
        t0 = time.monotonic()
        tails = []
        n = 0
        for b in plan.branches:
            prev = None
            for tid in b.tasks:
                prev = fn.remote(store_url, bref, by_id[tid], prev)
                n += 1
            tails.append(prev)
        ray.get(tails)
        makespan = time.monotonic() - t0
    return {"makespan_s": round(makespan, 3), "tasks": n}


def run_ray_dag(plan: RenderPlan, backend: Any, max_calls: int) -> dict[str, Any]:
    """One task per unique render task; its conditioning task's record ref as an argument."""
    fn = ray.remote(num_gpus=1, num_cpus=0, max_calls=max_calls)(_render_in_task)
    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-dag-") as tmp:
        store_url = str(Path(tmp) / "store")
        bref = ray.put(backend)
        t0 = time.monotonic()
        refs: dict[str, Any] = {}
        for t in plan.tasks:
            refs[t.id] = fn.remote(store_url, bref, t, refs[t.upstream] if t.upstream else None)
        ray.get(list(refs.values()))
        makespan = time.monotonic() - t0
    return {"makespan_s": round(makespan, 3), "tasks": len(refs)}


def _fixed_costs(store_url: str, backend: Any, tasks: list[Any]) -> list[float]:
    from actors.renderer import ShotRenderer

    r = ShotRenderer(store_url, None, backend)
    r.render(tasks[0], None)  # warm-up, not counted
    out = []
    for t in tasks:
        t0 = time.perf_counter()
        r.render(t, None)
        out.append(time.perf_counter() - t0)
    return out


def render_path_cost(zplan: RenderPlan, backend: Any, samples: int) -> dict[str, Any]:
    """The per-task cost of the render path beyond the backend's sleep (frames, encode, store
    writes, record): zero-cost renders one after another in one Ray task through
    ``ShotRenderer.render`` on an idle cluster; the median is the bound's fixed cost."""
    tasks = [t for t in zplan.tasks if not t.upstream][: samples + 1]
    fn = ray.remote(num_gpus=1, num_cpus=0)(_fixed_costs)
    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-fixed-") as tmp:
        secs = ray.get(fn.remote(str(Path(tmp) / "store"), backend, tasks))
    return {"samples": len(secs), "median_s": round(statistics.median(secs), 4),
            "min_s": round(min(secs), 4), "max_s": round(max(secs), 4)}


# -- assembly -------------------------------------------------------------------------------------


def bench_assembly(clips: int) -> dict[str, Any]:
    """One master of ``clips`` distinct clips (64x64, 2 frames) joined by
    :func:`actors.assemble.concat_clips`: probing every clip sequentially, one ffmpeg at a time
    (the former ``check_clips``), beside the concurrent probe."""
    from concurrent.futures import ThreadPoolExecutor

    from actors import assemble
    from actors.encode import ClipEncoder
    from orchestrator.spec.manifest import Profile

    profile = Profile(width=SIZE, height=SIZE, fps=FPS)

    def encode(i: int, path: Path) -> Path:
        frame = np.full((SIZE, SIZE, 3), (i % 251, i // 251, 7), np.uint8)
        with ClipEncoder(path, profile) as enc:
            for _ in range(FRAMES):
                enc.write(frame)
        return path

    with tempfile.TemporaryDirectory(prefix="reelfarm-bench-asm-") as tmp:
        d = Path(tmp)
        t0 = time.monotonic()
        with ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
            paths = list(pool.map(encode, range(clips),
                                  [d / f"{i:05d}.mp4" for i in range(clips)]))
        encode_s = time.monotonic() - t0
        check = assemble.check_clips
        timings: dict[str, float] = {}
        for name, workers in (("sequential", 1), ("concurrent", None)):
            assemble.check_clips = lambda c, p, w=workers: check(c, p, workers=w)
            try:
                t0 = time.monotonic()
                info = assemble.concat_clips(paths, d / f"{name}.mp4", profile)
                timings[name] = time.monotonic() - t0
            finally:
                assemble.check_clips = check
            if info.frames != clips * FRAMES:  # a wrong master would make the timing moot
                raise RuntimeError(f"{name}: master has {info.frames} frames")
    return {
        "clips": clips,
        "clip_encode_s": round(encode_s, 3),
        "probe_workers": assemble.probe_workers(),
        "assembly_s_sequential_probe": round(timings["sequential"], 3),
        "assembly_s": round(timings["concurrent"], 3),
        "speedup": round(timings["sequential"] / timings["concurrent"], 2),
    }


# -- main -----------------------------------------------------------------------------------------


def parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=parse_ints, default=None,
                    help="e.g. 200,2000 (default 200)")
    ap.add_argument("--gpus", type=parse_ints, default=None,
                    help="fake GPUs, e.g. 8,32 (default 8,32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="200 shots x 8 GPUs, 0.3 s median, 200-clip assembly")
    ap.add_argument("--median-s", type=float, default=None,
                    help="median per-shot sleep (default 1.0; 0.3 with --quick)")
    ap.add_argument("--sigma", type=float, default=0.5,
                    help="lognormal sigma of shot lengths (and so of their costs)")
    ap.add_argument("--noise", type=float, default=0.15,
                    help="a shot's cost varies by a uniform factor of 1 +- this, unseen by the "
                         "scheduler's estimates")
    ap.add_argument("--blind", action="store_true",
                    help="every shot the same length, its cost alone drawn: nothing the "
                         "scheduler can estimate from")
    ap.add_argument("--layers", type=int, default=2,
                    help="branching layers after the start segment (2**layers paths)")
    ap.add_argument("--continuity", type=float, default=0.3,
                    help="probability that a shot continues the previous one")
    ap.add_argument("--baseline-max-calls", type=int, default=0,
                    help="max_calls of the baseline tasks (0: reuse workers; Ray's GPU default 1)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-farm", action="store_true",
                    help="skip the jobs sharing a farm (back-to-back, two concurrent)")
    ap.add_argument("--calls", type=int, default=2000, help="no-op actor calls for the rate")
    ap.add_argument("--fixed-samples", type=int, default=30,
                    help="zero-cost renders timed for the render path's fixed cost")
    ap.add_argument("--assembly-clips", type=int, default=None,
                    help="clips in the assembly measurement (default 600; 0 skips it)")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the render with the actors' start-up inside its makespan")
    ap.add_argument("--driver-tasks", type=int, default=2000,
                    help="no-op tasks in the driver's own cost measurement (0 skips it)")
    args = ap.parse_args(argv)
    # Ray prints cluster warnings on the driver's stdout; keep stdout for the one JSON document.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    shots_list = args.shots or [200]
    gpus_list = args.gpus or ([8] if args.quick else [8, 32])
    median = args.median_s if args.median_s is not None else (0.3 if args.quick else 1.0)
    asm_clips = args.assembly_clips if args.assembly_clips is not None else (
        200 if args.quick else 600)

    backend_name = "bench-sleep"
    results = []
    t_all = time.monotonic()
    assembly = None
    if asm_clips > 0:
        log(f"assembly of one {asm_clips}-clip master, sequential probe then concurrent")
        assembly = bench_assembly(asm_clips)
        log(f"  {assembly['assembly_s_sequential_probe']}s -> {assembly['assembly_s']}s")
    for shots in shots_list:
        doc, costs = make_story(shots, args.seed, layers=args.layers,
                                continuity=args.continuity, median_s=median,
                                sigma=args.sigma, noise=args.noise, backend=backend_name,
                                blind=args.blind)
        backend = BenchSleepBackend(backend_name, costs, median / MEDIAN_FRAMES)
        register_backend(backend)
        plan = expand(Story.model_validate(doc))
        cost = task_costs(plan, costs)
        zdoc, zcosts = make_story(shots, args.seed + 1_000_003, layers=args.layers,
                                  continuity=args.continuity, median_s=0.0, sigma=args.sigma,
                                  noise=0.0,
                                  backend=backend_name + "-zero")
        zbackend = BenchSleepBackend(backend_name + "-zero", zcosts, 0.0)
        register_backend(zbackend)
        zplan = expand(Story.model_validate(zdoc))
        # the concurrent low-priority job: another story (seed) of the same size and backend;
        # its shots have the same ids, so the backend gives them the same costs
        odoc, _ = make_story(shots, args.seed + 7, layers=args.layers,
                             continuity=args.continuity, median_s=median, sigma=args.sigma,
                             noise=args.noise, backend=backend_name, blind=args.blind)
        other = expand(Story.model_validate(odoc))
        for gpus in gpus_list:
            log(f"shots={shots} gpus={gpus}: {len(plan.tasks)} tasks, "
                f"{len(plan.branches)} branches; starting Ray")
            start_ray(gpus)
            rate = actor_call_rate(args.calls)
            log(f"  raw actor calls: {rate['sequential_calls_per_s']}/s sequential")
            fixed = render_path_cost(zplan, zbackend, args.fixed_samples)
            log(f"  render path fixed cost: median {fixed['median_s']}s")
            raw = bounds(plan, cost, gpus)
            b = bounds(plan, cost, gpus, fixed["median_s"])
            startup = bare_actor_startup(gpus)
            log(f"  {gpus} bare actors start in {startup}s")
            settle()
            log("  reelfarm, zero-cost shots (actors warm)")
            zero = run_reelfarm(zplan, gpus, warm=True)
            cold = None
            if not args.no_cold:
                settle()
                log("  reelfarm, actors started inside the timing")
                cold = run_reelfarm(plan, gpus, warm=False)
            settle()
            log("  reelfarm, actors warm")
            rf = run_reelfarm(plan, gpus, warm=True)
            settle()
            log("  reelfarm, actors warm, queue depth 1 (no pipelining)")
            rf1 = run_reelfarm(plan, gpus, warm=True, depth=1)
            lb = b["lower_bound_s"]
            m = rf["makespan_s"]
            mc = cold["makespan_s"] if cold else float("nan")
            log(f"  reelfarm makespan {m}s warm ({rf1['makespan_s']}s at depth 1), {mc}s cold; "
                f"lower bound {lb:.2f}s, efficiency {lb / m:.3f} warm, "
                f"{lb / rf1['makespan_s']:.3f} at depth 1, {lb / mc:.3f} cold")
            entry: dict[str, Any] = {
                "shots": shots,
                "gpus": gpus,
                "tasks": len(plan.tasks),
                "naive_tasks": plan.naive_tasks,
                "branches": len(plan.branches),
                "master_clips": sum(len(br.tasks) for br in plan.branches),
                "variants": sum(1 for t in plan.tasks if "~" in t.id),
                "sleep_work_s": round(raw["total_work_s"], 3),
                # measured in this run: median zero-cost ShotRenderer.render, one at a time
                "render_path_fixed_cost": fixed,
                # work = sleep + fixed cost per task; lower_bound_s = max(critical path, work / N)
                "critical_path_s": round(b["critical_path_s"], 3),
                "total_work_s": round(b["total_work_s"], 3),
                "lower_bound_s": round(lb, 3),
                # the same bound from the sleeps alone (no encode, no store)
                "lower_bound_sleep_only_s": round(raw["lower_bound_s"], 3),
                # Ray starting N empty one-GPU actors on this machine, measured in this run
                "bare_actor_startup_s": startup,
                # actors started before the clock, as the baselines' workers are
                "reelfarm": {
                    **rf,
                    "efficiency": round(lb / m, 4),
                    "efficiency_vs_sleep_only_bound": round(raw["lower_bound_s"] / m, 4),
                },
                # the same warm render, each actor sent a task only when it is free
                "reelfarm_queue_depth_1": {
                    **rf1, "efficiency": round(lb / rf1["makespan_s"], 4),
                    "makespan_vs_depth_2": round(rf1["makespan_s"] / m, 3)},
                # the same render with its actors' start-up inside the makespan
                "reelfarm_cold": ({**cold, "efficiency": round(lb / mc, 4)} if cold else None),
            }
            if args.driver_tasks > 0:
                settle()
                entry["driver"] = bench_driver(args.driver_tasks, gpus, args.seed, rate)
                d = entry["driver"]
                log(f"  driver: {d['reelfarm_depth_2']['ms_per_task_wall']} ms/task (depth 2), "
                    f"{d['reelfarm_depth_1']['ms_per_task_wall']} (depth 1), raw loop "
                    f"{d['raw_loop_depth_2']['ms_per_task_wall']}, raw call "
                    f"{d['raw_actor_call_ms']}")
            if not args.no_farm:
                settle()
                entry["farm"] = bench_farm(plan, other, gpus, lb)
            zt = max(1, zero["rendered"])
            entry["overhead"] = {
                "zero_cost_makespan_s": zero["makespan_s"],
                "tasks": zero["rendered"],
                "ms_per_task_wall": round(1000 * zero["makespan_s"] / zt, 3),
                # actor-time per task: what N actors spent per task when shots cost nothing
                "overhead_ms_per_task": round(1000 * zero["makespan_s"] * gpus / zt, 3),
                "actor_render_ms_mean": round(1000 * zero["actor_render_s_sum"] / zt, 3),
                # all N actors encoding at once on this machine's cores
                "actor_render_ms_median_loaded": round(
                    1000 * (zero["actor_render_s_median"] or 0), 3),
                "raw_actor_calls": rate,
            }
            if not args.no_baselines:
                out_b: dict[str, Any] = {}
                for name, fn in (("ray_dag", run_ray_dag), ("per_path", run_per_path)):
                    warmed = warm_task_workers(gpus, args.baseline_max_calls)
                    settle()
                    log(f"  baseline {name} ({warmed} workers warm)")
                    r = fn(plan, backend, args.baseline_max_calls)
                    bm = r["makespan_s"]
                    out_b[name] = {
                        **r,
                        "warm_workers": warmed,
                        "efficiency": round(b["lower_bound_s"] / bm, 4),
                        # > 1: reelfarm is faster (both with workers started before the clock)
                        "vs_reelfarm": round(bm / m, 3),
                        # against reelfarm with its actor start-up inside its makespan
                        "vs_reelfarm_cold": round(bm / mc, 3) if cold else None,
                    }
                entry["baselines"] = out_b
                rd, pp = out_b["ray_dag"], out_b["per_path"]
                log(f"  per_path {pp['makespan_s']}s, ray_dag {rd['makespan_s']}s")
            results.append(entry)
            # each configuration's figures as soon as they exist, for a run cut short
            log("result " + json.dumps(entry, separators=(",", ":")))
    if ray.is_initialized():
        ray.shutdown()
    out = {
        "benchmark": "scheduler",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "gpus": "fake (Ray resources num_gpus=N); a render is a sleep plus a tiny encode",
        },
        "settings": {
            "seed": args.seed,
            "median_cost_s": median,
            "sigma": args.sigma,
            "noise": args.noise,
            "blind": args.blind,
            "median_frames_per_shot": MEDIAN_FRAMES,
            "layers": args.layers,
            "continuity": args.continuity,
            "frame_size": f"{SIZE}x{SIZE}",
            "baseline_max_calls": args.baseline_max_calls,
            "baseline_work": "ShotRenderer.render in a Ray task: the same render, encode and "
                             "store writes as reelfarm's actors",
        },
        "assembly": assembly,
        "results": results,
        "seconds": round(time.monotonic() - t_all, 1),
    }
    json_out.write(json.dumps(out, indent=2) + "\n")
    json_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
