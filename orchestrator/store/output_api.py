"""The interface every output destination implements (a directory, an ``s3://`` prefix).

A leaf of its own, so that :mod:`.outputs` (which opens destinations) and :mod:`.s3_objects`
(the S3 destination) both import it and not each other.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from .base import BlobRef, Store, check_rel

OUTPUT_REFUSAL = "refusing output path"


def json_text(doc: Any) -> str:
    """``doc`` as readable JSON written by the C encoder (an indented ``json.dumps`` is the
    pure-Python encoder: seconds for a 10,000-task report): a top-level mapping one key a line,
    a list under it one item a line, anything deeper on that item's line."""
    if not isinstance(doc, dict) or not doc:
        return json.dumps(doc) + "\n"
    lines = ["{"]
    for i, (k, v) in enumerate(doc.items()):
        end = "," if i + 1 < len(doc) else ""
        key = json.dumps(str(k))
        if isinstance(v, list) and v:
            lines.append(f"  {key}: [")
            lines.extend(f"    {json.dumps(x)}{',' if j + 1 < len(v) else ''}"
                         for j, x in enumerate(v))
            lines.append(f"  ]{end}")
        else:
            lines.append(f"  {key}: {json.dumps(v)}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class Output(ABC):
    url: str

    @abstractmethod
    def put_json(self, rel: str, doc: Any) -> None:
        """Publish a JSON document at ``rel`` (replacing it)."""

    @abstractmethod
    def put_blob(self, rel: str, store: Store, ref: BlobRef) -> None:
        """Publish a verified copy of a store blob at ``rel`` (skipped when identical)."""

    @abstractmethod
    def get_json(self, rel: str) -> Any | None:
        """A published JSON document, or ``None`` when it is missing or not JSON."""

    @abstractmethod
    def holds(self, rel: str, sha256: str) -> bool:
        """Does ``rel`` hold exactly the bytes of digest ``sha256``?"""

    @abstractmethod
    def put_bytes(self, rel: str, data: bytes, content_type: str) -> None:
        """Publish a small file at ``rel`` (replacing it): ``report.html``, a thumbnail."""

    @abstractmethod
    def list_files(self, prefix: str) -> list[str]:
        """Published files directly under the folder ``prefix`` (``thumbs/``), as paths."""

    @abstractmethod
    def list_masters(self) -> list[str]:
        """Published masters: ``masters/<name>.mp4`` paths."""

    @abstractmethod
    def remove(self, rel: str) -> None:
        """Remove a published file (missing is fine)."""

    def check_writable(self) -> None:  # noqa: B027 - a hook; S3 permissions show on first write
        """Raise :class:`StoreError` when the location certainly cannot be written, before any
        work is done for it."""


def check_output_rel(rel: str) -> str:
    """``rel`` if it is a plain relative path under an output's root, else ``ValueError``."""
    return check_rel(rel, OUTPUT_REFUSAL)
