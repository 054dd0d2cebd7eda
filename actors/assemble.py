"""Joining clips into a master with ffmpeg's concat demuxer and stream copy: never a re-encode.

A stream copy is only a valid H.264 stream when every clip has the same codec settings, size,
frame rate and time base and starts on a keyframe, which is what the intermediate spec of
:mod:`actors.encode` guarantees. :func:`concat_clips` checks every clip against that spec
*before* joining (so a foreign or damaged clip is refused with a message naming it, instead of
producing a master that stutters or fails to decode), and checks the master's frame count after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import ffmpeg

from .encode import ProfileLike, encode_spec
from .media import ClipInfo, ffmpeg_exe, probe, temp_sibling


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


def concat_list(paths: Sequence[Path]) -> str:
    """An ffconcat list naming ``paths`` (absolute, single-quoted as the demuxer reads them)."""
    lines = ["ffconcat version 1.0"]
    for p in paths:
        text = str(Path(p).resolve())
        if "\n" in text or "\r" in text or "\0" in text:
            raise ValueError(f"a clip path cannot contain a line break: {text!r}")
        lines.append("file '" + text.replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def probe_workers() -> int:
    """How many clips :func:`check_clips` probes at once: PyAV reads and demuxes with the GIL
    released, so threads overlap the reads; a few per core keeps the cores busy."""
    return max(2, min(32, 4 * (os.cpu_count() or 1)))


def probe_clips(clips: Sequence[Path], workers: int | None = None) -> list[ClipInfo]:
    """:func:`~actors.media.probe` each distinct clip once, ``workers`` at a time; one info per
    entry of ``clips``, in order. A clip that cannot be read raises the error of the first such
    clip in ``clips`` order (the probes not yet started are cancelled)."""
    keys = [Path(c).resolve() for c in clips]
    distinct: dict[Path, Path] = {}  # resolved path -> the first name it was given as
    for k, c in zip(keys, clips, strict=True):
        distinct.setdefault(k, Path(c))
    workers = max(1, min(workers or probe_workers(), len(distinct)))
    if workers == 1:
        found = {k: probe(c) for k, c in distinct.items()}
    else:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="probe")
        try:
            futures = {k: pool.submit(probe, c) for k, c in distinct.items()}
            found = {k: f.result() for k, f in futures.items()}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    # a repeated clip's info names the path it was given as there (the same file either way)
    out = []
    for k, c in zip(keys, clips, strict=True):
        info = found[k]
        out.append(info if info.path == str(c) else dataclasses.replace(info, path=str(c)))
    return out


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
    and renamed into place only once its frame count equals the sum of the clips'.
    """
    paths = [Path(c) for c in clips]
    if not paths:
        raise ValueError("no clips to join")
    infos = check_clips(paths, profile)
    want_frames = sum(i.frames for i in infos)
    want_ticks = sum(i.duration_ticks for i in infos)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    list_file = tmp.with_suffix(".ffconcat")
    try:
        list_file.write_text(concat_list(paths), encoding="utf-8")
        # auto_convert=0: copy the clips' packets as they are (length-prefixed, headers in the
        # container). The default would rewrite them to Annex B and back, adding SPS/PPS to every
        # keyframe; all clips share one set of headers (checked above), so none is needed.
        cmd = (
            ffmpeg.input(str(list_file), format="concat", safe=0, auto_convert=0)["v:0"]
            .output(
                str(tmp),
                format="mp4",
                c="copy",
                movflags="+faststart",
                video_track_timescale=encode_spec(profile)["timescale"],
                map_metadata=-1,
                fflags="+bitexact",
            )
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
            .overwrite_output()
            .compile(cmd=ffmpeg_exe())
        )
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
            raise AssemblyError(f"{out}: ffmpeg concat exited with {proc.returncode}: {tail}")
        info = probe(tmp)
        if info.frames != want_frames or info.duration_ticks != want_ticks:
            raise AssemblyError(
                f"{out}: the master has {info.frames} frames ({info.duration_ticks} ticks), "
                f"the clips add up to {want_frames} ({want_ticks} ticks)"
            )
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            list_file.unlink()
    return dataclasses.replace(info, path=str(out))
