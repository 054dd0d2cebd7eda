"""The ffmpeg binary and what a clip holds, read by ffmpeg itself (there is no ffprobe).

:func:`probe` runs ``ffmpeg -i CLIP -map 0:v:0 -c copy -f framecrc -``: the stream copy touches
no pixels, so it is fast, and the ``framecrc`` muxer prints the exact time base, codec and size
of the video stream and one line per packet (timestamps, duration, size, a CRC of its bytes and
its flags). The input's stream lines on stderr add what framecrc leaves out: the pixel format,
the H.264 profile and whether there is audio.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path


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


_PACKET = re.compile(
    r"^(\d+),\s*(-?\d+|NOPTS),\s*(-?\d+|NOPTS),\s*(-?\d+),\s*(\d+),\s*(0x[0-9a-fA-F]+)(.*)$"
)
_FLAGS = re.compile(r"F=0x([0-9a-fA-F]+)")
_HEADER = re.compile(r"^#(\w+) (\d+):\s*(.*)$")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_FPS = re.compile(r"(\d+(?:\.\d+)?k?) fps")


def _split_top(text: str) -> list[str]:
    """Split a stream description on commas that are not inside parentheses or brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _ts(text: str) -> int | None:
    return None if text == "NOPTS" else int(text)


def probe(path: str | os.PathLike[str], *, packets: bool = False, timeout: float = 600) -> ClipInfo:
    """Describe the first video stream of ``path``; ``packets=True`` keeps every packet."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: no such file")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{path}: ffmpeg took longer than {timeout}s to read it") from exc
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ProbeError(f"{path}: ffmpeg cannot read it: {_tail(err)}")
    return _parse(path, out, err, keep_packets=packets)


def _tail(text: str, lines: int = 8) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _parse(path: Path, out: str, err: str, *, keep_packets: bool) -> ClipInfo:
    headers: dict[str, str] = {}
    pkts: list[Packet] = []
    for line in out.splitlines():
        if line.startswith("#"):
            m = _HEADER.match(line)
            if m and m.group(2) == "0":
                headers[m.group(1)] = m.group(3).strip()
            continue
        m = _PACKET.match(line)
        if not m:
            continue
        flags = _FLAGS.search(m.group(7))
        # framecrc prints F=... only when the flags are not exactly "keyframe"
        key = True if flags is None else bool(int(flags.group(1), 16) & 1)
        pkts.append(
            Packet(
                pts=_ts(m.group(3)),
                dts=_ts(m.group(2)),
                duration=int(m.group(4)),
                size=int(m.group(5)),
                crc=m.group(6).lower(),
                keyframe=key,
            )
        )

    video, has_audio = None, False
    section = err.split("Stream mapping:", 1)[0]  # the input's streams, not the output's
    for line in section.splitlines():
        m = _STREAM.match(line)
        if not m:
            continue
        if m.group(1) == "Video" and video is None:
            video = m.group(2)
        elif m.group(1) == "Audio":
            has_audio = True
    if video is None or "tb" not in headers:
        raise ProbeError(f"{path}: no video stream")

    parts = _split_top(video)
    first = parts[0].split()
    codec = headers.get("codec_id") or first[0]
    prof = re.match(r"^\S+ \(([^)]*)\)", parts[0])
    pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else ""
    num, _, den = headers["tb"].partition("/")
    time_base = Fraction(int(num), int(den or 1))
    dims = headers.get("dimensions", "")
    dm = re.match(r"^(\d+)x(\d+)$", dims) or re.search(r"\b(\d{1,5})x(\d{1,5})\b", video)
    if not dm:
        raise ProbeError(f"{path}: cannot read the frame size from {video!r}")
    extra = headers.get("extradata")
    if extra:
        size, _, crc = extra.partition(",")
        extra = f"{size.strip()}:{crc.strip().lower()}"

    durations = [p.duration for p in pkts if p.duration > 0]
    if durations:
        common = Counter(durations).most_common(1)[0][0]
        fps = Fraction(1) / (common * time_base)
    else:
        fm = _FPS.search(video)
        text = fm.group(1) if fm else "0"
        fps = Fraction(text[:-1]) * 1000 if text.endswith("k") else Fraction(text)

    return ClipInfo(
        path=str(path),
        frames=len(pkts),
        width=int(dm.group(1)),
        height=int(dm.group(2)),
        fps=fps,
        codec=codec,
        pix_fmt=pix_fmt,
        time_base=time_base,
        has_audio=has_audio,
        codec_profile=prof.group(1) if prof else None,
        extradata=extra,
        keyframes=tuple(i for i, p in enumerate(pkts) if p.keyframe),
        duration_ticks=sum(p.duration for p in pkts),
        packets=tuple(pkts) if keep_packets else (),
    )
