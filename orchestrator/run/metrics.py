"""Prometheus metrics of a render, through ``ray.util.metrics``.

Ray exports them on each node's metrics endpoint (``ray start --metrics-export-port``, the port
KubeRay's PodMonitor and ServiceMonitor scrape), prefixed ``ray_`` and with Ray's own labels
(``SessionName``, ``NodeAddress``, ``WorkerId`` ...) beside these:

==========================================  =========  ===================================
``reelfarm_shots_rendered_total``           counter    story, backend, model
``reelfarm_shots_cached_total``             counter    story, backend, model
``reelfarm_shots_failed_total``             counter    story, backend, model
``reelfarm_render_seconds``                 histogram  story, backend, model
``reelfarm_model_load_seconds``             histogram  story, backend, model
``reelfarm_gpu_seconds_total``              counter    story, backend, model
``reelfarm_video_seconds_total``            counter    story, backend, model
``reelfarm_queue_depth``                    gauge      story, priority
``reelfarm_gpu_seconds_per_video_second``   gauge      story
==========================================  =========  ===================================

(Names as exported, after the ``ray_`` prefix: Prometheus counters end in ``_total``.) GPU
seconds are a rendered shot's seconds times the GPUs its backend asks for; video seconds are
that shot's length. Their ratio, over the run so far, is the gauge: the GPU time one second of
delivered footage cost. The queue depth is the tasks waiting for a renderer (pending or ready).

The driver records them as a listener of its events (:class:`RunMetrics`); the arithmetic is
:class:`Tally`, which needs no Ray.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .state import CACHED, FAILED, PENDING, READY, RENDERED

if TYPE_CHECKING:
    from ..plan.models import RenderTask
    from .events import RunView
    from .pool import Worker
    from .state import BranchRun, TaskRun

PREFIX = "reelfarm_"
TASK_TAGS = ("story", "backend", "model")
QUEUE_TAGS = ("story", "priority")
RENDER_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
LOAD_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600]

#: Each metric: (kind, name without the prefix, description, tag keys). ``ray_`` + the prefix
#: + the name (+ ``_total`` for counters) is what Prometheus sees.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "shots_rendered": ("counter", "Shots rendered", TASK_TAGS),
    "shots_cached": ("counter", "Shots found in the cache", TASK_TAGS),
    "shots_failed": ("counter", "Shots that failed after their retries", TASK_TAGS),
    "render_seconds": ("histogram", "Seconds one shot took to render", TASK_TAGS),
    "model_load_seconds": ("histogram", "Seconds a renderer spent loading a model", TASK_TAGS),
    "gpu_seconds": ("counter", "GPU-seconds spent rendering shots", TASK_TAGS),
    "video_seconds": ("counter", "Seconds of video rendered", TASK_TAGS),
    "queue_depth": ("gauge", "Shots waiting for a renderer", QUEUE_TAGS),
    "gpu_seconds_per_video_second": (
        "gauge", "GPU-seconds per second of video rendered, over the run so far", ("story",)),
}


def exported_names() -> set[str]:
    """Every series name Prometheus sees for these metrics (histograms' too)."""
    out = set()
    for name, (kind, _, _) in METRICS.items():
        full = f"ray_{PREFIX}{name}"
        if kind == "counter":
            out.add(full + "_total")
        elif kind == "histogram":
            out.update({full + "_bucket", full + "_count", full + "_sum"})
        else:
            out.add(full)
    return out


def task_tags(story: str, task: RenderTask) -> dict[str, str]:
    return {"story": story, "backend": task.backend, "model": task.renderer.model or "none"}


def gpus_of(task: RenderTask) -> float:
    """GPUs the task's renderer holds (what its backend asks Ray for)."""
    from actors.backends import UnknownBackend, get_backend

    try:
        return float(get_backend(task.backend).resources(task.renderer).num_gpus or 0.0)
    except UnknownBackend:
        return 0.0


@dataclass
class Tally:
    """What a run's metrics say so far; fed by the listener's events, no Ray needed."""

    story: str
    gpu_seconds: float = 0.0
    video_seconds: float = 0.0
    #: (metric, tags as a sorted tuple, value) of each observation, in order
    recorded: list[tuple[str, tuple[tuple[str, str], ...], float]] = field(default_factory=list)

    def _add(self, metric: str, tags: dict[str, str], value: float) -> None:
        self.recorded.append((metric, tuple(sorted(tags.items())), value))

    def cached(self, runs: list[TaskRun]) -> None:
        by: Counter[tuple[tuple[str, str], ...]] = Counter()
        for r in runs:
            if r.status == CACHED:
                by[tuple(sorted(task_tags(self.story, r.task).items()))] += 1
        for tags, n in by.items():
            self._add("shots_cached", dict(tags), n)

    def finished(self, run: TaskRun) -> None:
        tags = task_tags(self.story, run.task)
        if run.status == FAILED:
            self._add("shots_failed", tags, 1)
            return
        if run.status != RENDERED:
            return
        self._add("shots_rendered", tags, 1)
        self._add("render_seconds", tags, run.seconds)
        if run.load_seconds > 0:
            self._add("model_load_seconds", tags, run.load_seconds)
        gpu = run.seconds * gpus_of(run.task)
        video = run.task.seconds
        self.gpu_seconds += gpu
        self.video_seconds += video
        self._add("gpu_seconds", tags, gpu)
        self._add("video_seconds", tags, video)
        self._add("gpu_seconds_per_video_second", {"story": self.story}, self.ratio)

    @property
    def ratio(self) -> float:
        return self.gpu_seconds / self.video_seconds if self.video_seconds > 0 else 0.0

    def queue(self, runs: list[TaskRun], priority: int) -> None:
        depth = sum(1 for r in runs if r.status in (PENDING, READY))
        self._add("queue_depth", {"story": self.story, "priority": str(priority)}, depth)


_made: dict[str, Any] = {}


def _metric(name: str) -> Any:
    """The ``ray.util.metrics`` object of ``name``, made once per process."""
    if name not in _made:
        from ray.util import metrics

        kind, description, tags = METRICS[name]
        full = PREFIX + name
        if kind == "counter":
            _made[name] = metrics.Counter(full, description=description, tag_keys=tags)
        elif kind == "gauge":
            _made[name] = metrics.Gauge(full, description=description, tag_keys=tags)
        else:
            buckets = LOAD_BUCKETS if name == "model_load_seconds" else RENDER_BUCKETS
            _made[name] = metrics.Histogram(full, description=description,
                                            boundaries=buckets, tag_keys=tags)
    return _made[name]


def record(name: str, tags: dict[str, str], value: float) -> None:
    m = _metric(name)
    kind = METRICS[name][0]
    if kind == "counter":
        if value > 0:
            m.inc(value, tags=tags)
    elif kind == "gauge":
        m.set(value, tags=tags)
    else:
        m.observe(value, tags=tags)


class RunMetrics:
    """A listener (:class:`.events.Listener`) that records a run's metrics in Ray."""

    #: Seconds between queue-depth updates on the driver's tick.
    QUEUE_EVERY_S = 1.0

    def __init__(self, story: str, priority: int = 50) -> None:
        self.tally = Tally(story)
        self.priority = priority
        self._last_queue = 0.0
        self.off = False

    def _flush(self) -> None:
        """Record what the tally holds. Metrics never fail a render: a metric Ray refuses is
        made again once (Ray may have been restarted in this process), then metrics are off
        for the run, with a warning in the log."""
        pending = list(self.tally.recorded)
        self.tally.recorded.clear()
        if self.off:
            return
        for name, tags, value in pending:
            try:
                record(name, dict(tags), value)
            except Exception:  # noqa: BLE001 - retried once with new metric objects
                _made.clear()
                try:
                    record(name, dict(tags), value)
                except Exception as err:  # noqa: BLE001 - reported, and metrics turned off
                    self.off = True
                    logging.getLogger(__name__).warning(
                        "reelfarm metrics are off for this run: %s", err)
                    return

    def start(self, run: RunView) -> None:
        runs = list(run.runs.values())
        self.tally.cached(runs)
        self.tally.queue(runs, self.priority)
        self._flush()

    def task_started(self, run: RunView, task: TaskRun, worker: Worker) -> None:
        pass

    def task_finished(self, run: RunView, task: TaskRun) -> None:
        self.tally.finished(task)
        self._flush()

    def branch_finished(self, run: RunView, branch: BranchRun) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def tick(self, run: RunView) -> None:
        import time

        now = time.monotonic()
        if now - self._last_queue >= self.QUEUE_EVERY_S:
            self._last_queue = now
            self.tally.queue(list(run.runs.values()), self.priority)
            self._flush()

    def finish(self, run: RunView) -> None:
        self.tally.queue(list(run.runs.values()), self.priority)
        self._flush()

    def stop(self) -> None:
        pass
