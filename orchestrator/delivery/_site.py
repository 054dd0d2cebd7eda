"""Build and publish the package: a static site any static host or S3 bucket can serve.

::

    index.html, player.js, player.css   the branching player (package data, copied as is)
    story.json                          the story map (see :mod:`.storymap`)
    hls/index.m3u8                      multivariant playlist: the branches as renditions
    hls/<branch>.m3u8                   one media playlist per branch
    media/<sha256>.mp4                  init segments (one per encode spec)
    media/<sha256>.m4s                  fMP4 media segments, shared by every branch that plays them

Media files are named by their digest, so they never change once published (cache them
forever); ``story.json`` and the playlists are rewritten by each packaging.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..plan.expand import BRANCH_NAME_RE, expand
from ..plan.keys import master_key
from ..spec.manifest import Story
from ..store import BlobRef, Store
from ..store.output_api import Output, check_output_rel
from ..store.outputs import LocalOutput, open_output
from . import _fmp4, hls
from ._package import (
    DEFAULT_SEGMENT_SECONDS,
    ShotPackage,
    clip_refs,
    package_tasks,
    segment_frames,
)
from .storymap import (
    BranchEntry,
    ChoiceEntry,
    MediaSegment,
    Option,
    SegmentEntry,
    ShotEntry,
    StoryMap,
    Video,
    segment_variants,
)

PLAYER_FILES = ("index.html", "player.js", "player.css")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
}



@dataclass
class PackageResult:
    out: str
    story_map: StoryMap
    shots: int  # tasks of the story
    packages: int  # distinct shot packages
    packaged: int  # of them, made by this call
    reused: int  # of them, found in the store
    package_bytes: int  # init + media segments, each distinct blob once
    unique_shot_bytes: int  # the distinct clips
    naive_shot_bytes: int  # every branch's clips, shared ones counted per branch
    master_bytes: int | None  # the masters of the plan's branches (None: not all assembled)
    seconds: float
    packaged_tasks: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "story": self.story_map.story,
            "out": self.out,
            "shots": self.shots,
            "packages": self.packages,
            "packaged": self.packaged,
            "reused": self.reused,
            "packaged_tasks": self.packaged_tasks,
            "bytes": {
                "package": self.package_bytes,
                "unique_shots": self.unique_shot_bytes,
                "naive_shots": self.naive_shot_bytes,
                "masters": self.master_bytes,
            },
            "seconds": round(self.seconds, 3),
        }


def package_story(story: Story, store: Store, out_url: str, *,
                  segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                  s3_endpoint: str | None = None, workers: int = 4) -> PackageResult:
    """Package every shot of ``story`` (those already packaged are reused) and publish the site.

    Raises :class:`~._package.NotRendered` when shots have no clip in the store,
    ``ValueError`` for a ``segment_seconds`` shorter than a GOP, and
    :class:`~orchestrator.expand.PlanError` when the story cannot be planned."""
    from actors.encode import encode_spec

    t0 = time.perf_counter()
    plan = expand(story, salt=store.salt)
    seg_frames = segment_frames(plan, segment_seconds)
    clips = clip_refs(plan, store)
    pkgs = package_tasks(story, plan, store, clips, seg_frames, workers=workers)
    spec = encode_spec(plan.profile)
    fps, timescale = spec["fps"], spec["timescale"]
    inits = {p.init.sha256: p.init for p in pkgs.values()}
    codecs = sorted({_fmp4.codec_string(store.get_bytes(d)) for d in inits})
    if len(codecs) != 1:
        raise ValueError(f"the clips of one story must share one codec, found {codecs}")
    codec = codecs[0]

    def init_uri(p: ShotPackage) -> str:
        return f"media/{p.init.sha256}.mp4"

    def media_uri(ref: BlobRef) -> str:
        return f"media/{ref.sha256}.m4s"

    shots: dict[str, ShotEntry] = {}
    for t in plan.tasks:
        p = pkgs[t.id]
        shots[t.id] = ShotEntry(
            id=t.id, shot=t.shot, segment=t.segment, frames=t.frames,
            duration=round(t.frames / fps, 6), start=round(p.offset / timescale, 6),
            init=init_uri(p),
            media=[MediaSegment(uri=media_uri(r), duration=round(n / fps, 6), frames=n)
                   for r, n in zip(p.media, p.media_frames, strict=True)],
        )
    variants = segment_variants(story, plan)
    segments: list[SegmentEntry] = []
    for seg in story.spec.segments:
        frames = sum(shots[tid].frames for tid in variants[seg.id][0].shots)
        choice = None
        if seg.choice is not None:
            choice = ChoiceEntry(
                prompt=seg.choice.prompt, default=seg.choice.default, window=seg.choice.window,
                options=[Option(label=o.label, next=o.next) for o in seg.choice.options],
            )
        segments.append(SegmentEntry(
            id=seg.id, duration=round(frames / fps, 6), variants=variants[seg.id],
            choice=choice, next=seg.next, ending=seg.is_ending,
        ))

    out = open_output(out_url, s3_endpoint=s3_endpoint)
    branches: list[BranchEntry] = []
    renditions: list[hls.Rendition] = []
    playlists: dict[str, str] = {}
    for b in plan.branches:
        if not BRANCH_NAME_RE.match(b.name):  # expansion made it; checked before it is a path
            raise ValueError(f"branch name {b.name!r} cannot name a playlist file")
        items: list[hls.PlaylistSegment] = []
        for tid in b.tasks:
            p = pkgs[tid]
            start = p.offset
            for ref, n in zip(p.media, p.media_frames, strict=True):
                end = start + n * (timescale // fps)
                items.append(hls.PlaylistSegment(media_uri(ref), init_uri(p), n / fps, ref.size,
                                                 start, end))
                start = end
        rel = f"hls/{b.name}.m3u8"
        playlists[rel] = hls.media_playlist(items, prefix="../")
        renditions.append(hls.Rendition(b.name, f"{b.name}.m3u8", items))
        branches.append(BranchEntry(
            name=b.name, segments=b.segments, choices=b.choices, shots=b.tasks,
            frames=sum(plan.by_id[t].frames for t in b.tasks), playlist=rel,
        ))
    playlists["hls/index.m3u8"] = hls.multivariant_playlist(
        renditions, codecs=codec, width=plan.profile.width, height=plan.profile.height, fps=fps)

    story_map = StoryMap(
        story=plan.story, title=plan.title, start=story.spec.start,
        video=Video(width=plan.profile.width, height=plan.profile.height, fps=fps,
                    timescale=timescale, codecs=codec, mime=f'video/mp4; codecs="{codec}"'),
        segments=segments,
        endings=[s.id for s in story.spec.segments if s.is_ending],
        shots=shots, branches=branches, hls="hls/index.m3u8",
    )

    # media first, then the documents that name it, then the player: a reader never finds a
    # story.json naming a segment that is not there yet
    blobs: dict[str, BlobRef] = {}
    for p in pkgs.values():
        blobs[init_uri(p)] = p.init
        for ref in p.media:
            blobs[media_uri(ref)] = ref
    for rel, ref in sorted(blobs.items()):
        publish_blob(out, rel, store, ref)
    for rel, text in playlists.items():
        publish_text(out, rel, text)
    publish_text(out, "story.json", story_map.model_dump_json(indent=2) + "\n")
    for name in PLAYER_FILES:
        publish_text(out, name, player_file(name))

    distinct = {p.key: p for p in pkgs.values()}
    package_bytes = sum(ref.size for ref in blobs.values())
    clip_sizes = {ref.sha256: ref.size for ref in clips.values()}
    masters = store.get_actions([
        master_key([clips[t].sha256 for t in b.tasks], plan.profile.model_dump(), plan.encoder)
        for b in plan.branches
    ])
    master_sizes = [r.outputs["master"].size if r and "master" in r.outputs else None
                    for r in masters.values()]
    return PackageResult(
        out=out.url,
        story_map=story_map,
        shots=len(plan.tasks),
        packages=len(distinct),
        packaged=sum(1 for p in distinct.values() if p.packaged),
        reused=sum(1 for p in distinct.values() if not p.packaged),
        package_bytes=package_bytes,
        unique_shot_bytes=sum(clip_sizes.values()),
        naive_shot_bytes=sum(clips[t].size for b in plan.branches for t in b.tasks),
        master_bytes=None if None in master_sizes else sum(s for s in master_sizes if s),
        seconds=time.perf_counter() - t0,
        packaged_tasks=sorted(t for t, p in pkgs.items() if p.packaged),
    )


def player_file(name: str) -> str:
    return (resources.files(__package__) / "player" / name).read_text(encoding="utf-8")


def content_type(rel: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(rel)[1], "application/octet-stream")


def publish_text(out: Output, rel: str, text: str) -> None:
    """Publish a small text document at ``rel`` with its content type."""
    data = text.encode("utf-8")
    if isinstance(out, LocalOutput):
        dest = out.root / check_output_rel(rel)
        if dest.exists() and dest.read_bytes() == data:
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return
    from ..store.s3_objects import S3Output

    if not isinstance(out, S3Output):  # pragma: no cover - the two outputs reelfarm has
        raise TypeError(f"cannot publish to {type(out).__name__}")
    out._s3._put_small(out.key_for(rel), data, content_type(rel))


def publish_blob(out: Output, rel: str, store: Store, ref: BlobRef) -> None:
    out.put_blob(rel, store, ref)
    if isinstance(out, LocalOutput):
        path = Path(out.root) / rel
        if path.stat().st_mode & 0o777 != 0o644:
            os.chmod(path, 0o644)  # a web server serves what it can read


def read_story_map(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
