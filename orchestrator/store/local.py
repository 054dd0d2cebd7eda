"""A store in a local (or network-mounted) directory."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from .base import (
    CHUNK,
    SHA256_RE,
    ActionRecord,
    BlobMissing,
    BlobRef,
    CorruptBlob,
    Store,
    StoreError,
    action_path,
    blob_path,
    sha256_bytes,
    sha256_file,
)
from .files import TMP_PREFIX, check_dir_writable, write_atomic


class StoreMissing(StoreError):
    """A read-only command named a store that does not exist (nothing is created for it)."""


class LocalStore(Store):
    """A store in the directory ``root``.

    ``create=True`` makes the directory when it is missing (``created`` then says so);
    ``create=False`` (read-only commands) raises :class:`StoreMissing` instead."""

    def __init__(self, root: str | Path, url: str | None = None, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)  # absolute: the same store for every process and node
        self.created = False
        if self.root.is_dir():
            return
        if self.root.exists():
            raise StoreError(f"store {self.root} is not a directory")
        if not create:
            raise StoreMissing(f"store {self.root} does not exist")
        try:
            self.root.mkdir(parents=True)
        except FileExistsError:
            return  # made by a concurrent process
        except OSError as e:
            raise StoreError(f"cannot create store directory {self.root}: {e.strerror}") from None
        self.created = True

    def check_writable(self) -> None:
        """Raise :class:`StoreError` when a file cannot be created in the store (a read-only
        mount, no permission): a render refuses such a store before it renders anything."""
        try:
            check_dir_writable(self.root, "store")
        except ValueError as e:
            raise StoreError(str(e)) from None

    # -- helpers ---------------------------------------------------------------------------
    def _abs(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if self.root not in p.parents and p != self.root:
            raise ValueError(f"path escapes the store: {rel!r}")
        return p

    def _blob_ok(self, dest: Path, digest: str) -> bool:
        """An existing blob counts only if its bytes are right (a corrupt one is replaced)."""
        return dest.exists() and sha256_file(dest)[0] == digest

    # -- blobs -----------------------------------------------------------------------------
    def put_file(self, path: str | Path) -> BlobRef:
        digest, size = sha256_file(path)
        dest = self._abs(blob_path(digest))
        if not self._blob_ok(dest, digest):

            def copy(f):
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, f, CHUNK)

            write_atomic(dest, copy)
        return BlobRef(sha256=digest, size=size)

    def put_bytes(self, data: bytes) -> BlobRef:
        digest = sha256_bytes(data)
        dest = self._abs(blob_path(digest))
        if not self._blob_ok(dest, digest):
            write_atomic(dest, lambda f: f.write(data))
        return BlobRef(sha256=digest, size=len(data))

    def get_bytes(self, digest: str) -> bytes:
        p = self._abs(blob_path(digest))
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BlobMissing(digest) from None
        actual = sha256_bytes(data)
        if actual != digest:
            raise CorruptBlob(digest, actual)
        return data

    def get_file(self, digest: str, dest: str | Path) -> None:
        src = self._abs(blob_path(digest))
        dest = Path(dest)
        h = hashlib.sha256()

        def copy(f):
            try:
                with open(src, "rb") as s:
                    while chunk := s.read(CHUNK):
                        h.update(chunk)
                        f.write(chunk)
            except FileNotFoundError:
                raise BlobMissing(digest) from None
            if h.hexdigest() != digest:
                raise CorruptBlob(digest, h.hexdigest())

        write_atomic(dest, copy)

    def has_blobs(self, refs: Iterable[BlobRef]) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for ref in refs:
            try:
                out[ref.sha256] = self._abs(blob_path(ref.sha256)).stat().st_size == ref.size
            except FileNotFoundError:
                out[ref.sha256] = False
        return out

    def iter_blobs(self) -> Iterator[BlobRef]:
        base = self.root / "cas" / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            if not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                if SHA256_RE.match(f.name):
                    yield BlobRef(sha256=f.name, size=f.stat().st_size)

    def delete_blob(self, digest: str) -> None:
        self._abs(blob_path(digest)).unlink(missing_ok=True)

    # -- action cache ----------------------------------------------------------------------
    def get_actions(self, keys: Iterable[str]) -> dict[str, ActionRecord | None]:
        out: dict[str, ActionRecord | None] = {}
        for key in keys:
            try:
                data = self._abs(action_path(key)).read_bytes()
            except FileNotFoundError:
                out[key] = None
                continue
            rec = ActionRecord.from_json(data)
            out[key] = rec if rec is not None and rec.key == key else None
        return out

    def action_sizes(self, keys: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                out[key] = self._abs(action_path(key)).stat().st_size
        return out

    def put_action(self, record: ActionRecord) -> None:
        data = record.to_json()
        write_atomic(self._abs(action_path(record.key)), lambda f: f.write(data))

    def iter_action_keys(self) -> Iterator[str]:
        base = self.root / "ac"
        if not base.is_dir():
            return
        for f in sorted(base.iterdir()):
            if f.suffix == ".json" and SHA256_RE.match(f.stem):
                yield f.stem

    def delete_action(self, key: str) -> None:
        self._abs(action_path(key)).unlink(missing_ok=True)

    # -- documents -------------------------------------------------------------------------
    def put_doc(self, relpath: str, data: bytes) -> None:
        write_atomic(self._abs(relpath), lambda f: f.write(data))

    def get_doc(self, relpath: str) -> bytes | None:
        try:
            return self._abs(relpath).read_bytes()
        except FileNotFoundError:
            return None

    def list_docs(self, prefix: str) -> list[str]:
        base = self._abs(prefix) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith(TMP_PREFIX):
                out.append(p.relative_to(self.root).as_posix())
        return sorted(out)

    def delete_doc(self, relpath: str) -> None:
        self._abs(relpath).unlink(missing_ok=True)
