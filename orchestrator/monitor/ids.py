"""Strict patterns for every id that reaches the monitor from a URL or a request body, checked
before it names a store document, a blob or an S3 key."""

from __future__ import annotations

import re

from ..spec.manifest import ID_PATTERN
from ..store.base import SHA256_RE

#: A story's name or a run id as the store keeps them (``runs/<story>/<run id>.json``).
RUN_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SHOT_RE = re.compile(ID_PATTERN)
VERDICTS = ("approved", "changes")
MAX_NOTE = 4000
MAX_WHO = 64
_WHO_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


class BadId(ValueError):
    """An id from a request that does not match its pattern (the server answers 400)."""


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value) or ".." in value:
        raise BadId(f"not a valid {what}")
    return value


def story_id(value: object) -> str:
    return _check(RUN_PART_RE, value, "story name")


def run_id(value: object) -> str:
    return _check(RUN_PART_RE, value, "run id")


def shot_id(value: object) -> str:
    return _check(SHOT_RE, value, "shot id")


def digest(value: object) -> str:
    return _check(SHA256_RE, value, "sha256 digest")


def who(value: object) -> str:
    if not isinstance(value, str) or not _WHO_RE.match(value.strip()):
        raise BadId(f"a reviewer's name is 1 to {MAX_WHO} printable characters")
    return value.strip()
