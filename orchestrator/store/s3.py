"""A store in S3 or any S3-compatible server (MinIO, Ceph RGW, ...): ``s3://bucket/prefix``.

Layout under the prefix is the one of :mod:`orchestrator.store.base`. Behaviour:

* **Credentials** come only from the standard AWS chain (environment, shared files, SSO, instance
  or pod role). They are never taken from a URL, never logged, and every message this module
  produces goes through :func:`redact` first.
* **Blobs** are written with ``IfNoneMatch="*"`` and a SHA-256 checksum header, so the server
  rejects bytes that do not match and never overwrites an existing blob. A 412 (the blob exists)
  is success only once the existing object is proven good: its size must match and its bytes must
  hash to the digest (one streaming read, only in that rare case). An existing object that fails
  this proof (a bad writer, a truncated copy) is overwritten with the new bytes, which hash to the
  key by construction. This is the S3 equivalent of :class:`LocalStore` re-hashing an existing
  file, so re-rendering a shot after a :class:`CorruptBlob` repairs the store through the plain
  ``put_file``/``put_bytes`` calls; no extra flag is needed.
* **Large blobs** (``multipart_threshold``) use a multipart upload whose completion carries the
  ``IfNoneMatch="*"`` condition; any failure aborts the upload.
* **Reads** stream, hash and compare; a mismatch raises :class:`CorruptBlob`. ``get_file``
  writes a temporary file beside the destination and renames it only when the digest matches.
* **Retries**: one bounded loop (exponential backoff, full jitter; :mod:`.s3_requests` says why
  not botocore's retry modes) around every request, including reading response bodies, on
  throttling (503 SlowDown, 429), server errors (500, 502, 503, 504), request timeouts and
  dropped connections. botocore's own retries are switched off (its ``standard`` mode with one
  attempt) so attempts never multiply.
* **Batched lookups** (``get_actions``, ``has_blobs``, ``action_sizes``) run concurrently on a
  thread pool (``concurrency``, default 32), never as sequential round trips. Existence checks
  (``has_blobs``, ``action_sizes``) of more than ``list_threshold`` (default 64) objects list
  the prefixes the objects fall in instead of a HEAD per object (S3 prefixes match on the key
  string): first by one hex character (``cas/sha256/a``, ``ac/a``: 16 LISTs), and where such a
  prefix holds more than a page, by the two-character shards (``cas/sha256/ab/``, ``ac/ab``),
  each paginated, all concurrent; a prefix holding a single wanted object gets a HEAD. A cached
  plan of 1,000 tasks on a small store is then about 32 LISTs for existence, not 3,000
  requests; on a store of millions of objects, its pages (at most 256 shards listed at once).

Settings (constructor argument, else environment variable, else default):

=========================  ===============================  =====================================
argument                   environment                      default
=========================  ===============================  =====================================
``endpoint_url``           ``AWS_ENDPOINT_URL_S3``,         AWS
                           ``AWS_ENDPOINT_URL``
``checksum``               ``REELFARM_S3_CHECKSUM``         ``when_supported``
``addressing_style``       ``REELFARM_S3_ADDRESSING_STYLE`` ``path`` with an endpoint, else ``auto``
``max_attempts``           ``REELFARM_S3_MAX_ATTEMPTS``     8
``concurrency``            ``REELFARM_S3_CONCURRENCY``      32
=========================  ===============================  =====================================

``checksum`` is ``when_supported`` (boto3's default checksums plus our SHA-256 header),
``when_required`` (boto3 sends checksums only where an operation requires them; our explicit
SHA-256 header is still sent: use it for servers that reject boto3's default CRC32 trailers) or
``off`` (no checksum headers at all, for servers that reject ``x-amz-checksum-*``; integrity then
rests on the verification of every read).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    check_rel,
    sha256_file,
)
from .files import write_atomic
from .s3_errors import _safe_url, redact
from .s3_listing import S3Listing
from .s3_requests import _b64sha256, _hex_to_b64
from .s3_writes import MIN_PART_SIZE, MiB, S3Writes, _NullSink, _Source

# The store is one class made of its concerns, each a module of its own: errors and redaction
# (s3_errors), requests with retries (s3_requests), listing (s3_listing), conditional and
# multipart writes (s3_writes). The names below stay importable from here.
__all__ = ["S3Store", "parse_s3_url", "redact", "_b64sha256", "_hex_to_b64", "_safe_url",
           "_NullSink"]

log = logging.getLogger("reelfarm.store.s3")

CHECKSUM_MODES = ("when_supported", "when_required", "off")
ADDRESSING_STYLES = ("auto", "path", "virtual")

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StoreError(f"{name} must be an integer, not {raw!r}") from None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix/")`` (prefix may be empty)."""
    if not url.startswith("s3://"):
        raise StoreError("not an s3:// URL")
    rest = url[len("s3://") :]
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        raise StoreError(
            "s3:// store URLs must not carry credentials; use the standard AWS credential chain"
        )
    if not _BUCKET_RE.match(netloc):
        raise StoreError(f"not a valid bucket name in store URL: {redact(netloc)!r}")
    if "?" in path or "#" in path:
        raise StoreError("s3:// store URLs take no query or fragment")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise StoreError("s3:// store URL prefix must not contain '.' or '..'")
    prefix = "/".join(parts)
    return netloc, (prefix + "/" if prefix else "")


