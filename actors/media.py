"""The ffmpeg binary, and what a clip holds, read with PyAV (FFmpeg's libraries).

:func:`probe` opens the container with PyAV and demuxes the first video stream: codec, profile,
pixel format, size, time base and codec headers come from the stream's parameters, and one
:class:`Packet` per packet (timestamps, duration, size, an Adler-32 of its bytes as ffmpeg's
``framecrc`` prints it, keyframe flag). Only opening the file decodes anything (libavformat
decodes the first frame to learn the pixel format); ``decode=False`` skips even that.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import zlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple


class MediaError(RuntimeError):
    """ffmpeg is missing or could not read a clip."""


class FFmpegNotFound(MediaError):
    pass


class ProbeError(MediaError):
    pass


def temp_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path``, for writing it atomically (write, then rename).

    Not created here: ffmpeg creates it, so it gets the usual permissions (not mkstemp's 0600).
    """
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.part"


def ffmpeg_exe() -> str:
    """The ffmpeg binary: the one pinned by imageio-ffmpeg, or ``$IMAGEIO_FFMPEG_EXE`` when set.

    Never ``ffmpeg`` from ``PATH``: every node of a farm encodes with the same build, so their
    clips share cache keys (the key names the build, see :func:`actors.encode.encoder_id`). An
    ``IMAGEIO_FFMPEG_EXE`` is an explicit choice, reported by ``plan``; set but unusable, it is
    an error, never silently skipped.
    """
    env = os.environ.get("IMAGEIO_FFMPEG_EXE")
    if env:
        found = shutil.which(env)
        if found is None:
            raise FFmpegNotFound(
                f"IMAGEIO_FFMPEG_EXE={env!r} is not an executable ffmpeg; fix or unset it"
            )
        return found
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, or imageio-ffmpeg finding no binary for this platform
        raise FFmpegNotFound(
            "no ffmpeg found: `pip install imageio-ffmpeg` (its pinned build is the one every "
            f"node uses), or set IMAGEIO_FFMPEG_EXE to choose another ({exc})"
        ) from exc
    return exe


@dataclass(frozen=True)
class Packet:
    """One video packet as the container stores it (timestamps in the stream's time base)."""

    pts: int | None
    dts: int | None
    duration: int
    size: int
    crc: str
    keyframe: bool


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's first video stream is. ``frames`` counts packets (one per frame in H.264)."""

    path: str
    frames: int
    width: int
    height: int
    fps: Fraction
    codec: str
    pix_fmt: str
    time_base: Fraction
    has_audio: bool
    codec_profile: str | None = None
    extradata: str | None = None  # "<size>:<crc>" of the codec's global headers (SPS/PPS)
    keyframes: tuple[int, ...] = ()  # indices of the packets flagged as keyframes
    duration_ticks: int = 0  # sum of the packets' durations, in time_base
    packets: tuple[Packet, ...] = field(default=(), repr=False, compare=False)

    @property
    def timescale(self) -> int:
        """Ticks per second of the track (the denominator of its time base)."""
        return int(round(1 / self.time_base)) if self.time_base else 0

    @property
    def seconds(self) -> float:
        return float(self.duration_ticks * self.time_base)

    @property
    def starts_on_keyframe(self) -> bool:
        return bool(self.keyframes) and self.keyframes[0] == 0


def extradata_id(extradata: bytes | None) -> str | None:
    """``"<size>:<adler32>"`` of a codec's global headers (``None`` when it has none)."""
    return f"{len(extradata)}:0x{zlib.adler32(extradata, 0):08x}" if extradata else None


