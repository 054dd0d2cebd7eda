"""The story map, ``story.json``: everything the branching player needs, and nothing else.

The document is versioned (``version``) and its JSON Schema is committed as
``manifests/story-map.schema.json`` (regenerate it with
``python -m orchestrator.delivery.storymap``).

* ``shots``: every render task (a shot, or one continuity variant of it) by task id, with its
  duration, the decode time of its first frame and its init and media segment URIs;
* ``segments``: each story segment with its duration, its ``variants`` (the task ids it plays,
  chosen by the task played just before it: ``after``, or any when ``after`` is null), and its
  way out: a ``choice`` (prompt, labels, default, the ``window`` in seconds before the segment
  ends, and ``timeout: default``), a plain ``next``, or neither (an ending);
* ``start``, ``endings``, and the per-branch HLS playlists (``branches``, ``hls``).

URIs are relative to the package root (where ``story.json`` and ``index.html`` are).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..plan import RenderPlan
from ..spec.manifest import Story
from ..spec.storygraph import predecessors, topological_order

STORY_MAP_VERSION = 1
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:reelfarm:schema:story-map:v1"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MediaSegment(_Doc):
    uri: str = Field(description="fMP4 media segment, relative to the package root")
    duration: float = Field(gt=0, description="seconds")
    frames: int = Field(ge=1)


class ShotEntry(_Doc):
    id: str = Field(description="task id: the shot id, or shot~n for a continuity variant")
    shot: str
    segment: str
    frames: int = Field(ge=1)
    duration: float = Field(gt=0, description="seconds")
    start: float = Field(ge=0, description="decode time of the first frame in the media, seconds")
    init: str = Field(description="init segment URI (one per encode spec)")
    media: list[MediaSegment] = Field(min_length=1)


class Variant(_Doc):
    after: list[str] | None = Field(
        description="task ids played just before this segment that lead to this variant; "
        "null: whatever came before"
    )
    shots: list[str] = Field(min_length=1, description="task ids, in playing order")


class Option(_Doc):
    label: str
    next: str


class ChoiceEntry(_Doc):
    prompt: str
    default: int = Field(ge=0)
    window: float = Field(gt=0, description="seconds before the segment ends the choice opens")
    timeout: Literal["default"] = Field(
        "default", description="what happens when the window runs out: the default is taken"
    )
    options: list[Option] = Field(min_length=1)


class SegmentEntry(_Doc):
    id: str
    duration: float = Field(gt=0, description="seconds")
    variants: list[Variant] = Field(min_length=1)
    choice: ChoiceEntry | None = None
    next: str | None = None
    ending: bool


class BranchEntry(_Doc):
    name: str
    segments: list[str]
    choices: list[str] = Field(description="labels of the options taken")
    shots: list[str] = Field(description="task ids, in playing order")
    frames: int
    playlist: str = Field(description="HLS media playlist URI")


class Video(_Doc):
    width: int
    height: int
    fps: int
    timescale: int
    codecs: str = Field(description="RFC 6381 codec string, e.g. avc1.64000c")
    mime: str = Field(description='MSE type, e.g. video/mp4; codecs="avc1.64000c"')


class StoryMap(_Doc):
    version: Literal[1] = STORY_MAP_VERSION
    story: str
    title: str
    start: str
    video: Video
    segments: list[SegmentEntry]
    endings: list[str]
    shots: dict[str, ShotEntry]
    branches: list[BranchEntry]
    hls: str = Field(description="multivariant HLS playlist URI")


def story_map_schema() -> dict[str, Any]:
    schema = StoryMap.model_json_schema(mode="validation")
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "reelfarm story map (story.json)"
    return schema


def schema_text() -> str:
    return json.dumps(story_map_schema(), indent=2, sort_keys=True) + "\n"


def segment_variants(story: Story, plan: RenderPlan) -> dict[str, list[Variant]]:
    """Per segment, the task sequences it can play and which preceding task picks each."""
    task_of = {(t.shot, t.upstream if t.continuity == "previous" else None): t.id
               for t in plan.tasks}
    by_id = story.segments_by_id
    preds = predecessors(story)
    exits: dict[str, list[str]] = {}
    out: dict[str, list[Variant]] = {}
    for sid in topological_order(story):
        seg = by_id[sid]
        contexts: list[str | None] = []
        for p in preds[sid]:
            for t in exits[p]:
                if t not in contexts:
                    contexts.append(t)
        seqs: dict[tuple[str, ...], list[str | None]] = {}
        for ctx in contexts or [None]:
            prev = ctx
            seq: list[str] = []
            for shot in seg.shots:
                tid = task_of[(shot.id, None if shot.continuity == "cut" else prev)]
                seq.append(tid)
                prev = tid
            seqs.setdefault(tuple(seq), []).append(ctx)
        if len(seqs) == 1:
            out[sid] = [Variant(after=None, shots=list(next(iter(seqs))))]
        else:
            out[sid] = [Variant(after=[c for c in ctxs if c is not None], shots=list(seq))
                        for seq, ctxs in seqs.items()]
        exits[sid] = [v[-1] for v in seqs]
    return out


if __name__ == "__main__":
    sys.stdout.write(schema_text())
