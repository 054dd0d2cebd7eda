"""A shot's log: everything one render printed, captured in the renderer actor.

:class:`ShotLog` is a context manager around one render. While it is open:

* file descriptors 1 and 2 point at a temporary file, so the output of C extensions, of CUDA
  and of child processes (ffmpeg) is captured, not only Python's ``print``;
* Python warnings, under the process's own filters, are written to the log, once per render
  (the "already shown" registries are reset);
* log records that reach the root logger are written to the log, unless a handler of the root
  logger already writes them to stdout or stderr (they are captured there).

:meth:`ShotLog.text` is the log as UTF-8 text (undecodable bytes replaced), at most
:data:`MAX_BYTES` (the head and the tail of a longer log, with a line saying what was left out),
and with the values of secret-looking environment variables (tokens, keys, passwords) masked: a
log never carries a credential. The environment itself is never written to a log.

One render at a time per process: the actor runs with ``max_concurrency=1``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import IO, Any

MAX_BYTES = 1 << 20  # a longer log keeps its first quarter and its last three quarters
HEAD_BYTES = MAX_BYTES // 4
MASK = "***"
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|_KEY$|^KEY$|"
                          r"ACCESS_KEY|API_KEY|AUTH)", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter values (a mode such as "token", a flag) are not masked


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like credentials, longest first."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items()
             if _SECRET_NAME.search(k) and len(v.strip()) >= _MIN_SECRET_LEN}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, MASK)
    return text


class ShotLog:
    """Capture one render's output; see the module docstring."""

    def __init__(self, header: str = "") -> None:
        self.header = header
        self._file: IO[bytes] | None = None
        self._saved: dict[int, int] = {}
        self._handler: logging.Handler | None = None
        self._warnings: Any = None
        self._text: str | None = None
        self._std: tuple[Any, Any] | None = None

    def __enter__(self) -> ShotLog:
        # unbuffered: the captured descriptors write at the same offset as this file object
        self._file = tempfile.TemporaryFile(prefix="reelfarm-log-", buffering=0)  # noqa: SIM115
        if self.header:
            self._file.write(self.header.encode() + b"\n")
            self._file.flush()
        _flush_std()
        for fd in (1, 2):
            try:
                self._saved[fd] = os.dup(fd)
                os.dup2(self._file.fileno(), fd)
            except OSError:  # no such descriptor in this process: nothing to capture there
                self._saved.pop(fd, None)
        root = logging.getLogger()
        logged = any(_to_std(h) for h in root.handlers)  # before sys.stderr changes
        # Python's own streams too, whatever they were (a test runner's, a notebook's)
        self._std = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = io.TextIOWrapper(
            _Writer(self._file), encoding="utf-8", errors="replace", write_through=True)
        # the process's filters stay; entering resets the "already shown" registries, so a
        # warning shows again in each render's log (once per place, as by default)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.showwarning = self._show_warning
        if not logged:
            self._handler = logging.StreamHandler(sys.stderr)
            self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            root.addHandler(self._handler)
        return self

    def _show_warning(self, message: Any, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
        self.write(warnings.formatwarning(message, category, filename, lineno, line))

    def write(self, text: str) -> None:
        """Add ``text`` to the log (a traceback, a line of its own)."""
        if self._file is None:
            return
        _flush_std()
        self._file.write(text.encode("utf-8", "replace"))

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> str:
        """Stop capturing (restoring stdout, stderr, warnings and logging); returns the text."""
        if self._text is not None:
            return self._text
        _flush_std()
        if self._std is not None:
            sys.stdout, sys.stderr = self._std
            self._std = None
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler = None
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None
        for fd, saved in self._saved.items():
            with contextlib.suppress(OSError):
                os.dup2(saved, fd)
            os.close(saved)
        self._saved = {}
        data = b""
        if self._file is not None:
            self._file.seek(0, os.SEEK_END)
            size = self._file.tell()
            self._file.seek(0)
            if size > MAX_BYTES:
                head = self._file.read(HEAD_BYTES)
                self._file.seek(size - (MAX_BYTES - HEAD_BYTES))
                tail = self._file.read()
                left = size - len(head) - len(tail)
                data = head + f"\n[... {left} bytes left out ...]\n".encode() + tail
            else:
                data = self._file.read()
            self._file.close()
            self._file = None
        self._text = redact(data.decode("utf-8", "replace"), secret_values())
        return self._text

    def text(self) -> str:
        return self.close()


class _Writer(io.RawIOBase):
    """Writes to the log's file, never closing it (``sys.stdout`` and a logging handler
    write through it)."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self.f = f

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if isinstance(b, str):
            b = b.encode("utf-8", "replace")
        self.f.write(bytes(b))
        return len(b)

    def close(self) -> None:  # the log's file is closed by ShotLog only
        pass


def _to_std(h: logging.Handler) -> bool:
    stream = getattr(h, "stream", None)
    return stream is not None and stream in (sys.stdout, sys.stderr, sys.__stdout__,
                                             sys.__stderr__)


def _flush_std() -> None:
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
