"""Stores: where clips, masters and action records live. A store is a URL."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from .base import (
    ActionRecord,
    BlobMissing,
    BlobRef,
    CorruptBlob,
    Store,
    StoreError,
    sha256_bytes,
    sha256_file,
)
from .local import LocalStore

DEFAULT_STORE = "./.reelfarm/store"

__all__ = [
    "ActionRecord",
    "BlobMissing",
    "BlobRef",
    "CorruptBlob",
    "DEFAULT_STORE",
    "LocalStore",
    "Store",
    "StoreError",
    "open_store",
    "sha256_bytes",
    "sha256_file",
]


def open_store(url: str | None = None, *, s3_endpoint: str | None = None) -> Store:
    """Open a store from its URL: a directory, ``file:///dir`` or ``s3://bucket/prefix``."""
    url = url or DEFAULT_STORE
    if url.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(url, endpoint_url=s3_endpoint)
    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"file:// store URLs name a local path, not host {parsed.netloc!r}")
        return LocalStore(unquote(parsed.path), url=url)
    if "://" in url:
        raise StoreError(f"unsupported store URL {url!r}: use a directory, file:// or s3://")
    return LocalStore(url)
