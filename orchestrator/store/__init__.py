"""Stores: where clips, masters and action records live. A store is a URL."""

from __future__ import annotations

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
from .local import LocalStore, StoreMissing

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
    "StoreMissing",
    "open_store",
    "sha256_bytes",
    "sha256_file",
]


def open_store(url: str | None = None, *, s3_endpoint: str | None = None,
               create: bool = True) -> Store:
    """Open a store from its URL: a directory, ``file:///dir`` or ``s3://bucket/prefix``.

    ``create=False`` is for read-only commands: a local store that does not exist raises
    :class:`StoreMissing` instead of being made (an S3 prefix is never made by opening it)."""
    from ..spec.urls import BadLocation, local_path, redact_url

    url = url or DEFAULT_STORE
    if url.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(url, endpoint_url=s3_endpoint)
    if "://" in url and not url.startswith("file://"):
        raise StoreError(
            f"unsupported store URL {redact_url(url)!r}: use a directory, file:// or s3://"
        )
    try:
        path = local_path(url)
    except BadLocation as e:
        raise StoreError(str(e)) from None
    return LocalStore(path, create=create)
