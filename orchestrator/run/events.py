"""What the driver tells its listeners, and the read-only view of a run they may look at.

A leaf: it imports nothing from the driver, so a listener (the live display in
:mod:`.progress`, a benchmark's clock) depends on these types and never on the driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..plan.models import RenderPlan
    from .pool import Worker
    from .state import BranchRun, TaskRun


class RunView(Protocol):
    """What a listener may read of a run in progress (it must not change it)."""

    plan: RenderPlan
    runs: Mapping[str, TaskRun]
    branches: Sequence[BranchRun]

    @property
    def workers(self) -> Mapping[int, Worker]: ...

    @property
    def remaining(self) -> Mapping[str, float]:
        """Estimated seconds from each task to the end of the DAG (refined as it runs)."""
        ...

    def counts(self) -> dict[str, int]: ...


class Listener(Protocol):
    """Receives the driver's events, in order, on the driver's thread."""

    def start(self, run: RunView) -> None: ...

    def task_started(self, run: RunView, task: TaskRun, worker: Worker) -> None: ...

    def task_finished(self, run: RunView, task: TaskRun) -> None: ...

    def branch_finished(self, run: RunView, branch: BranchRun) -> None: ...

    def note(self, text: str) -> None: ...

    def tick(self, run: RunView) -> None: ...

    def finish(self, run: RunView) -> None: ...


class Listeners:
    """Several listeners as one: each event goes to each, in order (the live display, the live
    run record, metrics ...). ``None`` entries are left out; ``stop`` (the live display's)
    reaches those that have it."""

    def __init__(self, *listeners: Listener | None) -> None:
        self.listeners = [x for x in listeners if x is not None]

    def start(self, run: RunView) -> None:
        for x in self.listeners:
            x.start(run)

    def task_started(self, run: RunView, task: TaskRun, worker: Worker) -> None:
        for x in self.listeners:
            x.task_started(run, task, worker)

    def task_finished(self, run: RunView, task: TaskRun) -> None:
        for x in self.listeners:
            x.task_finished(run, task)

    def branch_finished(self, run: RunView, branch: BranchRun) -> None:
        for x in self.listeners:
            x.branch_finished(run, branch)

    def note(self, text: str) -> None:
        for x in self.listeners:
            x.note(text)

    def tick(self, run: RunView) -> None:
        for x in self.listeners:
            x.tick(run)

    def finish(self, run: RunView) -> None:
        for x in self.listeners:
            x.finish(run)

    def stop(self) -> None:
        for x in self.listeners:
            stop = getattr(x, "stop", None)
            if stop is not None:
                stop()
