"""The run record while the render runs: a listener of the driver's events that keeps
``runs/<story>/<run id>.json`` current, so ``reelfarm status`` and ``reelfarm runs`` (and the web
monitor) see live counts, what renders where, and an ETA.

Writes never hold up dispatch: on the driver's thread the listener only takes a snapshot of the
run (plain values, cheap) when it is due, and a background thread serialises and writes it; a
newer snapshot replaces one that is still waiting. A snapshot is due after a state change (a
task started or finished, a master settled) once :attr:`LiveRecord.min_interval` has passed since
the last write, and at least every :attr:`LiveRecord.heartbeat` seconds otherwise (``updated``
and the ETA move on). A large record on a slow store is written less often: never sooner than
:data:`BACKOFF` times the last write's duration after it, so serialising and writing take at most
a small share of the driver process's time.

:meth:`LiveRecord.close` drops a snapshot still waiting and returns once the write in flight
(if any) is done, so the final record that ``render`` writes next is never overwritten by a live
one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import RunView
    from .pool import Worker
    from .state import BranchRun, TaskRun

MIN_INTERVAL_S = 2.0
HEARTBEAT_S = 10.0
BACKOFF = 10.0


class LiveRecord:
    """A :class:`~.events.Listener`. ``snapshot()`` returns what to write, on the driver's
    thread (plain values, plus callables :func:`write` may run to finish it); ``write(doc)``
    writes it, on the background thread."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]],
                 write: Callable[[dict[str, Any]], None], *,
                 min_interval: float = MIN_INTERVAL_S, heartbeat: float = HEARTBEAT_S) -> None:
        self.snapshot = snapshot
        self.write = write
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.writes = 0  # records written
        self.errors: list[str] = []  # writes that failed (the render goes on)
        self._dirty = False
        self._took = 0.0  # seconds the last write took
        self._last = float("-inf")  # the first snapshot is due at once
        self._pending: dict[str, Any] | None = None
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- events (the driver's thread) -------------------------------------------------------
    def start(self, run: RunView) -> None:
        self._thread = threading.Thread(target=self._loop, name="reelfarm-live-record",
                                        daemon=True)
        self._thread.start()
        self._dirty = True
        self._maybe_write()

    def task_started(self, run: RunView, task: TaskRun, worker: Worker) -> None:
        self._dirty = True

    def task_finished(self, run: RunView, task: TaskRun) -> None:
        self._dirty = True

    def branch_finished(self, run: RunView, branch: BranchRun) -> None:
        self._dirty = True

    def note(self, text: str) -> None:
        pass

    def tick(self, run: RunView) -> None:
        self._maybe_write()

    def finish(self, run: RunView) -> None:
        self.close()

    def stop(self) -> None:
        self.close()

    def _maybe_write(self) -> None:
        if self._closed:
            return
        now = time.monotonic()
        since = now - self._last
        if since < BACKOFF * self._took:
            return
        if (self._dirty and since >= self.min_interval) or since >= self.heartbeat:
            self._dirty = False
            self._last = now
            doc = self.snapshot()
            with self._cv:
                self._pending = doc
                self._cv.notify()

    # -- the writer thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                doc, self._pending = self._pending, None
                if doc is None:  # closed, nothing left to write
                    return
            t0 = time.monotonic()
            try:
                self.write(doc)
                self.writes += 1
            except Exception as err:  # noqa: BLE001 - a live update is never worth a failed run
                self.errors.append(f"{type(err).__name__}: {err}"[:300])
            self._took = time.monotonic() - t0

    def close(self) -> None:
        """Stop: drop what waits, and return once no live write can happen any more (safe to
        call again, also after a join that a signal interrupted)."""
        with self._cv:
            self._closed = True
            self._pending = None
            self._cv.notify()
        t = self._thread
        if t is not None:
            with contextlib.suppress(RuntimeError):
                t.join()
            self._thread = None
