"""URLs as they may be shown: without the credentials a user put in them."""

from __future__ import annotations

import re

__all__ = ["redact_url"]

# scheme://user:password@host... or user:password@host... (a forgotten scheme): the user info
# is everything before the last '@' of the authority (which ends at the first '/', '?' or '#').
_WITH_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<auth>[^/?#]*)(?P<rest>.*)$",
                          re.S)
_NO_SCHEME = re.compile(r"^(?P<auth>[^/?#]*)(?P<rest>.*)$", re.S)


def redact_url(url: str) -> str:
    """``url`` without the user info of its authority (``user:password@`` or ``user@``).

    Works on a scheme-less ``user:secret@host:port`` too; everything else is left unchanged::

        >>> redact_url("http://admin:secret@head:8265/x")
        'http://head:8265/x'
        >>> redact_url("user:secret@minio:9000")
        'minio:9000'
    """
    m = _WITH_SCHEME.match(url) or _NO_SCHEME.match(url)
    if m is None:  # pragma: no cover - _NO_SCHEME matches any string
        return url
    auth = m.group("auth")
    if "@" not in auth:
        return url
    return (m.groupdict().get("scheme") or "") + auth.rsplit("@", 1)[1] + m.group("rest")