class S3Store(S3Writes, S3Listing, Store):
    """A store at ``s3://bucket/prefix``. See the module docstring for behaviour and settings."""

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        *,
        checksum: str | None = None,
        addressing_style: str | None = None,
        region_name: str | None = None,
        max_attempts: int | None = None,
        backoff_base: float = 0.25,
        backoff_max: float = 20.0,
        concurrency: int | None = None,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
        part_concurrency: int = 4,
        list_page_size: int = 1000,
        list_threshold: int = 64,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        self.endpoint = _safe_url(self.endpoint_url)  # printable

        mode = (checksum or os.environ.get("REELFARM_S3_CHECKSUM") or "when_supported").strip()
        if mode not in CHECKSUM_MODES:
            raise StoreError(f"S3 checksum setting must be one of {CHECKSUM_MODES}, not {mode!r}")
        self.checksum = mode
        self._send_sha256 = mode != "off"
        boto_mode = "when_supported" if mode == "when_supported" else "when_required"

        style = addressing_style or os.environ.get("REELFARM_S3_ADDRESSING_STYLE") or ""
        style = style.strip() or ("path" if self.endpoint_url else "auto")
        if style not in ADDRESSING_STYLES:
            raise StoreError(
                f"S3 addressing style must be one of {ADDRESSING_STYLES}, not {style!r}"
            )
        self.addressing_style = style

        self.max_attempts = max(
            1, max_attempts if max_attempts is not None else _env_int("REELFARM_S3_MAX_ATTEMPTS", 8)
        )
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.concurrency = max(
            1, concurrency if concurrency is not None else _env_int("REELFARM_S3_CONCURRENCY", 32)
        )
        self.part_size = max(MIN_PART_SIZE, part_size)
        self.multipart_threshold = max(self.part_size, multipart_threshold)
        self.part_concurrency = max(1, part_concurrency)
        self.list_page_size = max(1, min(1000, list_page_size))
        self.list_threshold = max(0, list_threshold)

        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},  # our loop retries
            s3={"addressing_style": style},
            request_checksum_calculation=boto_mode,
            response_checksum_validation=boto_mode,
            max_pool_connections=self.concurrency + self.part_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
        )
        self._session = boto3.session.Session()
        region = region_name or self._session.region_name
        if not region and self.endpoint_url:
            region = "us-east-1"  # MinIO's and most servers' default; signing needs one
        try:
            self._client = self._session.client(
                "s3", endpoint_url=self.endpoint_url, region_name=region, config=config
            )
        except Exception as e:  # bad endpoint URL, bad region, ...
            raise StoreError(
                f"{self.url}: cannot create an S3 client for endpoint {self.endpoint}: "
                f"{self._redact(str(e))}"
            ) from None

        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.requests = 0  # attempts sent, including retries
        self.retries = 0  # attempts that were retries

    # -- public helpers ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 client (for event hooks in tests, or advanced use)."""
        return self._client

    def key_for(self, relpath: str) -> str:
        """The object key of a path relative to the store root."""
        return self.prefix + relpath

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with contextlib.suppress(Exception):  # best effort
            self._client.close()

    def _stream(self, digest: str, sink_open: Callable[[], Any] | None) -> bytes | None:
        """Read a blob, hashing it; into memory (``sink_open`` None) or into a sink.

        Each attempt restarts the read (a dropped connection mid-body is retried whole).
        Raises BlobMissing / CorruptBlob.
        """
        from botocore.exceptions import ClientError

        key = self.key_for(blob_path(digest))

        def go() -> bytes | None:
            try:
                resp = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if self._is_missing(e):
                    raise BlobMissing(digest) from None
                raise
            h = hashlib.sha256()
            chunks: list[bytes] = []
            sink = sink_open() if sink_open is not None else None
            body = resp["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK):
                    h.update(chunk)
                    if sink is not None:
                        sink.write(chunk)
                    else:
                        chunks.append(chunk)
            finally:
                body.close()
            actual = h.hexdigest()
            if actual != digest:
                raise CorruptBlob(digest, actual)
            return b"".join(chunks) if sink is None else None

        return self._run("GetObject", key, go)

    # -- blobs ------------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        self._put_blob(digest, _Source(data=data, size=len(data)))
        return BlobRef(sha256=digest, size=len(data))

    def put_file(self, path: str | Path) -> BlobRef:
        path = Path(path)
        digest, size = sha256_file(path)
        self._put_blob(digest, _Source(path=path, size=size))
        return BlobRef(sha256=digest, size=size)

    def get_bytes(self, digest: str) -> bytes:
        data = self._stream(digest, None)
        assert data is not None
        return data

    def get_file(self, digest: str, dest: str | Path) -> None:
        blob_path(digest)  # validate before touching the file system

        def write(f: Any) -> None:
            def sink_open() -> Any:  # each attempt starts the file again
                f.seek(0)
                f.truncate()
                return f

            self._stream(digest, sink_open)

        write_atomic(dest, write)

    def has_blobs(self, refs: Iterable[BlobRef]) -> dict[str, bool]:
        unique = {self.key_for(blob_path(r.sha256)): r for r in refs}
        # blob keys are cas/sha256/ab/<digest>: shards cas/sha256/a, then cas/sha256/ab/
        base = len(self.key_for("cas/sha256/"))
        sizes = self._sizes(list(unique), lambda key, depth: key[: base + 2 * depth - 1])
        return {r.sha256: sizes.get(key) == r.size for key, r in unique.items()}

    def iter_blobs(self) -> Iterator[BlobRef]:
        base = self.key_for("cas/sha256/")
        for obj in self._list(base):
            rel = obj["Key"][len(base) :]
            sub, _, name = rel.partition("/")
            if SHA256_RE.match(name) and sub == name[:2]:
                yield BlobRef(sha256=name, size=int(obj.get("Size", 0)))

    def delete_blob(self, digest: str) -> None:
        self._delete(self.key_for(blob_path(digest)))

    # -- action cache -----------------------------------------------------------------------
    def get_actions(self, keys: Iterable[str]) -> dict[str, ActionRecord | None]:
        unique = list(dict.fromkeys(keys))
        for k in unique:
            action_path(k)  # validate all before any request

        def one(k: str) -> tuple[str, ActionRecord | None]:
            raw = self._get_small(self.key_for(action_path(k)))
            if raw is None:
                return k, None
            rec = ActionRecord.from_json(raw)
            return k, rec if rec is not None and rec.key == k else None

        return dict(self._pool_map(one, unique))

    def action_sizes(self, keys: Iterable[str]) -> dict[str, int]:
        unique = {self.key_for(action_path(k)): k for k in keys}  # validates every key first
        # record keys are ac/<key>.json: shards ac/a, then ac/ab (prefixes match on the string)
        base = len(self.key_for("ac/"))
        sizes = self._sizes(list(unique), lambda key, depth: key[: base + depth])
        return {unique[key]: size for key, size in sizes.items()}

    def put_action(self, record: ActionRecord) -> None:
        self._put_small(self.key_for(action_path(record.key)), record.to_json(), "application/json")

    def iter_action_keys(self) -> Iterator[str]:
        base = self.key_for("ac/")
        for obj in self._list(base):
            name = obj["Key"][len(base) :]
            if name.endswith(".json") and SHA256_RE.match(name[: -len(".json")]):
                yield name[: -len(".json")]

    def delete_action(self, key: str) -> None:
        self._delete(self.key_for(action_path(key)))

    # -- documents --------------------------------------------------------------------------
    def put_doc(self, relpath: str, data: bytes) -> None:
        ctype = "application/json" if relpath.endswith(".json") else "application/octet-stream"
        self._put_small(self.key_for(check_rel(relpath)), data, ctype)

    def get_doc(self, relpath: str) -> bytes | None:
        return self._get_small(self.key_for(check_rel(relpath)))

    def list_docs(self, prefix: str) -> list[str]:
        prefix = prefix.strip("/")
        if prefix:
            check_rel(prefix)
            prefix += "/"
        base = self.key_for(prefix)
        out = [o["Key"][len(self.prefix) :] for o in self._list(base) if not o["Key"].endswith("/")]
        return sorted(out)

    def delete_doc(self, relpath: str) -> None:
        self._delete(self.key_for(check_rel(relpath)))
