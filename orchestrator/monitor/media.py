"""Blobs served to the browser: clips, masters, thumbnails and logs, through the server only.

A local store's blob is served from its file (the server answers HTTP ranges, so a video can
seek), once its bytes have been checked against their digest in this process. Any other store
(S3) is read whole, verified, into a private cache directory first and served from there: the
browser never sees a store URL or a credential.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..store import LocalStore, Store
from ..store.base import blob_path, sha256_file
from . import ids


class BlobCache:
    """Verified local files for the blobs of ``store`` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._verified: dict[str, tuple[int, int]] = {}  # digest -> (size, mtime_ns) checked
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._dir: Path | None = None

    def _lock_for(self, digest: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(digest, threading.Lock())

    def path(self, digest: str) -> Path:
        """A local file holding the blob's verified bytes. Raises :class:`~..store.BlobMissing`
        or :class:`~..store.CorruptBlob` (a corrupt blob is never served)."""
        from ..store import BlobMissing, CorruptBlob

        ids.digest(digest)
        with self._lock_for(digest):
            if isinstance(self.store, LocalStore):
                p = self.store.root / blob_path(digest)
            else:
                p = self._cache_dir() / digest
            try:
                st = p.stat()
            except FileNotFoundError:
                st = None
            if st is not None and self._verified.get(digest) == (st.st_size, st.st_mtime_ns):
                return p
            if isinstance(self.store, LocalStore):
                if st is None:
                    raise BlobMissing(digest)
                actual, _ = sha256_file(p)
                if actual != digest:
                    raise CorruptBlob(digest, actual)
            else:
                self.store.get_file(digest, p)  # verified; a corrupt blob writes nothing
            st = p.stat()
            self._verified[digest] = (st.st_size, st.st_mtime_ns)
            return p

    def _cache_dir(self) -> Path:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="reelfarm-ui-"))
                os.chmod(self._dir, 0o700)
            return self._dir

    def close(self) -> None:
        with self._lock:
            d, self._dir = self._dir, None
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
