"""``previz``: a CPU animatic renderer, the default backend.

Each shot is a slate over a moving backdrop: the shot id, its segment and the prompt (wrapped) in
a title-safe frame, a timecode (HH:MM:SS:FF) and a frame counter, over a background derived from
the shot's seed and prompt (a gradient, soft shapes and a faint grid) that the camera slowly
pushes into or pulls out of while panning. With a conditioning frame (``continuity: previous``)
frame 0 *is* that frame; the camera keeps pushing into it while it dissolves into the new shot,
so the join reads as one continuous move.

Everything is a function of the task (seeded from its seed and prompt, no global RNG, no clock),
so a task renders the same frames every time. Static layers are drawn once per shot; a frame is
one crop-and-resize of the backdrop, one paste of the slate and a few characters of text.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .base import Backend, Renderer, Resources

if TYPE_CHECKING:
    from orchestrator.plan import RenderTask
    from orchestrator.spec.manifest import Profile, RendererSpec

#: The backdrop is this much larger than the frame, so the camera has room to move.
CANVAS_SCALE = 1.3
#: Seconds over which a continuity shot dissolves from its conditioning frame.
DISSOLVE_SECONDS = 0.75


class PrevizBackend(Backend):
    name = "previz"
    version = "1"

    def key_params(self, task: RenderTask) -> dict[str, Any]:
        # The slate burns the shot and segment ids into the pixels, so they are part of the key
        # (the generic key leaves ids out). Prompt, seed, frames and profile are generic inputs.
        return {"slate": {"shot": task.shot, "segment": task.segment}}

    def resources(self, renderer: RendererSpec) -> Resources:
        return Resources(num_cpus=1.0)

    def seconds_per_frame(self, renderer: RendererSpec, profile: Profile) -> float:
        # about 10 ms a frame at 640x360 on one core, drawing and encoding together
        return 0.01 * max(0.25, profile.width * profile.height / (640 * 360))

    def create_renderer(self) -> Renderer:
        return PrevizRenderer()


class PrevizRenderer(Renderer):
    def render(self, task: RenderTask, condition: np.ndarray | None) -> Iterator[np.ndarray]:
        shot = _Shot(task, condition)
        for i in range(task.frames):
            yield shot.frame(i)


# -- drawing --------------------------------------------------------------------------------------


def _rng(task: RenderTask) -> np.random.Generator:
    """The shot's own generator: seeded from its seed and prompt, so its look survives renames."""
    h = hashlib.sha256(f"previz\0{task.seed}\0{task.prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:16], "big"))


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, round(size)))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _backdrop(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient between two related hues, soft blobs of light and a faint perspective grid."""
    hue = rng.random()
    top = np.array(_hsv(hue, 0.6, 0.55), dtype=np.float32)
    bottom = np.array(_hsv(hue + rng.uniform(0.08, 0.3), 0.65, 0.18), dtype=np.float32)
    angle = rng.uniform(-0.6, 0.6)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (ys / height) * np.cos(angle) + (xs / width) * np.sin(angle)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    grad = top * (1 - t[..., None]) + bottom * t[..., None]
    img = Image.fromarray(grad.astype(np.uint8))

    blobs = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(blobs)
    for _ in range(int(rng.integers(5, 9))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.08, 0.25) * height
        color = _hsv(hue + rng.uniform(-0.15, 0.45), rng.uniform(0.4, 0.9), rng.uniform(0.45, 0.95))
        draw.ellipse((cx - r * 1.6, cy - r, cx + r * 1.6, cy + r), fill=color)
    blobs = blobs.filter(ImageFilter.GaussianBlur(radius=max(2, height / 18)))
    img = Image.blend(img, Image.composite(blobs, img, blobs.convert("L")), 0.75)

    grid = ImageDraw.Draw(img, "RGBA")
    line = (255, 255, 255, 26)
    step = max(8, height // 8)
    for x in range(int(rng.integers(0, step)), width, step):
        grid.line((x, 0, x, height), fill=line, width=1)
    for y in range(int(rng.integers(0, step)), height, step):
        grid.line((0, y, width, y), fill=line, width=1)
    for _ in range(int(rng.integers(12, 24))):  # a few sharp specks, so motion is easy to see
        x, y, s = rng.uniform(0, width), rng.uniform(0, height), max(1.0, height / 260)
        grid.ellipse((x - s, y - s, x + s, y + s), fill=(255, 255, 255, 110))
    return img


def _wrap(text: str, font: Any, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; long words are cut; an ellipsis when it overflows.

    Linear in the text's length, and it stops once ``max_lines`` are full: a word wider than
    the line is cut character by character (each measure is of one line, never of the rest of
    the word), so a 4,000-character prompt without spaces wraps as fast as a short one.
    """
    lines: list[str] = []

    def fits(s: str) -> bool:
        return font.getlength(s) <= width

    for paragraph in text.splitlines() or [""]:
        cur = ""
        for word in paragraph.split():
            if len(lines) > max_lines:
                break
            if cur and fits(f"{cur} {word}"):
                cur = f"{cur} {word}"
                continue
            if cur:
                lines.append(cur)
                cur = ""
            if len(word) <= _MAX_LINE_CHARS and fits(word):  # longer never fits: skip measuring
                cur = word
                continue
            for ch in word:  # a word wider than the line: cut it where it no longer fits
                if not cur or fits(cur + ch):
                    cur += ch
                    continue
                lines.append(cur)
                cur = ch
                if len(lines) > max_lines:
                    break
        lines.append(cur)
        if len(lines) > max_lines:
            break
    lines = [ln for ln in lines if ln] or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + " …") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + " …"
    return lines


