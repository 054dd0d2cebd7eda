"""Joining clips into a master by stream copy with ffmpeg: never a re-encode.

A stream copy is only a valid H.264 stream when every clip has the same codec settings, size,
frame rate and time base and starts on a keyframe, which is what the intermediate spec of
:mod:`actors.encode` guarantees. :func:`concat_clips` checks every clip against that spec
*before* joining (so a foreign or damaged clip is refused with a message naming it, instead of
producing a master that stutters or fails to decode), and checks the master after: frame count
and duration, codec headers, and its index before its data (faststart, see :func:`check_master`).

The packets are read in this process with PyAV (FFmpeg's libraries) and written by the ffmpeg
binary's mp4 muxer (:func:`join_packets`), the build a master's key names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import ffmpeg

from .encode import ProfileLike, encode_spec
from .media import (
    ClipInfo,
    extradata_id,
    ffmpeg_exe,
    open_input,
    probe,
    temp_sibling,
    top_level_boxes,
)


class SpecMismatch(ValueError):
    """A clip does not share the profile's intermediate spec; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "cannot join these clips without re-encoding:\n" + "\n".join(f"  {p}" for p in problems)
        )


class AssemblyError(RuntimeError):
    """ffmpeg failed to join the clips, or the master is not what the clips add up to."""


def spec_problems(info: ClipInfo, profile: ProfileLike) -> list[str]:
    """How ``info`` differs from the intermediate spec of ``profile`` (empty when it matches)."""
    spec = encode_spec(profile)
    out: list[str] = []

    def check(what: str, got: object, want: object) -> None:
        if got != want:
            out.append(f"{what} {got} (expected {want})")

    check("codec", info.codec, spec["codec"])
    check("pix_fmt", info.pix_fmt, spec["pix_fmt"])
    check("size", f"{info.width}x{info.height}", f"{spec['width']}x{spec['height']}")
    check("fps", _fmt_fps(info.fps), _fmt_fps(Fraction(spec["fps"])))
    check("timescale", info.timescale, spec["timescale"])
    if info.frames == 0:
        out.append("no video frames")
    elif not info.starts_on_keyframe:
        out.append("does not start on a keyframe")
    if info.has_audio:
        out.append("has an audio track (the intermediate spec is video only)")
    return out


