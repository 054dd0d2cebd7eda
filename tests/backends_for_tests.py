"""Backends for scheduler tests: real renders whose cost and failures the test controls.

``SleepBackend`` renders solid frames (colour from the key) after sleeping a per-frame cost; it
can fail chosen shots, and it names its model so affinity can be observed. Instances are pickled
by value into the renderer actors (this module is not installed on the workers).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.cloudpickle

from actors.backends import Backend, Renderer, Resources, register_backend
from actors.backends.base import custom_resources


class _SleepRenderer(Renderer):
    def __init__(self, backend: SleepBackend) -> None:
        self.b = backend
        self.models: list[str] = []
        self._load = 0.0

    def render(self, task, condition) -> Iterator[np.ndarray]:
        if task.shot in self.b.fail_shots:
            raise RuntimeError(f"deliberate failure of {task.shot}")
        if self.b.log_dir:  # a trace of starts ("<time> <node id>"), for dependency checks
            node = ray.get_runtime_context().get_node_id() or ""
            with open(os.path.join(self.b.log_dir, f"{task.key}.start"), "w") as f:
                f.write(f"{time.time()} {node}")
        model = task.renderer.model
        self._load = 0.0
        if model and model not in self.models:
            time.sleep(self.b.load_s)
            self._load = self.b.load_s
            self.models = [model]
        time.sleep(self.b.cost_s(task))
        rgb = hashlib.sha256(task.key.encode()).digest()[:3]
        frame = np.empty((task.profile.height, task.profile.width, 3), np.uint8)
        frame[:] = np.frombuffer(rgb, np.uint8)
        for _ in range(task.frames):
            yield frame

    def loaded_models(self) -> list[str]:
        return list(self.models)

    def last_load_seconds(self) -> float:
        return self._load


class SleepBackend(Backend):
    version = "1"

    def __init__(self, name: str = "sleep", *, per_frame_s: float = 0.0, load_s: float = 0.0,
                 fail_shots: frozenset[str] = frozenset(), gpus: float = 0.0,
                 log_dir: str | None = None, costs: dict[str, float] | None = None) -> None:
        self.name = name
        self.per_frame_s = per_frame_s
        self.load_s = load_s
        self.fail_shots = frozenset(fail_shots)
        self.gpus = gpus
        self.log_dir = log_dir
        self.costs = costs or {}

    def cost_s(self, task) -> float:
        return self.costs.get(task.shot, task.frames * self.per_frame_s)

    def key_params(self, task) -> dict[str, Any]:
        return {"steps": task.renderer.steps, "guidance": task.renderer.guidance}

    def resources(self, renderer) -> Resources:
        return Resources(num_cpus=0.5 if self.gpus else 1.0,
                         num_gpus=float(renderer.gpus if renderer.gpus is not None else self.gpus),
                         custom=custom_resources(renderer))

    def model_ref(self, renderer) -> str | None:
        return renderer.model

    def seconds_per_frame(self, renderer, profile) -> float:
        return self.per_frame_s

    def create_renderer(self) -> Renderer:
        return _SleepRenderer(self)


def start_trace(log_dir, key: str) -> tuple[float, str]:
    """When and on which node (id) a ``SleepBackend(log_dir=...)`` render of ``key`` started."""
    when, node = (Path(log_dir) / f"{key}.start").read_text().split()
    return float(when), node


def use(backend: Backend) -> Backend:
    """Register a backend for this process and ship it to actors by value."""
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    register_backend(backend)
    return backend


def _refuse_to_load(name: str):
    raise RuntimeError(f"backend {name} cannot be loaded on this worker")


class UnloadableBackend(SleepBackend):
    """Pickles fine on the driver; unpickling it in a renderer actor fails, as a backend whose
    dependencies are missing on the workers would."""

    def __reduce__(self):
        return (_refuse_to_load, (self.name,))


class NoRendererBackend(SleepBackend):
    """Loads on the workers but cannot make its renderer there, as a backend whose GPU or
    weights are missing would."""

    def create_renderer(self) -> Renderer:
        raise RuntimeError(f"backend {self.name} found no device to render on")


class _GatedRenderer(_SleepRenderer):
    def render(self, task, condition) -> Iterator[np.ndarray]:
        # Render only once the failed starts the test waits for happened (or after 30 s).
        deadline = time.monotonic() + 30
        while (len(list(Path(self.b.log_dir).glob("failed-*"))) < self.b.gate
               and time.monotonic() < deadline):
            time.sleep(0.05)
        yield from super().render(task, condition)


class OneGoodActorBackend(SleepBackend):
    """Only its first actor can make a renderer; every later one fails to start, as actors on a
    node without the backend's dependencies do once one on a good node came up. Each failed
    start leaves a ``failed-*`` file in ``log_dir``; renders wait for ``gate`` of them."""

    def __init__(self, name: str, *, gate: int = 0, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.gate = gate

    def create_renderer(self) -> Renderer:
        try:
            os.close(os.open(os.path.join(self.log_dir, "good"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            Path(self.log_dir, f"failed-{os.getpid()}-{time.time_ns()}").touch()
            raise RuntimeError(f"backend {self.name}: its extra is not installed here") from None
        return _GatedRenderer(self)


class SlowStartBackend(SleepBackend):
    """Its first actor starts at once; every later one finishes starting (makes its renderer)
    only once ``<gate dir>/open`` exists (or after two minutes), as actors on nodes still
    pulling an image or loading weights would."""

    def __init__(self, name: str, gate_dir: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.gate_dir = gate_dir

    def create_renderer(self) -> Renderer:
        try:
            os.close(os.open(os.path.join(self.gate_dir, "first"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            deadline = time.monotonic() + 120
            while not Path(self.gate_dir, "open").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return _SleepRenderer(self)


class _GateRenderer(_SleepRenderer):
    def render(self, task, condition) -> Iterator[np.ndarray]:
        gate = Path(self.b.gate_dir)
        if self.b.hold is None or task.shot in self.b.hold:
            (gate / f"{task.key}.started").write_text(str(os.getpid()))
            while not (gate / "open").exists():
                time.sleep(0.05)
        yield from super().render(task, condition)


class GateBackend(SleepBackend):
    """Renders a shot only once the test opens the gate: ``<gate dir>/open`` exists.

    Each render first writes ``<gate dir>/<key>.started`` holding its process id, so a test
    knows that a render is under way (and in which process) without guessing how long it
    takes. The gate directory is ``$REELFARM_TEST_GATE_DIR`` where the backend is made (the
    driver). Installed as the ``gate`` backend for jobs on ``ray_head`` (an entry point there).
    """

    def __init__(self, name: str = "gate", gate_dir: str | None = None,
                 hold: frozenset[str] | None = None, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.gate_dir = gate_dir or os.environ.get("REELFARM_TEST_GATE_DIR", "")
        self.hold = hold  # the shots that wait for the gate (None: every shot)

    def create_renderer(self) -> Renderer:
        if not self.gate_dir:
            raise RuntimeError("the gate backend needs REELFARM_TEST_GATE_DIR")
        return _GateRenderer(self)


class _NoisyRenderer(_SleepRenderer):
    def render(self, task, condition) -> Iterator[np.ndarray]:
        import logging
        import subprocess
        import sys
        import warnings

        print(f"python print from {task.shot}")
        os.write(1, f"fd 1 write from {task.shot}\n".encode())
        os.write(2, f"fd 2 write from {task.shot}\n".encode())
        subprocess.run([sys.executable, "-c", f"print('child process of {task.shot}')"],
                       check=True)
        warnings.warn(f"a warning from {task.shot}", UserWarning, stacklevel=1)
        logging.getLogger("noisy.backend").warning("a log record from %s", task.shot)
        if self.b.secret_var:  # a careless backend printing a credential
            print(f"token is {os.environ.get(self.b.secret_var, '')}")
        if task.shot in self.b.fail_shots:
            _fail_deep(task.shot)
        yield from super().render(task, condition)


def _fail_deep(shot: str) -> None:
    raise ValueError(f"the noisy backend refuses {shot}")


class NoisyBackend(SleepBackend):
    """Writes to stdout and stderr in every way a backend can (print, the file descriptors, a
    child process, a warning, a log record) before rendering or failing ``fail_shots``; with
    ``secret_var``, it also prints that environment variable's value."""

    def __init__(self, name: str = "noisy", *, secret_var: str = "", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.secret_var = secret_var

    def create_renderer(self) -> Renderer:
        return _NoisyRenderer(self)


class NoopBackend(Backend):
    """Renders and writes nothing (``writes_nothing``): what is left of a task is the driver's
    own cost and the actor call. For benchmarks of the driver; registered only by ``use``."""

    name = "noop"
    version = "1"
    writes_nothing = True

    def key_params(self, task) -> dict[str, Any]:
        return {}

    def resources(self, renderer) -> Resources:
        return Resources(num_cpus=0.0, num_gpus=float(renderer.gpus or 0.0),
                         custom=custom_resources(renderer))

    def seconds_per_frame(self, renderer, profile) -> float:
        return 0.0

    def create_renderer(self) -> Renderer:
        return _NoRenderer()


class _NoRenderer(Renderer):
    def render(self, task, condition) -> Iterator[np.ndarray]:
        raise AssertionError("a no-op backend's tasks never reach a renderer")


class _CountingRenderer(_SleepRenderer):
    def render(self, task, condition) -> Iterator[np.ndarray]:
        # one file per render, never overwritten: the test counts renders of each key
        Path(self.b.count_dir, f"{task.key}.{os.getpid()}.{time.time_ns()}").touch()
        yield from super().render(task, condition)


class CountingBackend(SleepBackend):
    """A ``SleepBackend`` that leaves ``<count_dir>/<key>.<pid>.<ns>`` for every render it
    starts (see :func:`renders`)."""

    def __init__(self, name: str, count_dir: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.count_dir = count_dir

    def create_renderer(self) -> Renderer:
        return _CountingRenderer(self)


def renders(count_dir) -> dict[str, int]:
    """Renders started by a ``CountingBackend``, by render key."""
    out: dict[str, int] = {}
    for p in Path(count_dir).iterdir():
        key = p.name.split(".")[0]
        out[key] = out.get(key, 0) + 1
    return out