#: No line of a slate holds more characters than this (a line is at most a few hundred pixels).
_MAX_LINE_CHARS = 400


def _slate(task: RenderTask, width: int, height: int) -> Image.Image:
    """The static overlay (RGBA): safe-area marks, ids, the prompt panel, the previz tag."""
    u = height / 360
    over = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(over)
    mx, my = round(width * 0.05), round(height * 0.05)  # title safe: 90 %
    corner, thin = round(18 * u) + 2, max(1, round(u * 1.5))
    white = (255, 255, 255, 170)
    for x, y, dx, dy in (
        (mx, my, 1, 1),
        (width - mx, my, -1, 1),
        (mx, height - my, 1, -1),
        (width - mx, height - my, -1, -1),
    ):
        draw.line((x, y, x + dx * corner, y), fill=white, width=thin)
        draw.line((x, y, x, y + dy * corner), fill=white, width=thin)

    pad = round(8 * u) + 2
    small, big = _font(14 * u), _font(26 * u)
    draw.text((mx + pad, my + pad), task.segment.upper(), font=small, fill=(255, 255, 255, 200))
    y = my + pad + round(18 * u) + 1
    draw.text(
        (mx + pad, y), task.shot, font=big, fill=(255, 255, 255, 255),
        stroke_width=max(1, round(u)), stroke_fill=(0, 0, 0, 160),
    )  # fmt: skip
    tag = f"PREVIZ  seed {task.seed}"
    draw.text(
        (width - mx - pad - small.getlength(tag), my + pad), tag, font=small,
        fill=(255, 255, 255, 150),
    )  # fmt: skip

    body = _font(19 * u)
    line_h = round(24 * u) + 1
    max_lines = max(1, min(5, int(height * 0.3 / line_h)))
    lines = _wrap(task.prompt, body, width * 0.72, max_lines=max_lines)
    panel_h = line_h * len(lines) + 2 * pad
    top = round(height * 0.62 - panel_h / 2)
    left, right = round(width * 0.12), round(width * 0.88)
    draw.rounded_rectangle(
        (left, top, right, top + panel_h), radius=round(8 * u) + 1, fill=(0, 0, 0, 120)
    )
    for i, text in enumerate(lines):
        tw = body.getlength(text)
        draw.text((width / 2 - tw / 2, top + pad + i * line_h), text, font=body, fill="white")
    return over


