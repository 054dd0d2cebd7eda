"""The render plan: what runs, derived from a :class:`~orchestrator.manifest.Story`.

A plan is never edited; :func:`orchestrator.expand.expand` makes it. It holds

* the **branches** that get a master (paths of segments from ``start`` to an ending), and
* the **render tasks**: one per shot per conditioning context, each with its cache key and the
  task it is conditioned on (``upstream``), so the tasks form a DAG.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..spec.manifest import Profile, RendererSpec

#: Default bound on one render (see :attr:`RenderTask.time_limit`).
TIMEOUT_FLOOR_S = 900.0
TIMEOUT_FACTOR = 20.0


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RenderTask(_Frozen):
    """One shot rendered in one conditioning context. Everything a renderer needs."""

    id: str = Field(description="shot id, or shot id~n for the n-th continuity variant")
    key: str = Field(description="render key: sha256 of the canonical inputs (DESIGN.md)")
    shot: str
    segment: str
    prompt: str
    negative_prompt: str
    seed: int
    frames: int
    profile: Profile
    renderer: RendererSpec = Field(description="fully resolved: backend defaults applied")
    continuity: str
    upstream: str | None = Field(None, description="id of the task this one is conditioned on")
    upstream_key: str | None = None
    est_seconds: float = Field(0.0, description="estimated render seconds, for scheduling")
    encoder_build: dict[str, str] | None = Field(
        None, description="the ffmpeg and x264 build the key names; a renderer refuses another"
    )
    note: str | None = Field(None, description="what plan should say about this task's key")
    inputs: dict[str, Any] | None = Field(
        None, description="the document its key is the hash of (plan.expand.key_inputs), "
        "attached to a task that renders so that its action record keeps it")

    @property
    def backend(self) -> str:
        return self.renderer.backend or "previz"

    @property
    def seconds(self) -> float:
        return self.frames / self.profile.fps

    @property
    def time_limit(self) -> float:
        """Seconds a render may run before its actor is replaced, without ``--task-timeout``:
        :data:`TIMEOUT_FACTOR` times the estimate, never under :data:`TIMEOUT_FLOOR_S` (room for
        a first model load). A shot that hangs is retried and then failed, not waited on."""
        return max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * self.est_seconds)


class Branch(_Frozen):
    """A path from ``start`` to an ending; its master is its tasks' clips in order."""

    name: str
    segments: list[str]
    choices: list[str] = Field(description="the choice labels taken between segments")
    shots: list[str]
    tasks: list[str] = Field(description="task ids, in playing order")


class RenderPlan(_Frozen):
    story: str
    title: str
    profile: Profile
    salt: str
    branches: list[Branch]
    tasks: list[RenderTask] = Field(description="topologically ordered: upstream first")
    naive_tasks: int = Field(description="sum of shots over every branch path")
    encoder: dict[str, str] | None = Field(
        None, description="ffmpeg and x264 builds every key names, and how ffmpeg was chosen"
    )

    @cached_property
    def by_id(self) -> dict[str, RenderTask]:
        return {t.id: t for t in self.tasks}

    @cached_property
    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {t.id: [] for t in self.tasks}
        for t in self.tasks:
            if t.upstream is not None:
                out[t.upstream].append(t.id)
        return out

    @cached_property
    def remaining_seconds(self) -> dict[str, float]:
        """Estimated seconds from a task's start to the end of its longest chain of dependents."""
        out: dict[str, float] = {}
        for t in reversed(self.tasks):
            tail = max((out[d] for d in self.dependents[t.id]), default=0.0)
            out[t.id] = t.est_seconds + tail
        return out

    @property
    def critical_path_seconds(self) -> float:
        return max(self.remaining_seconds.values(), default=0.0)

    def critical_path(self) -> list[str]:
        """Task ids along the longest estimated chain."""
        rem = self.remaining_seconds
        roots = [t.id for t in self.tasks if t.upstream is None]
        if not roots:
            return []
        path = [max(roots, key=lambda i: rem[i])]
        while self.dependents[path[-1]]:
            path.append(max(self.dependents[path[-1]], key=lambda i: rem[i]))
        return path
