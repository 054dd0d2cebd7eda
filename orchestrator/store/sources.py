"""Where manifests come from: a local path, or an ``s3://bucket/key`` URL."""

from __future__ import annotations

import errno
import os
import stat

from ..spec.loading import MAX_MANIFEST_BYTES


def read_source(source: str, *, s3_endpoint: str | None = None) -> bytes | None:
    """The manifest's bytes for an ``s3://`` URL; ``None`` for a path (the loader reads it).

    A path that is neither a regular file nor a directory (a FIFO, a device, a socket) is
    refused with an :class:`OSError` before anything reads it: a FIFO without a writer would
    block the reader forever, and a device can be endless."""
    if not source.startswith("s3://"):
        _check_regular(source)
        return None
    from .s3_objects import read_object

    return read_object(source, endpoint_url=s3_endpoint, max_bytes=MAX_MANIFEST_BYTES + 1)


def _check_regular(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing, unreadable: the loader reports it
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else (
            "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise OSError(errno.EINVAL, f"not a regular file ({kind})", path)
