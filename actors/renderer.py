"""The shot renderer: a Ray actor that keeps a backend warm and renders tasks into the store.

One actor holds one backend's :class:`~actors.backends.Renderer` (and so its loaded models)
for its whole life: Ray does not reuse worker processes between GPU tasks, so a task per shot
would load the model every time. Each render writes the clip and the last frame to the store
itself, then the action record, and returns only that small record to the driver: no video
bytes pass through Ray's object store.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.store import ActionRecord, BlobRef, open_store

if TYPE_CHECKING:
    from actors.backends import Backend, Renderer
    from orchestrator.plan import RenderTask


class RenderFailed(RuntimeError):
    """A render produced something other than what its task asked for."""


@dataclass(frozen=True)
class BackendPayload:
    """A backend pickled on the driver, unpickled only in the renderer actor: the farm that
    makes actors for many jobs never needs a job's backend code itself."""

    name: str
    data: bytes

    @classmethod
    def of(cls, backend: Backend) -> BackendPayload:
        import ray.cloudpickle

        return cls(backend.name, ray.cloudpickle.dumps(backend))

    def load(self) -> Backend:
        import ray.cloudpickle

        return ray.cloudpickle.loads(self.data)


class ShotRenderer:
    """Wrap with ``ray.remote(ShotRenderer).options(...)``; see :mod:`orchestrator.schedule`."""

    def __init__(self, store_url: str | None, s3_endpoint: str | None,
                 backend: Backend | BackendPayload) -> None:
        # An actor of the farm serves jobs with different stores: each render names its own
        # (opened once per actor); ``store_url`` is the default for renders that name none.
        self._stores: dict[tuple[str, str | None], Any] = {}
        self.store = self._store((store_url, s3_endpoint)) if store_url else None
        self.backend = backend.load() if isinstance(backend, BackendPayload) else backend
        self._renderer: Renderer | None = None
        self.node = _node_name()

    def info(self) -> dict[str, Any]:
        """Finish starting, then say where this actor runs. The scheduler calls it once and
        counts the actor ready when it returns, so the encoder's imports and the backend's
        renderer are made here, before the first task (on a small node, dozens of actors
        starting at once would otherwise pay for them inside their first renders); a backend
        whose renderer cannot be made fails the actor's start, not a shot."""
        import ray

        import actors.encode

        actors.encode.encoder_id()  # read the ffmpeg build now, not inside the first render

        if self._renderer is None:
            self._renderer = self.backend.create_renderer()

        ctx = ray.get_runtime_context()
        return {
            "node": self.node,
            "node_id": ctx.get_node_id(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    def loaded_models(self) -> list[str]:
        return self._renderer.loaded_models() if self._renderer else []

    def _store(self, where: tuple[str, str | None]) -> Any:
        if where not in self._stores:
            self._stores[where] = open_store(where[0], s3_endpoint=where[1])
        return self._stores[where]

    def render(self, task: RenderTask, condition: BlobRef | None,
               store: tuple[str, str | None] | None = None) -> ActionRecord:
        from actors.encode import ClipEncoder, check_encoder, decode_png, encode_png

        self.store = self._store(store) if store else self.store

        check_encoder(task.encoder_build)  # never store another build's bytes under this key
        started = time.perf_counter()
        cond = decode_png(self.store.get_bytes(condition.sha256)) if condition else None
        if self._renderer is None:
            self._renderer = self.backend.create_renderer()
        renderer = self._renderer
        p = task.profile
        with tempfile.TemporaryDirectory(prefix="reelfarm-") as tmp:
            clip_path = Path(tmp) / "clip.mp4"
            with ClipEncoder(clip_path, p) as enc:
                for frame in renderer.render(task, cond):
                    enc.write(frame)
            written = enc.close()
            if written != task.frames:
                raise RenderFailed(
                    f"backend {self.backend.name} rendered {written} frames, task asked for "
                    f"{task.frames}"
                )
            clip = self.store.put_file(clip_path)
            last = self.store.put_bytes(encode_png(enc.last_frame))
        record = ActionRecord(
            key=task.key,
            outputs={"clip": clip, "last_frame": last},
            frames=written,
            width=p.width,
            height=p.height,
            fps=p.fps,
            backend=self.backend.name,
            backend_version=self.backend.version,
            seconds=round(time.perf_counter() - started, 4),
            load_seconds=round(renderer.last_load_seconds(), 4),
            node=self.node,
        )
        self.store.put_action(record)  # last: a record always points at blobs that exist
        return record

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _node_name() -> str:
    """``host/<node id prefix>``: pods have their own hostnames, test nodes share one."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id() or ""
    except Exception:  # noqa: BLE001 - outside Ray
        node_id = ""
    host = socket.gethostname()
    return f"{host}/{node_id[:8]}" if node_id else host
