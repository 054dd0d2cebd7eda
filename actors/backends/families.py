"""Pipeline families of the diffusers backend: which classes, which frame and size rules.

A *family* groups the diffusers pipeline classes that share one set of weights: a text-to-video
class for ``cut`` shots and an image-to-video sibling for ``continuity: previous`` shots, made
from the loaded pipeline with ``from_pipe`` (no second load). The rules here are what the
model's VAE and transformer can actually render, checked at ``validate``/``plan`` time so that a
bad frame count is never discovered on a GPU an hour into a run.

This module is import-light: no torch, no diffusers. It reads a model directory's
``model_index.json`` (and, for Wan, the VAE and transformer configs) as plain JSON.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    """One pipeline family and the rules its models share."""

    name: str
    title: str
    #: diffusers class for text-to-video (``cut`` shots); ``None`` for image-only families
    t2v: str | None
    #: diffusers class for image-to-video (``continuity: previous`` shots)
    i2v: str
    #: every ``model_index.json`` ``_class_name`` that belongs to this family
    classes: tuple[str, ...]
    #: frames = frame_step * k + 1 (the VAE's temporal compression)
    frame_step: int
    min_frames: int
    max_frames: int
    #: width and height must be multiples of this (VAE spatial compression x patch size)
    size_multiple: int
    #: rough H100 seconds per frame per step at 768x512, for scheduling estimates
    seconds_per_frame_step: float
    uses_prompt: bool = True

    def frames_ok(self, frames: int) -> bool:
        return (
            self.min_frames <= frames <= self.max_frames and (frames - 1) % self.frame_step == 0
        )

    def nearest_frames(self, frames: int) -> int:
        """The valid frame count nearest to ``frames`` (the larger one on a tie)."""
        k = math.floor((frames - 1) / self.frame_step + 0.5)
        n = k * self.frame_step + 1
        while n < self.min_frames:
            n += self.frame_step
        while n > self.max_frames:
            n -= self.frame_step
        return n

    def frame_rule(self) -> str:
        if self.frame_step == 1:
            return f"{self.min_frames} to {self.max_frames} frames"
        return f"{self.frame_step}k+1 frames ({self.min_frames} to {self.max_frames})"


FAMILIES: dict[str, Family] = {
    "ltx": Family(
        name="ltx",
        title="LTX-Video",
        t2v="LTXPipeline",
        i2v="LTXImageToVideoPipeline",
        classes=("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"),
        frame_step=8,
        min_frames=9,
        max_frames=257,
        size_multiple=32,
        seconds_per_frame_step=0.006,
    ),
    "wan": Family(
        name="wan",
        title="Wan 2.1 / 2.2",
        t2v="WanPipeline",
        i2v="WanImageToVideoPipeline",
        classes=("WanPipeline", "WanImageToVideoPipeline"),
        frame_step=4,
        min_frames=5,
        max_frames=161,
        size_multiple=16,
        seconds_per_frame_step=0.025,
    ),
    "svd": Family(
        name="svd",
        title="Stable Video Diffusion (image-to-video only)",
        t2v=None,
        i2v="StableVideoDiffusionPipeline",
        classes=("StableVideoDiffusionPipeline",),
        frame_step=1,
        min_frames=2,
        max_frames=25,
        size_multiple=64,
        seconds_per_frame_step=0.05,
        uses_prompt=False,
    ),
}


class UnknownFamily(ValueError):
    pass


def supported() -> str:
    return ", ".join(f"{f.name} ({f.title})" for f in FAMILIES.values())


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(
            f"unknown diffusers pipeline family {name!r}; supported: {supported()}"
        ) from None


def family_of_class(class_name: str) -> Family | None:
    for fam in FAMILIES.values():
        if class_name in fam.classes:
            return fam
    return None


def local_model_dir(model: str) -> Path | None:
    """``model`` as a local directory when it names one (hub ids are ``org/name``)."""
    p = Path(os.path.expanduser(model))
    if p.is_dir():
        return p
    return None


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_model_index(model: str, revision: str | None = None) -> dict[str, Any] | None:
    """The model's ``model_index.json`` when it can be read without a download.

    A local directory is read directly; a hub id is looked up in the local Hugging Face cache
    only (never fetched here: this runs at plan time on the control plane).
    """
    d = local_model_dir(model)
    if d is not None:
        return _read_json(d / "model_index.json")
    if looks_like_path(model):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "model_index.json", revision=revision)
    except Exception:  # malformed ids and the like: treat as not cached
        return None
    if isinstance(found, str):
        return _read_json(Path(found))
    return None


def detect_family(model: str, revision: str | None = None) -> tuple[Family | None, str]:
    """The family of ``model`` from its ``model_index.json``, or ``None`` and why not."""
    index = read_model_index(model, revision)
    if index is None:
        where = "directory" if local_model_dir(model) else "model"
        return None, (
            f"cannot read model_index.json of {where} {model!r} here to tell its pipeline "
            f"family; set renderer.pipeline to one of: {', '.join(FAMILIES)}"
        )
    cls = str(index.get("_class_name", ""))
    fam = family_of_class(cls)
    if fam is None:
        return None, (
            f"model {model!r} is a {cls or 'pipeline of unknown class'}, which no supported "
            f"family renders; supported: {supported()}"
        )
    return fam, ""


def size_multiple(fam: Family, model: str | None) -> int:
    """Width/height multiple for ``model``: the family's, refined from a local model's configs.

    Wan 2.1 models compress 8x spatially with 2x2 patches (multiples of 16); Wan 2.2's 5B
    model compresses 16x (multiples of 32). The configs say which.
    """
    if fam.name != "wan" or model is None:
        return fam.size_multiple
    d = local_model_dir(model)
    if d is None:
        return fam.size_multiple
    vae = _read_json(d / "vae" / "config.json") or {}
    tr = _read_json(d / "transformer" / "config.json") or {}
    scale = int(vae.get("scale_factor_spatial") or 8)
    patch = tr.get("patch_size") or [1, 2, 2]
    try:
        p = int(patch[-1])
    except (TypeError, ValueError, IndexError):
        p = 2
    return max(1, scale * p)


def nearest_multiple(value: int, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``value`` (the larger one on a tie), at least one."""
    return max(multiple, math.floor(value / multiple + 0.5) * multiple)
