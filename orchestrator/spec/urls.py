"""Locations given on the command line: printing them safely, and resolving them once.

* :func:`redact_url` hides the user info of a URL (``user:secret@``) wherever one is echoed,
  with or without a scheme.
* :func:`s3_endpoint` applies the documented precedence of an S3 endpoint: the flag, then
  ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL`` (botocore's order).
* :func:`local_path` turns a ``file://`` URL into its path: an empty host or ``localhost``
  only, never a relative path made of the host name.
* :func:`canonical_location` resolves a store or output location on the driver: an absolute
  path for a directory (relative to the driver's working directory, not a worker's), the
  ``s3://`` URL unchanged.
* :func:`printable` strips control characters from user text before it reaches a terminal.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.S)
# C0 and C1 controls and DEL (escape sequences start with ESC or CSI); tabs become spaces
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _split_netloc(url: str) -> tuple[str, str, str]:
    m = _SCHEME_RE.match(url)
    scheme, rest = (m.group(1), m.group(2)) if m else ("", url)
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            end = min(end, i)
    return scheme, rest[:end], rest[end:]


def without_userinfo(url: str) -> str:
    """``url`` with no user info at all (``http://host:9000``): for an S3 endpoint, whose
    credentials come from the AWS chain and never from the URL, before it is stored or passed
    on (job metadata, a job's command line, actor arguments)."""
    scheme, netloc, tail = _split_netloc(url)
    return scheme + netloc.rpartition("@")[2] + tail


def redact_url(url: str) -> str:
    """``url`` with its user info replaced by ``***``: ``http://***@host:9000/``.

    Works on URLs whose scheme was forgotten (``user:secret@host:9000``) and on ones that do
    not parse (a bad port), since those are the ones echoed in error messages."""
    scheme, netloc, tail = _split_netloc(url)
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return scheme + netloc + tail


class BadLocation(ValueError):
    """A location a user gave that cannot be used (one clear line)."""


def s3_endpoint(flag: str | None) -> str | None:
    """The S3 endpoint to use: ``flag``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``,
    without user info (S3 credentials never come from a URL).

    Raises :class:`BadLocation` for an endpoint that is not an ``http(s)://`` URL (a forgotten
    scheme), naming it without its user info."""
    for value in (flag, os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL")):
        if value and value.strip():
            value = value.strip()
            try:
                p = urlsplit(value)
                ok = p.scheme in ("http", "https") and bool(p.hostname)
                p.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError:
                ok = False
            if not ok:
                raise BadLocation(
                    f"S3 endpoint {redact_url(value)!r} is not an http:// or https:// URL "
                    "(e.g. http://minio:9000)"
                )
            return without_userinfo(value)
    return None


def local_path(url: str) -> str:
    """The path a local location names: a plain path, or a ``file://`` URL whose host is empty
    or ``localhost`` (``file:///x``, ``file://localhost/x``). Other hosts are refused."""
    if not url.startswith("file:"):
        return url
    p = urlsplit(url)
    if url.startswith("file://") and p.netloc not in ("", "localhost"):
        raise BadLocation(
            f"{redact_url(url)}: a file:// URL names a local path; host {p.hostname!r} is not "
            "this machine (write file:///path or file://localhost/path)"
        )
    if not url.startswith("file://") or not p.path.startswith("/"):
        raise BadLocation(f"{redact_url(url)}: a file URL needs an absolute path (file:///path)")
    return unquote(p.path)


def canonical_location(url: str) -> str:
    """A store or output location resolved on the driver: ``s3://...`` as given, anything else
    as an absolute local path (``~`` expanded), so every process and node reads the same one."""
    if url.startswith("s3://"):
        return url
    if "://" in url and not url.startswith("file://"):
        return url  # an unsupported scheme: the opener refuses it with its own message
    return os.path.abspath(os.path.expanduser(local_path(url)))


def printable(text: object) -> str:
    """``text`` without control characters (terminal escape sequences), for printing."""
    return _CONTROL_RE.sub("", str(text).replace("\t", " "))