def _fmt_fps(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{float(fps):.3f}"


def probe_workers() -> int:
    """How many clips :func:`check_clips` probes at once: PyAV reads and demuxes with the GIL
    released, so threads overlap the reads; a few per core keeps the cores busy."""
    return max(2, min(32, 4 * (os.cpu_count() or 1)))


def probe_clips(clips: Sequence[Path], workers: int | None = None) -> list[ClipInfo]:
    """Probe each distinct clip once, ``workers`` at a time; one info per entry of ``clips``, in
    order. A clip that cannot be read raises the error of the first such clip in ``clips`` order
    (the probes not yet started are cancelled).

    Only the first clip is opened the usual way, decoding its first frame to learn its pixel
    format; the others are opened without decoding (:func:`~actors.media.probe` with
    ``decode=False``), which is most of a probe's cost saved. An H.264 stream's pixel format
    (chroma format, bit depth, range) is set by its sequence parameter set, part of the codec
    headers: a clip whose codec and headers equal the first clip's has its pixel format. A clip
    with other headers is probed again the usual way, so that its pixel format is read, not
    assumed, and its problems are named exactly.
    """
    keys = [Path(c).resolve() for c in clips]
    distinct: dict[Path, Path] = {}  # resolved path -> the first name it was given as
    for k, c in zip(keys, clips, strict=True):
        distinct.setdefault(k, Path(c))
    first = keys[0] if keys else None
    found = _probe_all({k: (c, k == first) for k, c in distinct.items()}, workers)
    if first is not None:
        ref = found[first]
        again = {
            k: (distinct[k], True) for k, info in found.items()
            if k != first and not _same_headers(info, ref)
        }
        found.update(_probe_all(again, workers))
        for k, info in found.items():
            if not info.pix_fmt and _same_headers(info, ref):
                found[k] = dataclasses.replace(info, pix_fmt=ref.pix_fmt)
    # a repeated clip's info names the path it was given as there (the same file either way)
    out = []
    for k, c in zip(keys, clips, strict=True):
        info = found[k]
        out.append(info if info.path == str(c) else dataclasses.replace(info, path=str(c)))
    return out


def _same_headers(info: ClipInfo, ref: ClipInfo) -> bool:
    return info.extradata is not None and (info.codec, info.extradata) == (
        ref.codec, ref.extradata)


def _probe_all(which: dict[Path, tuple[Path, bool]], workers: int | None) -> dict[Path, ClipInfo]:
    """``probe(path, decode=decode)`` of each ``key: (path, decode)``, ``workers`` at a time."""
    if not which:
        return {}
    workers = max(1, min(workers or probe_workers(), len(which)))
    if workers == 1:
        return {k: probe(c, decode=d) for k, (c, d) in which.items()}
    pool = ThreadPoolExecutor(workers, thread_name_prefix="probe")
    try:
        futures = {k: pool.submit(probe, c, decode=d) for k, (c, d) in which.items()}
        return {k: f.result() for k, f in futures.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_clips(
    clips: Sequence[Path], profile: ProfileLike, *, workers: int | None = None
) -> list[ClipInfo]:
    """Probe every clip; raise :class:`SpecMismatch` naming each clip that does not fit.

    Distinct clips are probed concurrently, each once (see :func:`probe_clips`)."""
    infos = probe_clips(clips, workers)
    problems: list[str] = []
    for i, info in enumerate(infos):
        found = spec_problems(info, profile)
        if info.extradata != infos[0].extradata and not found:
            found.append(
                f"codec headers {info.extradata} differ from the first clip's "
                f"{infos[0].extradata} (encoded with other settings)"
            )
        if found:
            problems.append(f"clip {i} ({clips[i]}): " + "; ".join(found))
    if problems:
        raise SpecMismatch(problems)
    return infos


def concat_clips(
    clips: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], profile: ProfileLike
) -> ClipInfo:
    """Join ``clips`` in order into ``out`` by stream copy; returns the master's :class:`ClipInfo`.

    Every clip is probed first; one that does not match ``profile``'s intermediate spec is
    refused with :class:`SpecMismatch`. The master is written to a temporary file beside ``out``
    and renamed into place only once :func:`check_master` finds its frame count and duration
    equal to the clips' sum, its codec headers theirs and its index (``moov``) before its data.
    """
    paths = [Path(c) for c in clips]
    if not paths:
        raise ValueError("no clips to join")
    infos = check_clips(paths, profile)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    try:
        join_packets(paths, infos, tmp, encode_spec(profile, build=False)["timescale"])
        info = check_master(tmp, infos)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dataclasses.replace(info, path=str(out))


def join_packets(paths: Sequence[Path], infos: Sequence[ClipInfo], out: Path,
                 timescale: int) -> None:
    """Write the video packets of ``paths`` (probed as ``infos``), in order, into the MP4 ``out``:
    ffmpeg's mp4 muxer (``-c copy``, ``+faststart``, bit-exact, no metadata) writes the master.

    PyAV (FFmpeg's libraries, in this process) demuxes each clip, without decoding, and shifts
    its timestamps to start where the clips before it end; the packets reach ffmpeg unchanged,
    with the first clip's codec headers, over a pipe in NUT (FFmpeg's own lossless container).
    ffmpeg thus reads one stream instead of opening every clip in turn (its concat demuxer), which
    decodes each clip's first frames to learn what the probe already knows.
    """
    cmd = (
        ffmpeg.input("pipe:0", format="nut")["v:0"]
        .output(
            str(out),
            format="mp4",
            c="copy",
            movflags="+faststart",
            video_track_timescale=timescale,
            movie_timescale=timescale,
            map_metadata=-1,
            fflags="+bitexact",
        )
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile(cmd=ffmpeg_exe())
    )
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=errors)
        failure: BaseException | None = None
        try:
            _write_nut(paths, infos, proc.stdin)
        except (OSError, av.FFmpegError) as exc:  # ffmpeg gone (a broken pipe), or a bad read
            failure = exc
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            if sys.exc_info()[0] is not None and failure is None:  # interrupted: stop ffmpeg
                proc.kill()
            proc.wait()
        errors.seek(0)
        tail = errors.read().decode("utf-8", "replace").strip()[-2000:]
    if proc.returncode != 0:
        raise AssemblyError(f"{out}: ffmpeg exited with {proc.returncode}: {tail}")
    if failure is not None:
        raise AssemblyError(f"{out}: cannot hand the clips' packets to ffmpeg: {failure}")


