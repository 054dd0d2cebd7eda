"""Interactive delivery: package each shot once (CMAF by stream copy), per-branch HLS over the
shared segments, the story map (``story.json``) and the branching web player, served from any
static host. See docs/delivery.md.

Public names load on first use, so ``python -m orchestrator.delivery.storymap`` (which prints
the story map's JSON Schema) does not import the packager first.
"""

from __future__ import annotations

from typing import Any

_PUBLIC = {
    "DEFAULT_SEGMENT_SECONDS": "._package",
    "NotRendered": "._package",
    "PackageError": "._package",
    "CONTENT_TYPES": "._site",
    "PackageResult": "._site",
    "package_story": "._site",
    "serve_package": ".serve",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value
