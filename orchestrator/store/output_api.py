"""The interface every output destination implements (a directory, an ``s3://`` prefix).

A leaf of its own, so that :mod:`.outputs` (which opens destinations) and :mod:`.s3_objects`
(the S3 destination) both import it and not each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .base import BlobRef, Store, check_rel

OUTPUT_REFUSAL = "refusing output path"


class Output(ABC):
    url: str

    @abstractmethod
    def put_json(self, rel: str, doc: Any) -> None:
        """Publish a JSON document at ``rel`` (replacing it)."""

    @abstractmethod
    def put_blob(self, rel: str, store: Store, ref: BlobRef) -> None:
        """Publish a verified copy of a store blob at ``rel`` (skipped when identical)."""


def check_output_rel(rel: str) -> str:
    """``rel`` if it is a plain relative path under an output's root, else ``ValueError``."""
    return check_rel(rel, OUTPUT_REFUSAL)