class _Shot:
    """One shot's precomputed layers and camera move."""

    def __init__(self, task: RenderTask, condition: np.ndarray | None) -> None:
        p = task.profile
        self.task, self.w, self.h, self.fps = task, p.width, p.height, p.fps
        rng = _rng(task)
        cw, ch = round(self.w * CANVAS_SCALE), round(self.h * CANVAS_SCALE)
        self.canvas = _backdrop(rng, cw, ch)
        self.slate = _slate(task, self.w, self.h)
        self.hud = _font(15 * self.h / 360)
        # the camera: a push in or a pull out, panning across the backdrop
        push = rng.random() < 0.7
        span = (1.0, 0.8) if push else (0.8, 1.0)  # viewport width, as a share of the canvas
        self.zoom = span
        self.centre0 = (rng.uniform(0.4, 0.6), rng.uniform(0.42, 0.58))
        angle = rng.uniform(0, 2 * np.pi)
        self.centre1 = (
            self.centre0[0] + 0.12 * np.cos(angle),
            self.centre0[1] + 0.08 * np.sin(angle),
        )
        self.condition: Image.Image | None = None
        if condition is not None:
            from actors.encode import fit_frame

            self.condition = Image.fromarray(fit_frame(condition, self.w, self.h))
        frames = task.frames
        self.dissolve = max(1, min(frames - 1, round(self.fps * DISSOLVE_SECONDS)))

    def _camera(self, u: float) -> Image.Image:
        cw, ch = self.canvas.size
        share = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * u
        vw, vh = cw * share, ch * share
        cx = (self.centre0[0] + (self.centre1[0] - self.centre0[0]) * u) * cw
        cy = (self.centre0[1] + (self.centre1[1] - self.centre0[1]) * u) * ch
        x0 = min(max(cx - vw / 2, 0.0), cw - vw)  # keep the viewport on the canvas
        y0 = min(max(cy - vh / 2, 0.0), ch - vh)
        box = (x0, y0, x0 + vw, y0 + vh)
        return self.canvas.resize((self.w, self.h), Image.Resampling.BILINEAR, box=box)

    def _hud(self, img: Image.Image, i: int) -> None:
        fps, h, w = self.fps, self.h, self.w
        secs, ff = divmod(i, fps)
        mins, ss = divmod(secs, 60)
        hh, mm = divmod(mins, 60)
        width = len(str(fps - 1))
        timecode = f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:0{max(2, width)}d}"
        total = self.task.frames
        counter = f"F {i + 1:0{len(str(total))}d}/{total}"
        draw = ImageDraw.Draw(img)
        mx, my = round(w * 0.05), round(h * 0.05)
        pad = round(8 * h / 360) + 2
        y = h - my - pad - round(18 * h / 360)
        style = {"font": self.hud, "stroke_width": 1, "stroke_fill": (0, 0, 0)}
        draw.text((mx + pad, y), counter, fill=(255, 255, 255), **style)
        tw = self.hud.getlength(timecode)
        draw.text((w - mx - pad - tw, y), timecode, fill=(255, 230, 120), **style)

    def frame(self, i: int) -> np.ndarray:
        total = self.task.frames
        u = i / (total - 1) if total > 1 else 0.0
        img = self._camera(u)
        img.paste(self.slate, (0, 0), self.slate)
        self._hud(img, i)
        if self.condition is None or i >= self.dissolve:
            return np.asarray(img)
        if i == 0:
            return np.asarray(self.condition)
        # keep pushing into the conditioning frame while it dissolves into this shot
        t = i / self.dissolve
        a = t * t * (3 - 2 * t)  # smoothstep
        share = 1.0 - 0.12 * t
        vw, vh = self.w * share, self.h * share
        x0, y0 = (self.w - vw) / 2, (self.h - vh) / 2
        moved = self.condition.resize(
            (self.w, self.h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + vw, y0 + vh)
        )
        return np.asarray(Image.blend(moved, img, a))
