"""The ``diffusers`` backend: text-to-video and image-to-video shots on GPU workers.

Two halves, as every backend (:mod:`actors.backends.base`):

* :class:`DiffusersBackend` runs on the control plane at ``validate``/``plan`` time. It imports
  nothing heavy (no torch, no diffusers): it checks each family's frame and size rules, names the
  parameters that change pixels and asks Ray for GPUs.
* :class:`DiffusersRenderer` runs inside a renderer actor. It loads a pipeline once
  (``from_pretrained``), keeps an LRU of loaded pipelines, renders ``cut`` shots with the
  family's text-to-video pipeline and ``continuity: previous`` shots with its image-to-video
  sibling made by ``from_pipe`` from the same weights (no second load).

Install with ``pip install 'reelfarm[diffusion]'``. See ``docs/diffusers.md``.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import families
from .base import Backend, Issue, Renderer, Resources, custom_resources
from .families import Family

if TYPE_CHECKING:
    import numpy as np

    from orchestrator.plan import RenderTask
    from orchestrator.spec.manifest import Profile, RendererSpec

#: Image-to-video micro-conditioning of the ``svd`` family (constants: the backend version
#: covers them).
SVD_MOTION_BUCKET_ID = 127
SVD_NOISE_AUG_STRENGTH = 0.02
SVD_FPS = 7


def requested_gpus(renderer: RendererSpec) -> float:
    """GPUs one render asks Ray for: ``renderer.gpus``, default 1."""
    return 1.0 if renderer.gpus is None else float(renderer.gpus)


def resolve_dtype(renderer: RendererSpec) -> str:
    """The dtype a shot renders in: as set, else bfloat16 on a GPU and float32 on the CPU.

    "On a GPU" means the shot asks for one (``gpus`` > 0, the default); the renderer uses the
    same rule, so the cache key always names the dtype the pixels were made in.
    """
    if renderer.dtype:
        return renderer.dtype
    return "bfloat16" if requested_gpus(renderer) > 0 else "float32"


def resolve_family(renderer: RendererSpec) -> Family:
    """The shot's family: ``renderer.pipeline``, else read from the model's model_index.json."""
    if renderer.pipeline:
        return families.get_family(renderer.pipeline)
    if not renderer.model:
        raise ValueError("renderer.model is not set")
    fam, why = families.detect_family(renderer.model, renderer.revision)
    if fam is None:
        raise families.UnknownFamily(why)
    return fam


def _fmt_seconds(frames: int, fps: int) -> str:
    return f"{frames / fps:.6g}"


class DiffusersBackend(Backend):
    """Shots rendered by Hugging Face ``diffusers`` video pipelines."""

    name = "diffusers"
    version = "1"

    def __init__(self, *, max_models: int | None = None, max_memory_gb: float | None = None):
        self.max_models = max_models
        self.max_memory_gb = max_memory_gb

    # -- validate / plan time -------------------------------------------------------------

    def check(self, renderer: RendererSpec, frames: int, profile: Profile) -> list[Issue]:
        issues: list[Issue] = []
        if not renderer.model:
            issues.append(
                Issue(
                    "renderer.model",
                    "the diffusers backend needs renderer.model: a hub id (org/name) or a local "
                    "directory holding a diffusers pipeline (model_index.json)",
                )
            )
        fam: Family | None = None
        if renderer.pipeline:
            try:
                fam = families.get_family(renderer.pipeline)
            except families.UnknownFamily as e:
                issues.append(Issue("renderer.pipeline", str(e)))
        elif renderer.model:
            fam, why = families.detect_family(renderer.model, renderer.revision)
            if fam is None:
                issues.append(Issue("renderer.pipeline", why))
        if requested_gpus(renderer) == 0 and renderer.offload not in (None, "none"):
            issues.append(
                Issue(
                    "renderer.offload",
                    f"offload {renderer.offload!r} moves weights between CPU and GPU, but this "
                    "shot renders on the CPU (renderer.gpus is 0); use offload: none",
                )
            )
        if fam is None:
            return issues

        if not fam.frames_ok(frames):
            best = fam.nearest_frames(frames)
            issues.append(
                Issue(
                    "duration",
                    f"{fam.name} renders {fam.frame_rule()}; this shot is {frames} frames "
                    f"({_fmt_seconds(frames, profile.fps)}s at {profile.fps} fps); nearest valid: "
                    f"{best} frames (duration: {_fmt_seconds(best, profile.fps)})",
                )
            )
        multiple = families.size_multiple(fam, renderer.model)
        for axis in ("width", "height"):
            value = getattr(profile, axis)
            if value % multiple:
                issues.append(
                    Issue(
                        f"profile.{axis}",
                        f"{fam.name} renders {axis}s that are multiples of {multiple}; "
                        f"{axis} {value} is not; nearest valid: "
                        f"{families.nearest_multiple(value, multiple)}",
                    )
                )
        return issues

    def check_continuity(self, renderer: RendererSpec, continuity: str) -> list[Issue]:
        """Image-only families cannot start a shot from nothing: a cut needs an image."""
        try:
            fam = resolve_family(renderer)
        except ValueError:
            return []  # reported by check()
        if fam.t2v is None and continuity != "previous":
            return [Issue("continuity", _cut_needs_image(fam))]
        return []

    def check_task(self, task: RenderTask) -> list[Issue]:
        """:meth:`check` plus what needs the shot's continuity (image-only families)."""
        return self.check(task.renderer, task.frames, task.profile) + self.check_continuity(
            task.renderer, task.continuity
        )

    def pin_revision(self, renderer: RendererSpec) -> tuple[RendererSpec, str | None]:
        """``renderer`` with a hub model's revision resolved to a commit, and a note when not.

        A revision left out (``main``) or naming a branch or tag moves when the repository does,
        so the key would name a moving target. It is resolved offline, in the local Hugging Face
        cache (no download at plan time); the task then loads that commit on every node. When the
        cache does not know it, the revision stays as written and the note says the shot is keyed
        on a moving branch (``plan`` prints it). Local directories have no revision.
        """
        model, rev = renderer.model, renderer.revision
        if not model or families.local_model_dir(model) is not None or families.looks_like_path(
            model
        ):
            return renderer, None
        if rev is not None and _COMMIT.match(rev):
            return renderer, None
        commit = _cached_commit(model, rev or "main")
        if commit is not None:
            return renderer.model_copy(update={"revision": commit}), None
        return renderer, (
            f"{model}@{rev or 'main'} is keyed on a moving branch: the local Hugging Face cache "
            "does not know its commit; pin `revision:` to a commit, or download the model first"
        )

    def key_params(self, task: RenderTask) -> dict[str, Any]:
        spec = task.renderer
        return {
            "backend_version": self.version,
            "model": spec.model,
            "revision": spec.revision,
            "family": resolve_family(spec).name,
            "mode": "i2v" if task.continuity == "previous" else "t2v",
            "dtype": resolve_dtype(spec),
            "steps": spec.steps,
            "guidance": None if spec.guidance is None else float(spec.guidance),
            # VAE tiling decodes overlapping tiles and blends the seams: pixels differ slightly
            # from an untiled decode, so it is part of the key. Offload only moves weights
            # between devices (same kernels, same order) and is not.
            "vae_tiling": bool(spec.vae_tiling),
        }

    def resources(self, renderer: RendererSpec) -> Resources:
        return Resources(
            num_cpus=1.0,
            num_gpus=requested_gpus(renderer),
            custom=custom_resources(renderer),
        )

    def model_ref(self, renderer: RendererSpec) -> str | None:
        return model_ref(renderer)

    def seconds_per_frame(self, renderer: RendererSpec, profile: Profile) -> float:
        try:
            fam = resolve_family(renderer)
            per_step = fam.seconds_per_frame_step
        except ValueError:
            per_step = 0.02
        pixels = profile.width * profile.height / (768 * 512)
        steps = renderer.steps or 30
        cfg = 2.0 if (renderer.guidance or 0.0) > 1.0 else 1.0
        estimate = per_step * steps * pixels * cfg
        if requested_gpus(renderer) == 0:
            estimate *= 200.0  # CPU
        elif renderer.offload == "sequential":
            estimate *= 10.0
        elif renderer.offload == "model":
            estimate *= 1.3
        return estimate

    def create_renderer(self) -> DiffusersRenderer:
        return DiffusersRenderer(max_models=self.max_models, max_memory_gb=self.max_memory_gb)


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _cached_commit(model: str, revision: str) -> str | None:
    """The commit the local Hugging Face cache records for ``model@revision``, or ``None``."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "model_index.json", revision=revision)
    except Exception:  # noqa: BLE001 - no huggingface_hub, a malformed id: not cached
        return None
    if not isinstance(found, str):
        return None
    commit = Path(found).parent.name  # .../snapshots/<commit>/model_index.json
    return commit if _COMMIT.match(commit) else None


def model_ref(renderer: RendererSpec) -> str:
    """What a renderer holds warm: ``model@revision/dtype``."""
    return f"{renderer.model}@{renderer.revision or 'main'}/{resolve_dtype(renderer)}"


def _cut_needs_image(fam: Family) -> str:
    return (
        f"{fam.name} ({fam.title}) renders image-to-video only, and a cut shot has no image to "
        "start from: use continuity: previous, or a text-to-video family "
        f"({', '.join(f.name for f in families.FAMILIES.values() if f.t2v)}) for cut shots"
    )


# -- the heavy half ----------------------------------------------------------------------------


class RenderError(RuntimeError):
    """A shot the diffusers renderer cannot render, with the reason."""


@dataclass
class _Loaded:
    """One loaded model and the sibling pipelines made from its weights."""

    ref: str
    family: Family
    device: str
    dtype: str
    offload: str
    nbytes: int
    pipes: dict[str, Any] = field(default_factory=dict)  # class name -> pipeline
    #: class name of the pipeline whose offload hooks are installed on the shared modules
    hooks_on: str | None = None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


class DiffusersRenderer(Renderer):
    """Renders shots with diffusers pipelines, keeping loaded models warm.

    ``max_models`` (default 1, env ``REELFARM_DIFFUSERS_MAX_MODELS``) and ``max_memory_gb``
    (default unbounded, env ``REELFARM_DIFFUSERS_MAX_MEMORY_GB``: the weights' bytes) bound the
    LRU of loaded pipelines; the least recently used one is evicted, and its GPU memory freed,
    before a new model moves to the device.
    """

    def __init__(self, *, max_models: int | None = None, max_memory_gb: float | None = None):
        self.max_models = max(1, max_models or _env_int("REELFARM_DIFFUSERS_MAX_MODELS") or 1)
        self.max_memory_gb = max_memory_gb or _env_float("REELFARM_DIFFUSERS_MAX_MEMORY_GB")
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._last_load = 0.0
        self._last_render = 0.0
        #: how many times a model was loaded with ``from_pretrained`` (siblings are not loads)
        self.loads = 0
        #: shots that ran out of GPU memory and were retried with model offload
        self.oom_retries = 0

    # -- the Renderer contract ------------------------------------------------------------

    def render(self, task: RenderTask, condition: np.ndarray | None) -> Iterator[np.ndarray]:
        self._last_load = 0.0
        t0 = time.perf_counter()
        frames = self._render(task, condition)
        self._last_render = time.perf_counter() - t0 - self._last_load
        return iter(frames)

    def loaded_models(self) -> list[str]:
        return list(self._loaded)

    def last_load_seconds(self) -> float:
        return self._last_load

    def last_render_seconds(self) -> float:
        """Seconds the last render spent rendering, load time excluded."""
        return self._last_render

    def close(self) -> None:
        while self._loaded:
            self._evict(next(iter(self._loaded)))

    # -- internals ------------------------------------------------------------------------

    def _render(self, task: RenderTask, condition: np.ndarray | None) -> list[np.ndarray]:
        import torch

        spec = task.renderer
        if not spec.model:
            raise RenderError("renderer.model is not set")
        fam = self._family(spec)
        i2v = task.continuity == "previous"
        if i2v and condition is None:
            raise RenderError(
                f"task {task.id} continues the previous shot but no conditioning frame was given"
            )
        if not i2v and fam.t2v is None:
            raise RenderError(_cut_needs_image(fam))
        cls_name = fam.i2v if i2v else fam.t2v
        assert cls_name is not None
        _check_family_requirements(fam)

        entry = self._acquire(spec, fam)
        kwargs = self._call_kwargs(task, fam, condition if i2v else None)
        out = None
        for attempt in (0, 1):
            pipe = self._pipeline(entry, cls_name)
            self._check_capable(pipe, fam, i2v, spec.model)
            if spec.vae_tiling:
                pipe.vae.enable_tiling()
            elif hasattr(pipe.vae, "disable_tiling"):
                pipe.vae.disable_tiling()
            generator = torch.Generator(device="cpu").manual_seed(int(task.seed))
            try:
                with torch.inference_mode():
                    out = pipe(**kwargs, generator=generator, output_type="np")
                break
            except _oom_errors():
                if attempt == 1 or entry.device == "cpu" or entry.offload != "none":
                    self._free_memory()
                    raise
            # out of GPU memory (outside the except block, so its traceback no longer holds
            # tensors): free what else is warm and render once more with the weights offloaded
            pipe = None
            for ref in [r for r in self._loaded if r != entry.ref]:
                self._evict(ref)
            self._free_memory()
            self.oom_retries += 1
            entry.offload = "model"
            entry.hooks_on = None
        assert out is not None
        return _to_uint8_frames(out.frames)

    def _family(self, spec: RendererSpec) -> Family:
        if spec.pipeline:
            return families.get_family(spec.pipeline)
        index = families.read_model_index(spec.model or "", spec.revision)
        if index is None and families.local_model_dir(spec.model or "") is None:
            index = _fetch_model_index(spec.model or "", spec.revision)
        if index is None:
            raise RenderError(f"cannot read model_index.json of {spec.model!r}")
        fam = families.family_of_class(str(index.get("_class_name", "")))
        if fam is None:
            raise RenderError(
                f"model {spec.model!r} is a {index.get('_class_name')}, which no supported "
                f"family renders; supported: {families.supported()}"
            )
        return fam

    def _device(self, spec: RendererSpec) -> str:
        import torch

        if requested_gpus(spec) == 0:
            return "cpu"
        if not torch.cuda.is_available():
            raise RenderError(
                f"renderer.gpus is {requested_gpus(spec):g} but no CUDA GPU is visible to this "
                "worker; set renderer.gpus: 0 to render on the CPU"
            )
        return "cuda"  # Ray sets CUDA_VISIBLE_DEVICES: device 0 is the GPU it assigned

    def _acquire(self, spec: RendererSpec, fam: Family) -> _Loaded:
        ref = model_ref(spec)
        entry = self._loaded.get(ref)
        if entry is not None:
            self._loaded.move_to_end(ref)
            if entry.device != "cpu":
                offload = _stronger_offload(entry.offload, spec.offload or "none")
                if offload != entry.offload:
                    entry.offload, entry.hooks_on = offload, None
            return entry

        import diffusers
        import torch

        device = self._device(spec)
        dtype = resolve_dtype(spec)
        t0 = time.perf_counter()
        index = families.read_model_index(spec.model or "", spec.revision)
        cls_name = str((index or {}).get("_class_name", ""))
        if cls_name not in fam.classes:
            cls_name = fam.t2v or fam.i2v
        cls = getattr(diffusers, cls_name)
        pipe = cls.from_pretrained(
            spec.model, revision=spec.revision, **_dtype_kwargs(getattr(torch, dtype))
        )
        self.loads += 1
        pipe.set_progress_bar_config(disable=True)
        nbytes = _pipeline_nbytes(pipe)
        # make room before the new weights reach the GPU
        while self._loaded and (
            len(self._loaded) >= self.max_models
            or (
                self.max_memory_gb is not None
                and sum(e.nbytes for e in self._loaded.values()) + nbytes
                > self.max_memory_gb * 1024**3
            )
        ):
            self._evict(next(iter(self._loaded)))
        offload = spec.offload or "none"
        if device == "cpu":
            offload = "none"
        entry = _Loaded(
            ref=ref, family=fam, device=device, dtype=dtype, offload=offload, nbytes=nbytes
        )
        entry.pipes[cls_name] = pipe
        if offload == "none":
            pipe.to(device)
        self._loaded[ref] = entry
        self._last_load += time.perf_counter() - t0
        return entry

    def _pipeline(self, entry: _Loaded, cls_name: str) -> Any:
        """The entry's pipeline of class ``cls_name``, made with ``from_pipe`` when missing."""
        import diffusers
        import torch

        pipe = entry.pipes.get(cls_name)
        if pipe is None:
            base = next(iter(entry.pipes.values()))
            cls = getattr(diffusers, cls_name)
            # dtype must be passed: from_pipe casts the shared modules to it (float32 otherwise)
            pipe = cls.from_pipe(base, **_dtype_kwargs(getattr(torch, entry.dtype)))
            pipe.set_progress_bar_config(disable=True)
            entry.pipes[cls_name] = pipe
        if entry.offload != "none" and entry.hooks_on != cls_name:
            # siblings share modules: offload hooks follow the pipeline that runs next
            for other in entry.pipes.values():
                if other is not pipe:
                    other.remove_all_hooks()
            if entry.offload == "sequential":
                pipe.enable_sequential_cpu_offload(device=entry.device)
            else:
                pipe.enable_model_cpu_offload(device=entry.device)
            entry.hooks_on = cls_name
        return pipe

    @staticmethod
    def _check_capable(pipe: Any, fam: Family, i2v: bool, model: str | None) -> None:
        """Wan text-to-video weights cannot take an image, nor image-to-video weights go without."""
        if fam.name != "wan":
            return
        transformer = getattr(pipe, "transformer", None)
        vae = getattr(pipe, "vae", None)
        if transformer is None or vae is None:
            return
        takes_image = transformer.config.in_channels != vae.config.z_dim or bool(
            getattr(pipe.config, "expand_timesteps", False)
        )
        conditions_by_channels = transformer.config.in_channels != vae.config.z_dim
        if i2v and not takes_image:
            raise RenderError(
                f"Wan model {model!r} is text-to-video only (transformer in_channels "
                f"{transformer.config.in_channels}): continuity: previous needs a Wan "
                "image-to-video or TI2V model"
            )
        if not i2v and conditions_by_channels:
            raise RenderError(
                f"Wan model {model!r} is image-to-video only: a cut shot needs a Wan "
                "text-to-video or TI2V model"
            )

    @staticmethod
    def _call_kwargs(task: RenderTask, fam: Family, condition: np.ndarray | None) -> dict:
        spec = task.renderer
        kwargs: dict[str, Any] = {
            "height": task.profile.height,
            "width": task.profile.width,
            "num_frames": task.frames,
            "num_inference_steps": int(spec.steps or 30),
        }
        guidance = float(spec.guidance if spec.guidance is not None else 5.0)
        if condition is not None:
            from PIL import Image

            kwargs["image"] = Image.fromarray(condition).convert("RGB")
        if fam.name == "svd":
            kwargs.update(
                min_guidance_scale=1.0,
                max_guidance_scale=guidance,
                fps=SVD_FPS,
                motion_bucket_id=SVD_MOTION_BUCKET_ID,
                noise_aug_strength=SVD_NOISE_AUG_STRENGTH,
                decode_chunk_size=8,
            )
            return kwargs
        kwargs.update(
            prompt=task.prompt,
            negative_prompt=task.negative_prompt or None,
            guidance_scale=guidance,
        )
        if fam.name == "ltx":
            kwargs["frame_rate"] = task.profile.fps
        return kwargs

    def _evict(self, ref: str) -> None:
        entry = self._loaded.pop(ref, None)
        if entry is None:
            return
        for pipe in entry.pipes.values():
            if entry.offload != "none":
                pipe.remove_all_hooks()
        entry.pipes.clear()
        del entry
        self._free_memory()

    @staticmethod
    def _free_memory() -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _check_family_requirements(fam: Family) -> None:
    """Packages a family's pipelines import lazily, checked before minutes of loading."""
    import importlib.util

    if fam.name == "wan" and importlib.util.find_spec("ftfy") is None:
        # diffusers' Wan pipelines clean prompts with ftfy (the image-to-video one requires it)
        raise RenderError("Wan pipelines need the ftfy package: pip install 'reelfarm[diffusion]'")


def _stronger_offload(a: str, b: str) -> str:
    order = {"none": 0, "model": 1, "sequential": 2}
    return a if order.get(a, 0) >= order.get(b, 0) else b


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    errors: list[type[BaseException]] = []
    for owner, name in ((torch, "OutOfMemoryError"), (torch.cuda, "OutOfMemoryError")):
        err = getattr(owner, name, None)
        if isinstance(err, type) and err not in errors:
            errors.append(err)
    return tuple(errors)


def _dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``dtype=`` where diffusers takes it (0.36+), ``torch_dtype=`` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def _fetch_model_index(model: str, revision: str | None) -> dict[str, Any] | None:
    """Read a hub model's model_index.json (a small download, on the worker, at render time)."""
    import json

    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model, "model_index.json", revision=revision)
    except Exception:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pipeline_nbytes(pipe: Any) -> int:
    import torch

    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for t in list(component.parameters()) + list(component.buffers()):
                total += t.numel() * t.element_size()
    return total


def _to_uint8_frames(frames: Any) -> list[np.ndarray]:
    """A pipeline's ``output_type="np"`` video (batch, frames, H, W, 3 floats in [0, 1])."""
    import numpy as np

    video = np.asarray(frames)
    if video.ndim == 5:
        video = video[0]
    if video.ndim != 4 or video.shape[-1] not in (1, 3, 4):
        raise RenderError(f"unexpected frames of shape {video.shape} from the pipeline")
    if video.dtype != np.uint8:
        video = (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    elif video.shape[-1] == 4:
        video = video[..., :3]
    return [np.ascontiguousarray(f) for f in video]
