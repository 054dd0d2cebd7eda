"""Build story manifests in tests (as dicts and as YAML files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.spec.manifest import Story


def shot(id: str, prompt: str | None = None, duration: float = 0.5, **kw: Any) -> dict:
    return {"id": id, "prompt": prompt or f"prompt of {id}", "duration": duration, **kw}


def story_dict(segments: list[dict], *, name: str = "t", start: str | None = None,
               renderer: dict | None = None, profile: dict | None = None, **spec: Any) -> dict:
    return {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": name, "title": "test story"},
        "spec": {
            "profile": profile or {"width": 64, "height": 64, "fps": 8},
            "renderer": renderer or {"backend": "previz"},
            "seed": 1,
            "start": start or segments[0]["id"],
            "segments": segments,
            **spec,
        },
    }


def story(segments: list[dict], **kw: Any) -> Story:
    return Story.model_validate(story_dict(segments, **kw))


def write_story(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def diamond_story(tasks: int, *, hub: int = 8, ways: int = 4, name: str = "scale") -> dict:
    """A generated story of about ``tasks`` unique render tasks: a chain of hubs, each choosing
    between ``ways`` one-shot segments that all lead to the next hub.

    Every shot after the first hub continues from the previous one, so each hub shot is
    planned once per way in (``ways`` continuity variants) and the one-shot options are cuts:
    ``hub * ways + ways`` tasks per hub. The number of paths is ``ways`` to the power of the
    number of choices (4**100, a 61-digit number, at 3,600 tasks); ``masters: endings`` asks
    for the one master of the one ending.
    """
    per = hub * ways + ways
    hubs = max(1, round(tasks / per))
    segments: list[dict] = []
    n = 0

    def next_shot(sid: str, continues: bool) -> dict:
        nonlocal n
        n += 1
        s = {"id": sid, "prompt": f"p{n}", "duration": 0.5}
        if continues:
            s["continuity"] = "previous"
        return s

    for i in range(hubs):
        seg: dict = {"id": f"h{i}", "shots": [next_shot(f"h{i}-{j}", i > 0) for j in range(hub)]}
        segments.append(seg)
        if i == hubs - 1:
            break
        seg["choice"] = {"options": [{"label": f"o{w}", "next": f"x{i}-{w}"}
                                     for w in range(ways)]}
        for w in range(ways):
            segments.append({"id": f"x{i}-{w}", "shots": [next_shot(f"x{i}-{w}", False)],
                             "next": f"h{i + 1}"})
    return story_dict(segments, name=name, masters="endings")


def write_compact(path: Path, doc: dict) -> Path:
    """``doc`` as YAML with each shot on one line (flow style), as a large story is written."""
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200))
    return path
