"""Packaging: each unique shot's clip becomes CMAF (an init segment and fMP4 media segments) by
stream copy, once, content-addressed in the store like a master.

A shot's package is keyed by what decides its bytes: the clip's digest, the media segment
length (in frames) and the decode time of its first frame (its place on the story's timeline,
see :func:`shot_offsets`). The record (``ac/<package key>.json``, kind ``package``) names the
init segment and the media segments (``m<index>_<frames>``); a shot whose record and blobs are
in the store is never packaged again, so a story edit packages only the shots whose clips
changed (and, when a duration changes, the shots whose place on the timeline moved).

Every clip of a story shares one encode spec, so ffmpeg writes the same init segment for all of
them (its bytes are content-addressed: one blob per encode spec).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..plan import RenderPlan
from ..plan.keys import digest
from ..spec.manifest import Story
from ..spec.storygraph import topological_order
from ..store import ActionRecord, BlobRef, Store
from . import _fmp4

PACKAGE_SCHEMA = "reelfarm-cmaf/1"
DEFAULT_SEGMENT_SECONDS = 2.0


class PackageError(RuntimeError):
    """A shot could not be packaged (ffmpeg failed, or its output is not what the clip holds)."""


class NotRendered(PackageError):
    """Some shots of the story have no clip in the store yet."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = tasks
        super().__init__(
            f"{len(tasks)} shot(s) are not rendered in this store: {', '.join(tasks[:10])}"
            + (" ..." if len(tasks) > 10 else "")
            + "; run `reelfarm render` first"
        )


def segment_frames(plan: RenderPlan, segment_seconds: float) -> int:
    """Frames per media segment: the most whole GOPs that fit in ``segment_seconds``.

    Media segments can only start on a keyframe, and clips have one every GOP (2 s), so a
    segment shorter than a GOP cannot be cut without re-encoding."""
    from actors.encode import encode_spec

    spec = encode_spec(plan.profile)
    gop, fps = spec["gop"], spec["fps"]
    gops = int(segment_seconds * fps + 1e-9) // gop
    if gops < 1:
        raise ValueError(
            f"--segment-seconds {segment_seconds:g} is shorter than the clips' keyframe interval "
            f"({gop / fps:g} s): media segments start on keyframes and are never re-encoded"
        )
    return gops * gop


def shot_offsets(story: Story, plan: RenderPlan) -> dict[str, int]:
    """Each task's first decode time, in track ticks.

    A story segment starts at the latest time any path reaches it (the longest path from the
    start, in frames), and its shots follow each other from there. Along any branch the decode
    times then never go backwards: they continue where the previous segment ended, or jump
    forward where a shorter path reconverges (the only places a playlist needs a
    discontinuity). Continuity variants of a shot sit at the same time."""
    from actors.encode import TIMESCALE_PER_FPS

    shots_of: dict[str, dict[str, int]] = {}  # segment -> shot -> frames, in story order
    for t in plan.tasks:
        shots_of.setdefault(t.segment, {}).setdefault(t.shot, t.frames)
    by_id = story.segments_by_id
    base: dict[str, int] = {story.spec.start: 0}
    starts: dict[tuple[str, str], int] = {}
    for sid in topological_order(story):
        acc = base.setdefault(sid, 0)
        for shot in (s.id for s in by_id[sid].shots):
            starts[(sid, shot)] = acc
            acc += shots_of[sid][shot] * TIMESCALE_PER_FPS
        for nxt in by_id[sid].successors:
            base[nxt] = max(base.get(nxt, 0), acc)
    return {t.id: starts[(t.segment, t.shot)] for t in plan.tasks}


def package_key(clip: str, seg_frames: int, offset: int) -> str:
    return digest(
        {"schema": PACKAGE_SCHEMA, "clip": clip, "segment_frames": seg_frames, "offset": offset}
    )


@dataclass(frozen=True)
class ShotPackage:
    """One clip as CMAF: where its pieces are, and how long each media segment is."""

    key: str
    clip: BlobRef
    offset: int  # decode time of the first frame, in ticks
    frames: int
    init: BlobRef
    media: list[BlobRef]
    media_frames: list[int]
    packaged: bool  # made by this call (False: found in the store)
    seconds: float

    @property
    def size(self) -> int:
        return self.init.size + sum(m.size for m in self.media)


def _media_name(i: int, frames: int) -> str:
    """A media segment's name in the package record: its index and its frame count."""
    return f"m{i:05d}_{frames}"


def _record_to_package(rec: ActionRecord, clip: BlobRef, offset: int) -> ShotPackage | None:
    names = sorted(k for k in rec.outputs if k.startswith("m"))
    try:
        frames = [int(n.split("_", 1)[1]) for n in names]
    except (IndexError, ValueError):
        return None
    if "init" not in rec.outputs or not names or sum(frames) != rec.frames:
        return None
    return ShotPackage(rec.key, clip, offset, rec.frames, rec.outputs["init"],
                       [rec.outputs[n] for n in names], frames, False, 0.0)


def fragment_command(src: Path, dest: Path, timescale: int) -> list[str]:
    """ffmpeg, stream copy: the clip as one fragmented MP4, a fragment per keyframe."""
    import ffmpeg

    from actors.media import ffmpeg_exe

    return (
        ffmpeg.input(str(src))["v:0"]
        .output(
            str(dest),
            format="mp4",
            c="copy",
            movflags="+frag_keyframe+empty_moov+default_base_moof",
            # no bit rate box: it differs per clip, and the init segment must not
            write_btrt=0,
            video_track_timescale=timescale,
            map_metadata=-1,
            fflags="+bitexact",
        )
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile(cmd=ffmpeg_exe())
    )


