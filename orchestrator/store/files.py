"""Writing local files atomically, for the local store and the local output alike.

A file is written to a temporary name beside its destination, flushed to disk, given the mode
a plain ``open()`` would give it (``0o666`` less the umask: ``0644`` under ``022``; ``mkstemp``
alone makes ``0600``, unreadable to the other users of a shared file system), then renamed over
the destination. On any error the temporary file is removed, so a failed write leaves neither a
half-written destination nor a ``.tmp-*`` file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".tmp-"


def umask() -> int:
    """The process's umask, read without changing it (``/proc``), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~umask()


def write_atomic(dest: str | Path, write: Callable[[IO[bytes]], Any],
                 mode: int | None = None) -> None:
    """Write ``dest`` through ``write(f)`` on a temporary file, then rename it into place,
    with permissions ``mode`` (default: what the umask gives a new file)."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
    except OSError as e:
        raise _named(e, dest) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), file_mode() if mode is None else mode)
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _named(e, dest) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _named(e: OSError, dest: Path) -> OSError:
    """The same error (same class, same errno) naming the destination, not the temporary file."""
    if e.errno is None:
        return e
    return OSError(e.errno, e.strerror, str(dest))


def check_dir_writable(path: str | Path, what: str) -> None:
    """Make the directory ``path`` if needed and create (then remove) a file in it; raise
    ``ValueError("cannot write to <what> <path>: <reason>")`` when that fails (a regular file in
    the way, ``/proc``, a read-only mount, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise ValueError(f"cannot write to {what} {path}: it is a file, not a directory") from None
    except OSError as e:
        raise ValueError(f"cannot write to {what} {path}: {e.strerror or e}") from None
