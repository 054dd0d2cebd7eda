"""The shot renderer: a Ray actor that keeps a backend warm and renders tasks into the store.

One actor holds one backend's :class:`~actors.backends.Renderer` (and so its loaded models)
for its whole life: Ray does not reuse worker processes between GPU tasks, so a task per shot
would load the model every time. Each render writes the clip and the last frame to the store
itself, then the action record, and returns only that small record to the driver: no video
bytes pass through Ray's object store. Each render's output is kept as the shot's log
(:mod:`actors.shotlog`), a text blob in the store, so it outlives the cluster.
"""

from __future__ import annotations

import collections
import os
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.shotlog import ShotLog
from orchestrator.store import ActionRecord, BlobRef, CorruptBlob, open_store
from orchestrator.store.base import utcnow

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


class ShotFailed(RuntimeError):
    """A render raised. ``summary`` is the error in one line, ``log`` the digest of the
    shot's log in the store (``None`` when it could not be stored), ``traceback`` the full
    traceback, as text."""

    def __init__(self, summary: str, *, log: str | None, traceback: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.log = log
        self.traceback = traceback

    def __reduce__(self):  # picklable across Ray: keyword-only arguments
        return (_shot_failed, (self.summary, self.log, self.traceback))


def _shot_failed(summary: str, log: str | None, tb: str) -> ShotFailed:
    return ShotFailed(summary, log=log, traceback=tb)


def _summary(err: BaseException) -> str:
    """``Type: last line of the message``, at most 500 characters."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:500]


def _log_header(task: RenderTask, backend: Backend, node: str) -> str:
    return (f"reelfarm {reelfarm_version()}: task {task.id} (shot {task.shot}, "
            f"segment {task.segment}), key {task.key}, backend {backend.name} "
            f"{backend.version}, node {node}, pid {os.getpid()}, started {utcnow()}")


def reelfarm_version() -> str:
    """The installed reelfarm's version (``unknown`` when it runs from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reelfarm")
    except PackageNotFoundError:
        return "unknown"


CONTROL = "control"
#: Ray's options for the actor class: renders run one at a time, in the order they were sent;
#: a recall (:meth:`ShotRenderer.recall`) runs at once beside them, on its own thread.
ACTOR_OPTIONS = {"concurrency_groups": {CONTROL: 1}}
_BEGUN_KEPT = 64  # tickets of the last calls begun, for recalls that come too late


class ShotRenderer:
    """Wrap with ``ray.remote(**ACTOR_OPTIONS)(ShotRenderer)`` and ``max_concurrency=1``; see
    :mod:`orchestrator.run.pool`.

    A driver may send several renders at once (pipelined dispatch): each starts when the one
    before it ends. A render that has not started can be taken back with :meth:`recall` (its
    call then returns ``None`` at once), so the driver can give it to another worker."""

    def __init__(self, store_url: str | None, s3_endpoint: str | None,
                 backend: Backend | BackendPayload) -> None:
        # An actor of the farm serves jobs with different stores: each render names its own
        # (opened once per actor); ``store_url`` is the default for renders that name none.
        self._stores: dict[tuple[str, str | None], Any] = {}
        self.store = self._store((store_url, s3_endpoint)) if store_url else None
        self.backend = backend.load() if isinstance(backend, BackendPayload) else backend
        self._renderer: Renderer | None = None
        self.node = _node_name()
        self._gate = threading.Lock()
        self._recalled: set[str] = set()
        self._begun: collections.deque[str] = collections.deque(maxlen=_BEGUN_KEPT)

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

    def recall(self, ticket: str) -> bool:
        """Take back the render call named ``ticket`` if it has not started: True, and that
        call returns ``None`` without rendering; False when it has started (or finished).
        Call it in the ``control`` concurrency group (``.options(concurrency_group=...)``),
        so that it does not wait behind the renders."""
        with self._gate:
            if ticket in self._begun:
                return False
            self._recalled.add(ticket)
            return True

    def _begin(self, ticket: str | None) -> bool:
        """Whether the call named ``ticket`` may run (False: it was recalled)."""
        if ticket is None:
            return True
        with self._gate:
            if ticket in self._recalled:
                self._recalled.discard(ticket)
                return False
            self._begun.append(ticket)
            return True

    def render(self, task: RenderTask, condition: BlobRef | None,
               store: tuple[str, str | None] | None = None,
               ticket: str | None = None) -> ActionRecord | None:
        """Render ``task`` into the store and return its action record. Everything the render
        prints (the backend's and ffmpeg's output, warnings, log records, a failure's
        traceback) is kept as the shot's log, a text blob named by ``outputs["log"]``; a
        failure raises :class:`ShotFailed`, which names the log (it is stored all the same).
        ``None``: the call named ``ticket`` was recalled before it started."""
        if not self._begin(ticket):
            return None
        self.store = self._store(store) if store else self.store
        if self.backend.writes_nothing:  # a benchmark of the driver: nothing made or stored
            return ActionRecord(key=task.key, kind="noop", outputs={}, frames=0,
                                backend=self.backend.name, node=self.node)

        log = ShotLog(_log_header(task, self.backend, self.node))
        failed: tuple[str, str] | None = None
        with log:
            try:
                outputs, written, seconds, load = self._render(task, condition)
            except CorruptBlob:
                raise  # the store's fault, not the shot's: its task renders again
            except Exception as err:  # noqa: BLE001 - every failure keeps its log
                failed = (_summary(err), traceback.format_exc())
                log.write(failed[1])
        if failed is not None:
            summary, tb = failed
            raise ShotFailed(summary, log=self._put_log(log.text()), traceback=tb)
        outputs["log"] = self.store.put_bytes(log.text().encode("utf-8"))
        p = task.profile
        record = ActionRecord(
            key=task.key,
            outputs=outputs,
            frames=written,
            width=p.width,
            height=p.height,
            fps=p.fps,
            backend=self.backend.name,
            backend_version=self.backend.version,
            seconds=seconds,
            load_seconds=load,
            node=self.node,
            inputs=task.inputs,
        )
        self.store.put_action(record)  # last: a record always points at blobs that exist
        return record

    def _put_log(self, text: str) -> str | None:
        """Store a failed render's log; ``None`` when the store cannot take it (the failure
        itself is what the driver must hear of)."""
        try:
            return self.store.put_bytes(text.encode("utf-8")).sha256
        except Exception:  # noqa: BLE001
            return None

    def _render(self, task: RenderTask, condition: BlobRef | None,
                ) -> tuple[dict[str, BlobRef], int, float, float]:
        """Render, encode and store the clip, the last frame and the poster (the middle
        frame, small, for thumbnails): ``(outputs, frames, seconds, load seconds)``."""
        from actors.encode import (
            ClipEncoder,
            check_encoder,
            decode_png,
            encode_png,
            encode_poster,
        )

        check_encoder(task.encoder_build)  # never store another build's bytes under this key
        started = time.perf_counter()
        cond = decode_png(self.store.get_bytes(condition.sha256)) if condition else None
        if self._renderer is None:
            self._renderer = self.backend.create_renderer()
        renderer = self._renderer
        middle = task.frames // 2
        poster = None
        with tempfile.TemporaryDirectory(prefix="reelfarm-") as tmp:
            clip_path = Path(tmp) / "clip.mp4"
            with ClipEncoder(clip_path, task.profile) as enc:
                for i, frame in enumerate(renderer.render(task, cond)):
                    enc.write(frame)
                    if i == middle:
                        poster = enc.last_frame.copy()
            written = enc.close()
            if written != task.frames:
                raise RenderFailed(
                    f"backend {self.backend.name} rendered {written} frames, task asked for "
                    f"{task.frames}"
                )
            clip = self.store.put_file(clip_path)
            last = self.store.put_bytes(encode_png(enc.last_frame))
            small = self.store.put_bytes(encode_poster(enc.last_frame if poster is None
                                                       else poster))
        outputs = {"clip": clip, "last_frame": last, "poster": small}
        return (outputs, written, round(time.perf_counter() - started, 4),
                round(renderer.last_load_seconds(), 4))

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _node_name() -> str:
    """``host/<node id prefix>``: pods have their own hostnames, test nodes share one."""
    try:
        import ray

        # never start a Ray to ask (get_runtime_context would, outside one)
        node_id = (ray.get_runtime_context().get_node_id() or "") if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside Ray
        node_id = ""
    host = socket.gethostname()
    return f"{host}/{node_id[:8]}" if node_id else host
