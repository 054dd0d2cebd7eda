"""Where manifests come from: a local path, or an ``s3://bucket/key`` URL."""

from __future__ import annotations

from ..spec.loading import MAX_MANIFEST_BYTES


def read_source(source: str, *, s3_endpoint: str | None = None) -> bytes | None:
    """The manifest's bytes for an ``s3://`` URL; ``None`` for a path (the loader reads it)."""
    if not source.startswith("s3://"):
        return None
    from .s3_objects import read_object

    return read_object(source, endpoint_url=s3_endpoint, max_bytes=MAX_MANIFEST_BYTES + 1)
