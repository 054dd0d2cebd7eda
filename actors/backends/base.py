"""The backend contract: how a shot becomes frames.

A backend has two halves:

* the :class:`Backend` itself is light: it validates settings, names the parameters that change
  pixels (they go into the cache key), says what resources a render needs and estimates its
  cost. The control plane uses it at ``validate``/``plan`` time, so it must import nothing heavy
  (no torch).
* its :class:`Renderer`, made by :meth:`Backend.create_renderer` inside a renderer actor, does the
  work and keeps expensive state (loaded models) warm between shots.

Backends are registered by the installed package (entry points, group ``reelfarm.backends``) or
by :func:`actors.backends.register_backend`; a manifest only names one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from orchestrator.plan import RenderTask
    from orchestrator.spec.manifest import Profile, RendererSpec


@dataclass(frozen=True)
class Resources:
    """What one render needs from a Ray node."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)

    def ray_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_gb:
            opts["memory"] = int(self.memory_gb * 1024**3)
        if self.custom:
            opts["resources"] = dict(self.custom)
        return opts

    def shape(self) -> tuple:
        """A hashable identity: tasks of one shape can share an actor."""
        return (self.num_cpus, self.num_gpus, self.memory_gb, tuple(sorted(self.custom.items())))


@dataclass(frozen=True)
class Issue:
    """A problem with a shot's settings, found at validate/plan time."""

    field: str  # relative to the shot, e.g. "renderer.steps" or "duration"
    message: str


#: Custom Ray resource a GPU node advertises with its total GPU memory in GB (KubeRay:
#: ``rayStartParams.resources: '{"gpu_memory_gb": 80}'``); ``gpu_memory_gb`` asks for it.
GPU_MEMORY_RESOURCE = "gpu_memory_gb"


def custom_resources(renderer: RendererSpec) -> dict[str, float]:
    """The custom Ray resources a shot asks for, ``gpu_memory_gb`` included."""
    custom = dict(renderer.resources or {})
    if renderer.gpu_memory_gb:
        custom[GPU_MEMORY_RESOURCE] = float(renderer.gpu_memory_gb)
    return custom


class Renderer(ABC):
    """The heavy half: lives in a renderer actor, keeps models warm."""

    @abstractmethod
    def render(self, task: RenderTask, condition: np.ndarray | None) -> Iterator[np.ndarray]:
        """Yield ``task.frames`` frames (H x W x 3, uint8 RGB).

        ``condition`` is the conditioning task's last frame at the profile's size, or ``None``
        for a cut. Frames of another size are fitted to the profile by the encoder.
        """

    def loaded_models(self) -> list[str]:
        """Model refs currently held warm (for affinity and reports)."""
        return []

    def last_load_seconds(self) -> float:
        """Seconds the last render spent loading a model (0 when it was warm)."""
        return 0.0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the renderer holds (GPU memory)."""


class Backend(ABC):
    """The light half: validation, cache-key inputs, resources and cost."""

    name: ClassVar[str]
    #: Bump when the same inputs would render different pixels: it is part of every key.
    version: ClassVar[str]
    #: True only for a benchmark's no-op backend (the driver's own cost per task): its
    #: renderer actor renders, encodes and stores nothing and answers a record of kind
    #: ``"noop"`` with no outputs, which is never stored, so nothing is cached and no master
    #: can be made from it. No built-in or installed backend sets it.
    writes_nothing: ClassVar[bool] = False

    def check(self, renderer: RendererSpec, frames: int, profile: Profile) -> list[Issue]:
        """Problems with a shot's resolved settings (frame rules, sizes, missing fields).

        ``Issue.field`` is relative to the shot (``duration``, ``renderer.steps``), or starts
        with ``profile.`` for the story's profile.
        """
        return []

    def check_continuity(self, renderer: RendererSpec, continuity: str) -> list[Issue]:
        """Problems that depend on how a shot starts (``cut`` or ``previous``)."""
        return []

    @abstractmethod
    def key_params(self, task: RenderTask) -> dict[str, Any]:
        """Every backend-specific parameter that changes pixels (JSON-able)."""

    def resources(self, renderer: RendererSpec) -> Resources:
        return Resources(
            num_cpus=1.0,
            num_gpus=float(renderer.gpus or 0.0),
            custom=custom_resources(renderer),
        )

    def model_ref(self, renderer: RendererSpec) -> str | None:
        """What an actor must hold warm to render this; ``None`` when nothing is loaded."""
        return None

    def seconds_per_frame(self, renderer: RendererSpec, profile: Profile) -> float:
        """A first estimate of render cost, refined from measurements during a run."""
        return 0.01

    @abstractmethod
    def create_renderer(self) -> Renderer:
        """Make the heavy half. Called once per renderer actor."""