def _write_nut(paths: Sequence[Path], infos: Sequence[ClipInfo], pipe: Any) -> None:
    """Every clip's video packets, retimed to follow each other, as one NUT stream to ``pipe``."""
    with av.open(pipe, "w", format="nut", options={"fflags": "+bitexact"}) as nut:
        target = None
        start = 0
        for path, info in zip(paths, infos, strict=True):
            with open_input(path, decode=False) as clip:
                stream = clip.streams.video[0]
                if target is None:
                    target = nut.add_stream_from_template(stream)
                origin = None
                for packet in clip.demux(stream):
                    if not packet.size:  # the demuxer's final empty packet
                        continue
                    if origin is None:
                        origin = packet.dts if packet.dts is not None else packet.pts or 0
                    if packet.pts is not None:
                        packet.pts += start - origin
                    if packet.dts is not None:
                        packet.dts += start - origin
                    packet.stream = target
                    nut.mux(packet)
            start += info.duration_ticks


def check_master(path: Path, infos: Sequence[ClipInfo]) -> ClipInfo:
    """Check the master at ``path`` against the clips it joins (``infos``, in order); raise
    :class:`AssemblyError` unless its frame count and duration are their sums, its codec and
    codec headers theirs, and it is a faststart MP4 whose top-level boxes fill the file exactly.

    Read from the master's own index (libavformat's reading of its ``moov``: sample count and
    track duration), without demuxing its packets; the box walk catches a file cut short. The
    returned info's keyframes are the clips' (the packets are theirs, copied in order).
    """
    want_frames = sum(i.frames for i in infos)
    want_ticks = sum(i.duration_ticks for i in infos)
    try:
        boxes = [kind for kind, _, _ in top_level_boxes(path)]
    except ValueError as exc:
        raise AssemblyError(f"{path}: not a complete MP4 file: {exc}") from None
    if b"moov" not in boxes or b"mdat" not in boxes or boxes.index(b"moov") > boxes.index(
            b"mdat"):
        raise AssemblyError(f"{path}: the index (moov) is not before the media data: {boxes}")
    try:
        with open_input(path, decode=False) as container:
            stream = container.streams.video[0]
            frames, ticks = int(stream.frames), int(stream.duration or 0)
            time_base = Fraction(stream.time_base)
            codec, extradata = stream.codec_context.name, stream.codec_context.extradata
            width, height = stream.codec_context.width, stream.codec_context.height
            has_audio = bool(container.streams.audio)
            codec_profile = stream.profile or None
    except (av.FFmpegError, IndexError) as exc:
        raise AssemblyError(f"{path}: the master cannot be read: {exc}") from None
    if frames != want_frames or ticks != want_ticks:
        raise AssemblyError(
            f"{path}: the master has {frames} frames ({ticks} ticks), "
            f"the clips add up to {want_frames} ({want_ticks} ticks)"
        )
    headers = extradata_id(extradata)
    if (codec, headers, time_base) != (infos[0].codec, infos[0].extradata, infos[0].time_base):
        raise AssemblyError(
            f"{path}: the master's stream ({codec}, headers {headers}, time base {time_base}) "
            f"is not the clips' ({infos[0].codec}, headers {infos[0].extradata}, "
            f"time base {infos[0].time_base})"
        )
    keyframes, start = [], 0
    for info in infos:
        keyframes.extend(start + k for k in info.keyframes)
        start += info.frames
    return dataclasses.replace(
        infos[0], path=str(path), frames=frames, width=int(width), height=int(height),
        has_audio=has_audio, codec_profile=codec_profile, keyframes=tuple(keyframes),
        duration_ticks=ticks, packets=(),
    )
