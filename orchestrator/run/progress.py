"""Progress for people: a live display on a terminal, one line per event in batch logs.

Everything here goes to stderr; machine output (``--json``) never mixes with it. A listener of
the driver's events (:class:`.events.Listener`) that reads the run through its read-only view
(:class:`.events.RunView`); it never imports the driver.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING

from .state import TERMINAL

if TYPE_CHECKING:
    from .events import RunView as Scheduler
    from .pool import Worker
    from .state import BranchRun, TaskRun


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``mode``: ``live`` (rich display), ``plain`` (a line per event), ``quiet`` (nothing)."""

    def __init__(self, mode: str = "auto", stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "live" if self.stream.isatty() else "plain"
        self.mode = mode
        self._live = None
        self._t0 = time.monotonic()
        self._last_tick = 0.0

    # -- events ----------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        if self.mode == "quiet":
            return
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(f"[{fmt_duration(time.monotonic() - self._t0)}] {text}", file=self.stream,
                  flush=True)

    def start(self, sched: Scheduler) -> None:
        self._t0 = time.monotonic()
        c = sched.counts()
        todo = len(sched.runs) - c["cached"]
        self._line(
            f"{sched.plan.story}: {len(sched.runs)} tasks, {c['cached']} cached, {todo} to "
            f"render; {len(sched.branches)} masters"
        )
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(self._view(sched), console=console, refresh_per_second=4,
                              transient=True)
            self._live.start()

    def task_started(self, sched: Scheduler, run: TaskRun, w: Worker) -> None:
        if self.mode == "plain":
            self._line(f"start    {run.task.id} on {w.node} (worker {w.id})")

    def task_finished(self, sched: Scheduler, run: TaskRun) -> None:
        if run.status == "failed":
            self._line(f"FAILED   {run.task.id} after {run.attempts} attempt(s): {run.error}")
        elif self.mode == "plain":
            load = f", model load {run.load_seconds:.1f}s" if run.load_seconds else ""
            self._line(f"rendered {run.task.id} in {run.seconds:.2f}s on {run.node}{load}")

    def branch_finished(self, sched: Scheduler, b: BranchRun) -> None:
        if b.status == "done":
            how = "reused" if b.cached else "assembled"
            self._line(f"master   {b.name}: {b.frames} frames ({how})")
        else:
            self._line(f"master   {b.name}: FAILED: {b.error}")

    def note(self, text: str) -> None:
        self._line(text)

    def tick(self, sched: Scheduler) -> None:
        if self._live is not None:
            now = time.monotonic()
            if now - self._last_tick > 0.2:
                self._live.update(self._view(sched))
                self._last_tick = now

    def finish(self, sched: Scheduler) -> None:
        if self._live is not None:
            self._live.update(self._view(sched))
        self.stop()

    def stop(self) -> None:
        """Stop the live display (the terminal gets its cursor back); safe to call again."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    # -- the live view ---------------------------------------------------------------------
    def summary(self, sched: Scheduler) -> str:
        c = sched.counts()
        elapsed = time.monotonic() - self._t0
        done = c["cached"] + c["rendered"]
        rate = c["rendered"] / elapsed if elapsed > 0 else 0.0
        return (
            f"tasks {done}/{len(sched.runs)}  cached {c['cached']}  rendered {c['rendered']}  "
            f"rendering {c['running']}  failed {c['failed']}  blocked {c['blocked']}  "
            f"elapsed {fmt_duration(elapsed)}  {rate:.2f} tasks/s  ETA {fmt_duration(eta(sched))}"
        )

    def _view(self, sched: Scheduler):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("node", "worker", "task", "model", "elapsed", "done"):
            table.add_column(col)
        now = time.monotonic()
        for w in sorted(sched.workers.values(), key=lambda w: (w.node, w.id)):
            run = sched.runs.get(w.task) if w.task else None
            table.add_row(
                w.node,
                str(w.id),
                run.task.id if run else ("starting" if not w.ready else "idle"),
                w.model or "-",
                fmt_duration(now - run.started) if run and run.started else "",
                str(w.rendered),
            )
        masters = sum(1 for b in sched.branches if b.status == "done")
        head = Text(f"{sched.plan.story}  {self.summary(sched)}  masters {masters}/"
                    f"{len(sched.branches)}")
        awaited = getattr(sched, "waiting_for", None)  # from the autoscaler (capacity.py)
        if awaited:
            return Group(head, Text(f"waiting for {awaited}"), table)
        return Group(head, table)


def eta(sched: Scheduler) -> float:
    """Seconds left: the larger of the remaining critical path and remaining work per worker."""
    left = [r for r in sched.runs.values() if r.status not in TERMINAL]
    if not left:
        return 0.0
    rem = sched.remaining
    critical = max(rem[r.task.id] for r in left)
    work = sum(r.task.est_seconds for r in left)
    return max(critical, work / max(1, len(sched.workers)))
