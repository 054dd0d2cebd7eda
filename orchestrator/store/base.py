"""The store contract: a content-addressed blob store plus an action cache.

Layout (DESIGN.md, Store)::

    cas/sha256/ab/<64 hex>          immutable blobs: clips, last-frame images, masters
    ac/<render key>.json            action record: what a render (or an assembly) produced
    runs/<story>/<run id>.json      run records (the report of each render)
    config.json                     store-level settings (the salt)

Every blob read verifies its sha256. A blob whose bytes do not match is a :class:`CorruptBlob`:
callers treat it as a cache miss, report it and render again; it is never assembled.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


class StoreError(Exception):
    """A store could not be used (bad URL, unreachable, refused). Never carries credentials."""


class BlobMissing(StoreError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is not in the store")
        self.digest = digest

    def __reduce__(self):  # picklable across Ray: the constructor's args are not the message
        return (type(self), (self.digest,))


class CorruptBlob(StoreError):
    """A blob's bytes no longer hash to its name."""

    def __init__(self, digest: str, actual: str) -> None:
        super().__init__(f"blob {digest} is corrupt: its bytes hash to {actual}")
        self.digest = digest
        self.actual = actual

    def __reduce__(self):
        return (type(self), (self.digest, self.actual))


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlobRef(_Frozen):
    sha256: str = Field(pattern=SHA256_RE.pattern)
    size: int = Field(ge=0)


class ActionRecord(_Frozen):
    """What one action (a shot render, or a master's assembly) produced. Written last."""

    key: str = Field(pattern=SHA256_RE.pattern)
    kind: str = "render"  # render | master
    outputs: dict[str, BlobRef]  # "clip", "last_frame"; "master" for assemblies
    frames: int = Field(ge=0)
    width: int = 0
    height: int = 0
    fps: int = 0
    backend: str = ""
    backend_version: str = ""
    seconds: float = 0.0  # wall seconds of the action itself
    load_seconds: float = 0.0  # model load time paid by this action (0 when warm)
    node: str = ""
    created: str = Field(default_factory=lambda: utcnow())
    #: The document the key is the hash of (``plan.expand.key_inputs``), so that a later plan
    #: can say what changed; ``None`` in records written before it was kept, and for masters.
    inputs: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> ActionRecord | None:
        """Parse a record; a damaged record is ``None`` (a miss), never an exception."""
        try:
            return cls.model_validate_json(data)
        except (ValidationError, ValueError):
            return None


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def blob_path(digest: str) -> str:
    """The relative path of a blob (``cas/sha256/ab/<hex>``); refuses anything but a digest."""
    if not SHA256_RE.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"cas/sha256/{digest[:2]}/{digest}"


