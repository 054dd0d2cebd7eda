"""The one intermediate encode spec, and a streaming clip encoder.

Every clip of a story is encoded the same way, so masters are joined by stream copy:

* H.264 (libx264), High profile, yuv420p, BT.709 limited range (tagged), square pixels;
* constant frame rate (the profile's fps) and a fixed MP4 track timescale of ``fps * 1000``, so
  every frame lasts exactly 1000 ticks in every clip;
* no B-frames (decode order = presentation order, no edit lists or negative timestamps to
  reconcile at a join), an IDR keyframe at frame 0 and every ``2 * fps`` frames after it;
* CRF 20 with preset ``veryfast`` and a fixed thread count (x264's bytes depend on it), bit-exact
  muxing without metadata, ``+faststart`` (the index first, for players and HTTP range reads).

:func:`encode_spec` returns all of that as a JSON-able dict: it goes into every render key, so a
change here re-renders (bump :data:`ENCODE_VERSION` for changes the dict does not show).

The encoder itself is part of the spec: :func:`encoder_id` names the ffmpeg build and the x264
build inside it, read from the binary this process uses. Two builds can make different bytes
from the same frames, so they never share a key; a renderer refuses a task keyed for another
build (:class:`EncoderMismatch`) rather than store its bytes under that key.

Frames are streamed to ffmpeg's stdin as raw RGB; no file per frame touches the disk. A frame of
another size is fitted to the profile by :func:`fit_frame`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

import ffmpeg
import numpy as np
from PIL import Image

from .media import MediaError, ffmpeg_exe, temp_sibling

ENCODE_VERSION = "h264-cfr-1"

CRF = 20
PRESET = "veryfast"
THREADS = 2
GOP_SECONDS = 2
TIMESCALE_PER_FPS = 1000
PNG_COMPRESS_LEVEL = 6
POSTER_MAX_WIDTH = 320
POSTER_QUALITY = 80


class ProfileLike(Protocol):
    width: int
    height: int
    fps: int


class EncodeError(RuntimeError):
    """ffmpeg failed to encode a clip; the message carries the tail of its stderr."""


class EncoderMismatch(EncodeError):
    """This node's ffmpeg is not the build a task's key names: its bytes would not match."""


class EncoderUnusable(MediaError):
    """The chosen ffmpeg does not say which build it is, or cannot encode with libx264."""


_X264_BUILD = re.compile(rb"x264 - core (\d+)(?: r(\d+))?(?: ([0-9a-f]+))?")
_FFMPEG_VERSION = re.compile(r"^ffmpeg version (\S+)")


def encoder_id() -> dict[str, Any]:
    """The encoder this process uses: ffmpeg's version and the libx264 build inside it.

    Read from the binary itself (``-version``, and the x264 build string x264 writes into every
    stream it makes, from a one-frame test encode), once per binary. ``source`` says how the
    binary was chosen: ``imageio-ffmpeg`` (the pinned build, the default everywhere) or
    ``IMAGEIO_FFMPEG_EXE`` (an explicit choice).
    """
    exe = ffmpeg_exe()
    st = os.stat(exe)
    return dict(_encoder_id(exe, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _encoder_id(exe: str, _size: int, _mtime: int) -> tuple[tuple[str, Any], ...]:
    ver = subprocess.run(
        [exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=60
    )
    m = _FFMPEG_VERSION.match(ver.stdout)
    if ver.returncode != 0 or m is None:
        raise EncoderUnusable(f"{exe} -version names no ffmpeg version: {ver.stdout[:200]!r}")
    probe = subprocess.run(
        [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "color=c=black:s=16x16:d=0.04:r=25", "-frames:v", "1", "-c:v", "libx264",
         "-f", "h264", "pipe:1"],
        capture_output=True, timeout=60,
    )
    x = _X264_BUILD.search(probe.stdout)
    if probe.returncode != 0 or x is None:
        raise EncoderUnusable(f"{exe} cannot encode with libx264: {probe.stderr[-300:]!r}")
    x264 = " ".join(part.decode() for part in x.groups() if part)
    source = "IMAGEIO_FFMPEG_EXE" if os.environ.get("IMAGEIO_FFMPEG_EXE") else "imageio-ffmpeg"
    return (("ffmpeg", m.group(1)), ("x264", x264), ("source", source))


def check_encoder(want: dict[str, str] | None) -> None:
    """Refuse to encode for a key made for another encoder build (:class:`EncoderMismatch`).

    ``want`` names the build (its ``ffmpeg`` and ``x264`` fields; ``None``: the key names none).
    """
    if want is None:
        return
    have, want = _build(encoder_id()), _build(want)
    if want != have:
        raise EncoderMismatch(
            f"this node's encoder is ffmpeg {have['ffmpeg']} with x264 {have['x264']}, but the "
            f"task's key names ffmpeg {want['ffmpeg']} with x264 {want['x264']}: its bytes would "
            "not be the ones the key promises. Use the same imageio-ffmpeg on every node (or the "
            "same IMAGEIO_FFMPEG_EXE build)"
        )


def _build(ident: dict[str, Any]) -> dict[str, str]:
    return {"ffmpeg": ident["ffmpeg"], "x264": ident["x264"]}


def timescale(profile: ProfileLike) -> int:
    """The MP4 track timescale of every clip in ``profile``: ticks per second."""
    return int(profile.fps) * TIMESCALE_PER_FPS


def encode_spec(profile: ProfileLike, *, build: bool = True) -> dict[str, Any]:
    """Every setting that decides a clip's bytes (JSON-able; part of every render key).

    ``encoder_build`` is this process's ffmpeg and x264 build (:func:`encoder_id`); ``build=False``
    leaves it out, for checks that read only the format (assembly's probe of a clip).
    """
    fps = int(profile.fps)
    spec = {
        "version": ENCODE_VERSION,
        "container": "mp4",
        "movflags": "+faststart",
        "encoder": "libx264",
        "codec": "h264",
        "codec_profile": "high",
        "pix_fmt": "yuv420p",
        "color": {"matrix": "bt709", "primaries": "bt709", "transfer": "bt709", "range": "tv"},
        "width": int(profile.width),
        "height": int(profile.height),
        "fps": fps,
        "timescale": timescale(profile),
        "crf": CRF,
        "preset": PRESET,
        "threads": THREADS,
        "gop": GOP_SECONDS * fps,
        "bframes": 0,
        "fit": "contain-center-black",
        "input": "rgb24",
    }
    if build:
        spec["encoder_build"] = _build(encoder_id())
    return spec


# -- frames -------------------------------------------------------------------------------------


def _to_rgb8(frame: Any) -> np.ndarray:
    """Any common image array as H x W x 3 uint8 RGB.

    Grayscale (H x W or H x W x 1) is repeated into 3 channels; RGBA is composited over black;
    floats are read as [0, 1] and clipped; uint16 is scaled down; bool is 0/255.
    """
    a = np.asarray(frame)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"a frame must be H x W, H x W x 1, 3 or 4; got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0
        a = np.rint(a).astype(np.uint8)
    elif a.dtype == np.uint16:
        a = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    channels = a.shape[2]
    if channels in (2, 4):  # gray+alpha or RGBA: composite over black
        alpha = a[:, :, -1:].astype(np.uint16)
        color = a[:, :, :-1].astype(np.uint16)
        a = ((color * alpha + 127) // 255).astype(np.uint8)
        channels -= 1
    if channels == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def fit_frame(frame: Any, width: int, height: int) -> np.ndarray:
    """``frame`` as ``height x width x 3`` uint8 RGB.

    The rule for a frame of another size: scale it (Lanczos) to the largest size that fits inside
    ``width x height`` with its aspect ratio kept, centre it, and fill the rest with black
    (letterbox or pillarbox). A frame of the right size is only converted, never resampled.
    """
    rgb = _to_rgb8(frame)
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    scale = min(width / w, height / h)
    nw = min(width, max(1, round(w * scale)))
    nh = min(height, max(1, round(h * scale)))
    scaled = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.LANCZOS))
    out = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = scaled
    return out


def encode_png(frame: Any) -> bytes:
    """A frame as PNG bytes (RGB, fixed compression: the same frame gives the same bytes)."""
    buf = io.BytesIO()
    Image.fromarray(_to_rgb8(frame)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def encode_poster(frame: Any, max_width: int = POSTER_MAX_WIDTH) -> bytes:
    """A small JPEG of ``frame`` (a shot's poster, for thumbnails): at most ``max_width``
    pixels wide, aspect ratio kept, never enlarged."""
    img = Image.fromarray(_to_rgb8(frame))
    if img.width > max_width:
        img = img.resize((max_width, max(1, round(img.height * max_width / img.width))),
                         Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=POSTER_QUALITY)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG (or any image Pillow reads) bytes as H x W x 3 uint8 RGB."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            return _to_rgb8(np.asarray(img.convert("RGBA")))
        return np.array(img.convert("RGB"))


# -- the encoder --------------------------------------------------------------------------------


def encode_command(path: str | os.PathLike[str], profile: ProfileLike) -> list[str]:
    """The ffmpeg command line that reads raw RGB frames on stdin and writes ``path``."""
    spec = encode_spec(profile, build=False)
    w, h, fps = spec["width"], spec["height"], spec["fps"]
    stream = ffmpeg.input(
        "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps
    ).filter("scale", out_color_matrix="bt709", out_range="tv", flags="bicubic")
    stream = stream.filter("format", "yuv420p").filter(
        "setparams", range="tv", color_primaries="bt709", color_trc="bt709", colorspace="bt709"
    )
    out = stream.output(
        str(path),
        format="mp4",
        vcodec="libx264",
        pix_fmt="yuv420p",
        crf=spec["crf"],
        preset=spec["preset"],
        threads=spec["threads"],
        g=spec["gop"],
        keyint_min=1,
        bf=0,
        r=fps,
        fps_mode="cfr",
        video_track_timescale=spec["timescale"],
        movflags=spec["movflags"],
        map_metadata=-1,
        fflags="+bitexact",
        an=None,
        **{"profile:v": "high", "flags:v": "+bitexact"},
    )
    out = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error")
    return out.overwrite_output().compile(cmd=ffmpeg_exe())


class ClipEncoder:
    """Streams frames into one clip of the intermediate spec.

    ``with ClipEncoder(path, profile) as enc: enc.write(frame)`` — leaving the block normally
    closes it (the clip appears at ``path`` only when ffmpeg succeeded, via a rename); leaving it
    by an exception kills ffmpeg and removes the partial file.
    """

    def __init__(self, path: str | os.PathLike[str], profile: ProfileLike) -> None:
        self.path = Path(path)
        self.profile = profile
        self.width, self.height = int(profile.width), int(profile.height)
        self.frames = 0
        self.last_frame: np.ndarray | None = None
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_sibling(self.path)
        # stderr goes to a file, not a pipe, so ffmpeg never blocks on it while we feed stdin
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()/abort()
        try:
            self._proc = subprocess.Popen(
                encode_command(self._tmp, profile),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
        except BaseException:
            self._cleanup()
            raise

    def __enter__(self) -> ClipEncoder:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    def write(self, frame: Any) -> None:
        """Append one frame (fitted to the profile by :func:`fit_frame`)."""
        if self._closed:
            raise EncodeError(f"{self.path}: write after close")
        fitted = fit_frame(frame, self.width, self.height)
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(memoryview(fitted).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            self._proc.wait()
            tail = self._stderr_tail()
            self.abort()
            raise EncodeError(
                f"{self.path}: ffmpeg stopped taking frames at frame {self.frames}: {tail}"
            ) from exc
        self.frames += 1
        self.last_frame = fitted

    def close(self) -> int:
        """Finish the clip; returns the number of frames written."""
        if self._closed:
            return self.frames
        if self.frames == 0:
            self.abort()
            raise EncodeError(f"{self.path}: no frames were written")
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        rc = self._proc.wait()
        if rc != 0:
            tail = self._stderr_tail()
            self.abort()
            raise EncodeError(f"{self.path}: ffmpeg exited with {rc}: {tail}")
        os.replace(self._tmp, self.path)
        self._closed = True
        self._stderr.close()
        return self.frames

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial clip."""
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        self._stderr.close()

    def _stderr_tail(self, limit: int = 2000) -> str:
        if self._stderr.closed:
            return "(no output)"
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return text[-limit:] or "(no output)"