def top_level_boxes(path: str | os.PathLike[str]) -> list[tuple[bytes, int, int]]:
    """The top-level boxes of an MP4 file: ``(type, offset, size)`` each, read from their headers.

    Raises :class:`ValueError` unless the boxes fill the file exactly (a box running past the
    end means the file was cut short)."""
    out: list[tuple[bytes, int, int]] = []
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        at = 0
        while at < end:
            f.seek(at)
            head = f.read(16)
            if len(head) < 8:
                raise ValueError(f"{end - at} stray bytes at offset {at}")
            size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if size == 1 and len(head) == 16:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:  # the last box, to the end of the file
                size = end - at
            if size < 8 or at + size > end:
                raise ValueError(f"box {kind!r} at offset {at} claims {size} bytes, "
                                 f"the file has {end - at} left")
            out.append((kind, at, size))
            at += size
    return out


class _Timing(NamedTuple):
    """Of a packet, what :class:`ClipInfo` is made of when its packets are not kept."""

    duration: int
    keyframe: bool


#: Decoder option for opening a file without decoding any frame (see :func:`probe`).
NO_DECODE = {"skip_frame": "all"}


def open_input(path: str | os.PathLike[str], *, decode: bool = True) -> Any:
    """``av.open(path)``; ``decode=False`` asks libavformat not to decode a frame while it reads
    the streams' parameters (the pixel format is then unknown). A format whose streams appear
    only while reading (MPEG-TS, say) takes no such option and is opened as usual."""
    import av

    if not decode:
        with contextlib.suppress(ValueError):  # PyAV: "stream_options were provided, but ..."
            return av.open(str(path), stream_options=[NO_DECODE])
    return av.open(str(path))


def probe(
    path: str | os.PathLike[str], *, packets: bool = False, decode: bool = True
) -> ClipInfo:
    """Describe the first video stream of ``path``; ``packets=True`` keeps every packet.

    Opening a file makes libavformat decode its first frame(s) to learn the pixel format, which
    is most of what a probe of a short clip costs. ``decode=False`` skips that: every field is
    read as usual except ``pix_fmt``, which is then ``""`` (unknown).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: no such file")
    try:
        with open_input(path, decode=decode) as container:
            if not container.streams.video:
                raise ProbeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            has_audio = bool(container.streams.audio)
            if packets:
                pkts = [
                    Packet(pts=p.pts, dts=p.dts, duration=int(p.duration or 0), size=p.size,
                           crc=f"0x{zlib.adler32(bytes(p), 0):08x}",
                           keyframe=bool(p.is_keyframe))
                    for p in container.demux(stream)
                    if p.size  # the demuxer's final empty packet
                ]
            else:  # what the info needs, without copying and checksumming every payload
                pkts = [
                    _Timing(int(p.duration or 0), bool(p.is_keyframe))
                    for p in container.demux(stream)
                    if p.size
                ]
            time_base = stream.time_base
            codec, pix_fmt = ctx.name, ctx.pix_fmt or ""
            width, height = ctx.width, ctx.height
            profile = stream.profile
            extradata = ctx.extradata
            rate = stream.average_rate or stream.guessed_rate
    except ProbeError:
        raise
    except av.FFmpegError as exc:
        raise ProbeError(f"{path}: ffmpeg cannot read it: {exc}") from None
    if time_base is None:
        raise ProbeError(f"{path}: no video stream")
    if not width or not height:
        raise ProbeError(f"{path}: cannot read the frame size")
    extra = extradata_id(extradata)

    time_base = Fraction(time_base)
    durations = [p.duration for p in pkts if p.duration > 0]
    if durations:
        common = Counter(durations).most_common(1)[0][0]
        fps = Fraction(1) / (common * time_base)
    else:
        fps = Fraction(rate) if rate else Fraction(0)

    return ClipInfo(
        path=str(path),
        frames=len(pkts),
        width=int(width),
        height=int(height),
        fps=fps,
        codec=codec,
        pix_fmt=pix_fmt,
        time_base=time_base,
        has_audio=has_audio,
        codec_profile=profile or None,
        extradata=extra,
        keyframes=tuple(i for i, p in enumerate(pkts) if p.keyframe),
        duration_ticks=sum(p.duration for p in pkts),
        packets=tuple(pkts) if packets else (),
    )
