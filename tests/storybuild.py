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