def check_rel(rel: str, refusal: str = "path escapes the store or is not a plain relative path"
              ) -> str:
    """``rel`` if it is a plain relative path below a root (no ``..``, ``.``, empty or absolute
    part, no backslash or NUL); otherwise ``ValueError(f"{refusal}: {rel!r}")``."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{refusal}: {rel!r}")
    if "\\" in rel or "\x00" in rel:
        raise ValueError(f"not a valid document path: {rel!r}")
    return rel


def action_path(key: str) -> str:
    if not SHA256_RE.match(key):
        raise ValueError(f"not a render key: {key!r}")
    return f"ac/{key}.json"


_RUN_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def run_path(story: str, run_id: str) -> str:
    for part in (story, run_id):
        if not _RUN_PART.match(part) or ".." in part:
            raise ValueError(f"not a valid story or run id: {part!r}")
    return f"runs/{story}/{run_id}.json"


class Store(ABC):
    """Blob store + action cache. Implementations: :class:`LocalStore`, ``S3Store``."""

    #: The URL as given, safe to print (no credentials are ever part of a store URL).
    url: str

    # -- blobs ---------------------------------------------------------------------------
    @abstractmethod
    def put_file(self, path: str | Path) -> BlobRef:
        """Store a file's bytes under their sha256. An identical existing blob is success."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> BlobRef:
        """Store bytes under their sha256. An identical existing blob is success."""

    @abstractmethod
    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified. Raises :class:`BlobMissing` or :class:`CorruptBlob`."""

    @abstractmethod
    def get_file(self, digest: str, dest: str | Path) -> None:
        """Write the blob to ``dest`` (atomically), verified; a corrupt blob writes nothing."""

    @abstractmethod
    def has_blobs(self, refs: Iterable[BlobRef]) -> dict[str, bool]:
        """For each ref: is a blob of that digest and size present? (No re-hash.)"""

    @abstractmethod
    def iter_blobs(self) -> Iterator[BlobRef]:
        """Every blob in the store (digest and size)."""

    @abstractmethod
    def delete_blob(self, digest: str) -> None: ...

    # -- action cache --------------------------------------------------------------------
    @abstractmethod
    def get_actions(self, keys: Iterable[str]) -> dict[str, ActionRecord | None]:
        """Batched lookup; a missing or damaged record maps to ``None``."""

    def get_action(self, key: str) -> ActionRecord | None:
        return self.get_actions([key])[key]

    def action_sizes(self, keys: Iterable[str]) -> dict[str, int]:
        """The size in bytes of each stored record among ``keys``; absent keys are left out.

        Stores override this with a cheaper check than reading every record (a stat, a
        listing); this default reads them, and leaves damaged records out too.
        """
        return {
            k: len(rec.to_json()) for k, rec in self.get_actions(keys).items() if rec is not None
        }

    def existing_actions(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` have a record in the store (without reading the records)."""
        return set(self.action_sizes(keys))

    @abstractmethod
    def put_action(self, record: ActionRecord) -> None:
        """Write (or replace) the record for ``record.key``. Call after its blobs exist."""

    @abstractmethod
    def iter_action_keys(self) -> Iterator[str]: ...

    @abstractmethod
    def delete_action(self, key: str) -> None: ...

    # -- documents (run records, config) -------------------------------------------------
    @abstractmethod
    def put_doc(self, relpath: str, data: bytes) -> None:
        """Write a small document at a path under the store root (atomic, replaces)."""

    @abstractmethod
    def get_doc(self, relpath: str) -> bytes | None: ...

    @abstractmethod
    def list_docs(self, prefix: str) -> list[str]:
        """Relative paths of documents under ``prefix`` (e.g. ``runs/heist/``), sorted."""

    @abstractmethod
    def delete_doc(self, relpath: str) -> None: ...

    # -- shared behaviour ----------------------------------------------------------------
    @property
    def salt(self) -> str:
        """The store-level salt, part of every render key; changing it disowns every record."""
        raw = self.get_doc("config.json")
        if not raw:
            return ""
        try:
            return str(json.loads(raw).get("salt", ""))
        except (ValueError, AttributeError):
            raise StoreError(f"{self.url}: config.json is not valid JSON") from None

    def set_salt(self, salt: str) -> None:
        raw = self.get_doc("config.json")
        try:
            cfg: dict[str, Any] = json.loads(raw) if raw else {}
        except ValueError:
            cfg = {}
        cfg["salt"] = salt
        self.put_doc("config.json", json.dumps(cfg, indent=2, sort_keys=True).encode())

    def put_run(self, story: str, run_id: str, doc: dict[str, Any]) -> str:
        path = run_path(story, run_id)
        # Compact: the C encoder (an indented dump is Python's, seconds for 10,000 tasks).
        self.put_doc(path, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())
        return path

    def list_runs(self, story: str) -> list[str]:
        """Run ids of a story, oldest first (run ids sort by time)."""
        run_path(story, "x")  # validates the story name
        docs = self.list_docs(f"runs/{story}/")
        return [p.rsplit("/", 1)[1].removesuffix(".json") for p in docs if p.endswith(".json")]

    def list_stories(self) -> list[str]:
        names = {p.split("/")[1] for p in self.list_docs("runs/") if p.count("/") >= 2}
        return sorted(names)

    def get_run(self, story: str, run_id: str) -> dict[str, Any] | None:
        raw = self.get_doc(run_path(story, run_id))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