def package_clip(store: Store, key: str, clip: BlobRef, frames: int, offset: int,
                 seg_frames: int, timescale: int) -> ShotPackage:
    """Fetch (and verify) ``clip``, cut it into CMAF by stream copy, store the pieces and the
    record. Raises :class:`PackageError` when the pieces do not hold exactly the clip's frames."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reelfarm-package-") as tmp:
        src, frag = Path(tmp) / "clip.mp4", Path(tmp) / "frag.mp4"
        store.get_file(clip.sha256, src)  # raises CorruptBlob: a bad clip is never packaged
        proc = subprocess.run(fragment_command(src, frag, timescale), capture_output=True,
                              check=False)
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
            raise PackageError(f"clip {clip.sha256[:12]}: ffmpeg exited with "
                               f"{proc.returncode}: {tail}")
        try:
            parts = _fmp4.split(frag.read_bytes())
        except _fmp4.Fmp4Error as e:
            raise PackageError(f"clip {clip.sha256[:12]}: {e}") from None
    if parts.timescale != timescale:
        raise PackageError(f"clip {clip.sha256[:12]}: timescale {parts.timescale}, "
                           f"expected {timescale}")
    # Cut at keyframes (each fragment starts on one): as many whole fragments per media
    # segment as fit in seg_frames. A GOP is at most seg_frames long (see segment_frames).
    media: list[bytes] = []
    got: list[int] = []
    current, count = bytearray(), 0
    for f in parts.fragments:
        n = _fmp4.sample_count(f)
        if count and count + n > seg_frames:
            media.append(bytes(current))
            got.append(count)
            current, count = bytearray(), 0
        current += _fmp4.shift_decode_time(f, offset)
        count += n
    media.append(bytes(current))
    got.append(count)
    if sum(got) != frames or max(got) > seg_frames:
        raise PackageError(f"clip {clip.sha256[:12]}: media segments of {got} frames, "
                           f"expected {frames} frames in segments of at most {seg_frames}")
    init_ref = store.put_bytes(parts.init)
    refs = [store.put_bytes(m) for m in media]
    outputs = {"init": init_ref,
               **{_media_name(i, n): r for i, (r, n) in enumerate(zip(refs, got, strict=True))}}
    seconds = round(time.perf_counter() - started, 4)
    store.put_action(ActionRecord(key=key, kind="package", outputs=outputs, frames=frames,
                                  backend="cmaf", backend_version=PACKAGE_SCHEMA,
                                  seconds=seconds))
    return ShotPackage(key, clip, offset, frames, init_ref, refs, got, True, seconds)


def package_tasks(story: Story, plan: RenderPlan, store: Store, clips: dict[str, BlobRef],
                  seg_frames: int, *, workers: int = 4) -> dict[str, ShotPackage]:
    """A :class:`ShotPackage` for every task (by task id): found in the store, or made now.

    ``clips`` maps task ids to their clip. Tasks sharing a clip at the same offset share one
    package."""
    from actors.encode import timescale as track_timescale

    offsets = shot_offsets(story, plan)
    timescale = track_timescale(plan.profile)
    wanted: dict[str, tuple[BlobRef, int, int]] = {}  # package key -> (clip, frames, offset)
    key_of: dict[str, str] = {}
    for t in plan.tasks:
        key = package_key(clips[t.id].sha256, seg_frames, offsets[t.id])
        key_of[t.id] = key
        wanted.setdefault(key, (clips[t.id], t.frames, offsets[t.id]))
    found: dict[str, ShotPackage] = {}
    records = store.get_actions(sorted(wanted))
    present = store.has_blobs(
        ref for rec in records.values() if rec is not None for ref in rec.outputs.values()
    )
    for key, rec in records.items():
        if rec is None or rec.kind != "package":
            continue
        if not all(present.get(ref.sha256) for ref in rec.outputs.values()):
            continue
        clip, _, offset = wanted[key]
        pkg = _record_to_package(rec, clip, offset)
        if pkg is not None:
            found[key] = pkg
    todo = [k for k in wanted if k not in found]
    if todo:
        pool = ThreadPoolExecutor(max(1, min(workers, len(todo))), thread_name_prefix="package")
        try:
            futures = {
                k: pool.submit(package_clip, store, k, wanted[k][0], wanted[k][1], wanted[k][2],
                               seg_frames, timescale)
                for k in todo
            }
            for k, fut in futures.items():
                found[k] = fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return {tid: found[key] for tid, key in key_of.items()}


def read_init(store: Store, ref: BlobRef) -> bytes:
    return store.get_bytes(ref.sha256)


def clip_refs(plan: RenderPlan, store: Store) -> dict[str, BlobRef]:
    """Every task's clip, from its action record; raises :class:`NotRendered` for the others."""
    records = store.get_actions([t.key for t in plan.tasks])
    out: dict[str, BlobRef] = {}
    missing: list[str] = []
    for t in plan.tasks:
        rec = records.get(t.key)
        if rec is None or "clip" not in rec.outputs:
            missing.append(t.id)
        else:
            out[t.id] = rec.outputs["clip"]
    if missing:
        raise NotRendered(missing)
    present = store.has_blobs(out.values())
    gone = [tid for tid, ref in out.items() if not present.get(ref.sha256)]
    if gone:
        raise NotRendered(gone)
    return out
