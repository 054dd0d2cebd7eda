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
* **Retries**: one bounded loop (exponential backoff, full jitter) around every request, including
  reading response bodies, on throttling (503 SlowDown, 429), server errors (500, 502, 503,
  504), request timeouts and dropped connections. botocore's own retries are switched off (its
  ``standard`` mode with one attempt) so attempts never multiply.
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

import base64
import contextlib
import hashlib
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

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
    check_rel,
    blob_path,
    sha256_file,
)

log = logging.getLogger("reelfarm.store.s3")

T = TypeVar("T")

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (all but the last)
CHECKSUM_MODES = ("when_supported", "when_required", "off")
ADDRESSING_STYLES = ("auto", "path", "virtual")

_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        "ConditionalRequestConflict",  # 409 while a concurrent conditional write is in flight
    }
)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")

# -- redaction ---------------------------------------------------------------------------------

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # presigned URL query parameters (SigV4 and SigV2)
    (
        re.compile(
            r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId"
            r"|x-amz-security-token)=[^&\s\"'<>]+"
        ),
        r"\1=<redacted>",
    ),
    # Authorization headers and XML error fields that echo the signature or the key
    (re.compile(r"(?i)(Authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,}]+"), r"\1<redacted>"),
    (
        re.compile(
            r"(?i)<(AWSAccessKeyId|SignatureProvided|StringToSign|CanonicalRequest"
            r"|StringToSignBytes|CanonicalRequestBytes)>[^<]*</\1>"
        ),
        r"<\1><redacted></\1>",
    ),
    # access key ids
    (
        re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA|APKA)[A-Z0-9]{12,}\b"),
        "<redacted-key-id>",
    ),
    # anything shaped like a secret access key (40 base64 characters)
    (re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"), "<redacted>"),
    # user:password@ in URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@"), r"\1<redacted>@"),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials removed: key ids, secret-shaped strings, presigned signatures,
    ``Authorization`` values, userinfo in URLs, and the literal ``secrets`` given (the
    credentials in use) wherever they appear."""
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(s, "<redacted>")
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def _safe_url(url: str | None) -> str:
    """An endpoint URL without userinfo, query or fragment."""
    if not url:
        return "AWS"
    try:
        p = urlsplit(url)
        netloc = p.hostname or ""
        if p.port:
            netloc = f"{netloc}:{p.port}"
        return urlunsplit((p.scheme, netloc, p.path, "", ""))
    except ValueError:
        return "<invalid endpoint>"


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _hex_to_b64(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode()


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


class _Source:
    """The bytes being stored: in memory or in a file, re-openable for each attempt."""

    def __init__(self, *, data: bytes | None = None, path: Path | None = None, size: int) -> None:
        self.data = data
        self.path = path
        self.size = size

    def read_range(self, offset: int, n: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + n]
        assert self.path is not None
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)


class S3Store(Store):
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

    # -- errors and retries -----------------------------------------------------------------
    def _secrets(self) -> list[str]:
        try:
            creds = self._session.get_credentials()
            if creds is None:
                return []
            frozen = creds.get_frozen_credentials()
            return [frozen.access_key or "", frozen.secret_key or "", frozen.token or ""]
        except Exception:  # noqa: BLE001 - resolving credentials must never mask the error
            return []

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    @staticmethod
    def _code(e: BaseException) -> tuple[str, int]:
        from botocore.exceptions import ClientError

        if isinstance(e, ClientError):
            err = e.response.get("Error", {}) or {}
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
            return str(err.get("Code", "")), int(status)
        return "", 0

    def _retryable(self, e: BaseException) -> bool:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            SSLError,
        )

        if isinstance(e, SSLError):
            return False
        if isinstance(
            e, (ConnectionError, HTTPClientError, IncompleteReadError, FlexibleChecksumError)
        ):
            return True
        if isinstance(e, ClientError):
            code, status = self._code(e)
            return code in _RETRY_CODES or status in _RETRY_STATUS
        return False

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one request, plus reading its body) with bounded retries."""
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self.requests += 1
                if attempt > 1:
                    self.retries += 1
            try:
                return fn()
            except Exception as e:
                if not self._retryable(e) or attempt >= self.max_attempts:
                    if self._retryable(e):
                        e._reelfarm_attempts = attempt  # type: ignore[attr-defined]
                    raise
                delay = self._delay(attempt)
                log.debug(
                    "%s %s: %s; retry %d of %d in %.2fs",
                    op,
                    key,
                    self._describe(e),
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                time.sleep(delay)

    def _describe(self, e: BaseException) -> str:
        code, status = self._code(e)
        if code or status:
            from botocore.exceptions import ClientError

            assert isinstance(e, ClientError)
            msg = str(e.response.get("Error", {}).get("Message", "") or "")
            text = f"{code or 'error'} ({status})" + (f": {msg}" if msg else "")
        else:
            text = f"{type(e).__name__}: {e}"
        return self._redact(text)

    def _error(self, op: str, key: str, e: BaseException) -> StoreError:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        where = f"{self.url} (endpoint {self.endpoint})"
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(
                f"{where}: no usable AWS credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance or pod role"
            )
        code, status = self._code(e)
        detail = self._describe(e)
        attempts = getattr(e, "_reelfarm_attempts", None)
        tries = f" after {attempts} attempts" if attempts else ""
        hint = ""
        if code == "NoSuchBucket":
            hint = f"; bucket {self.bucket!r} does not exist"
        elif status == 403 or code in (
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ):
            hint = "; check the credentials in the AWS chain and the bucket policy"
        elif code in ("InvalidRequest", "NotImplemented", "XAmzContentSHA256Mismatch") or (
            "checksum" in detail.lower()
        ):
            hint = "; if this server rejects checksum headers, set REELFARM_S3_CHECKSUM"
        elif code == "BadDigest":
            hint = "; the bytes sent do not match their checksum (did the file change?)"
        return StoreError(f"{where}: {op} {self._redact(key)} failed{tries}: {detail}{hint}")

    def _run(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """``_call`` with errors turned into :class:`StoreError` (store errors pass through)."""
        try:
            return self._call(op, key, fn)
        except (StoreError, ValueError):
            raise
        except Exception as e:
            raise self._error(op, key, e) from None

    def _is_missing(self, e: BaseException) -> bool:
        code, status = self._code(e)
        return code in ("NoSuchKey", "404", "NotFound") or (
            status == 404 and code != "NoSuchBucket"
        )

    def _pool_map(self, fn: Callable[[Any], T], items: list[Any]) -> list[T]:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="reelfarm-s3"
                )
            pool = self._pool
        return list(pool.map(fn, items))

    # -- low-level object operations --------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        def go() -> dict[str, Any] | None:
            try:
                return self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if self._is_missing(e):
                    return None
                raise

        return self._run("HeadObject", key, go)

    def _get_small(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def go() -> bytes | None:
            try:
                resp = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if self._is_missing(e):
                    return None
                raise
            body = resp["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return self._run("GetObject", key, go)

    def _put_small(self, key: str, data: bytes, content_type: str) -> None:
        kw: dict[str, Any] = {"ContentType": content_type}
        if self._send_sha256:
            kw["ChecksumSHA256"] = _b64sha256(data)
        self._run(
            "PutObject",
            key,
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **kw),
        )

    def _delete(self, key: str) -> None:
        self._run(
            "DeleteObject", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key)
        )

    def _sizes(self, keys: list[str], shard: Callable[[str, int], str]) -> dict[str, int]:
        """The size of each of ``keys`` that exists (absent keys are left out).

        Up to ``list_threshold`` keys: a HEAD each. Above: the keys are grouped by
        ``shard(key, 1)`` (16 prefixes: one hex character), each group listed. A prefix holding
        more than one page of objects is split into the shards ``shard(key, 2)`` (two hex
        characters; those already covered by the first page are settled from it), which are
        listed to the end, page by page. A group of a single key gets a HEAD instead. Groups
        run concurrently; the requests grow with the pages of the prefixes listed, not with the
        number of keys.
        """
        Group = tuple[int, list[str]]  # noqa: N806 - (depth, keys)
        out: dict[str, int] = {}

        def probe(item: Group) -> tuple[dict[str, int], list[Group]]:
            depth, group = item
            if len(group) == 1:
                head = self._head(group[0])
                return ({} if head is None else {group[0]: int(head.get("ContentLength", -1))}), []
            wanted = set(group)
            prefix = shard(group[0], depth)
            found: dict[str, int] = {}
            token: str | None = None
            while True:
                objs, token = self._list_page(prefix, token)
                found.update((o["Key"], int(o.get("Size", -1))) for o in objs if o["Key"] in wanted)
                if token is None:
                    return found, []
                if depth == 1:  # more than a page: split into the two-character shards
                    last = objs[-1]["Key"] if objs else prefix
                    subs: dict[str, list[str]] = {}
                    for k in group:
                        sub = shard(k, 2)
                        if not (last > sub and not last.startswith(sub)):  # not covered yet
                            subs.setdefault(sub, []).append(k)
                    return found, [(2, g) for g in subs.values()]

        if len(keys) <= self.list_threshold:
            todo: list[Group] = [(0, [k]) for k in keys]
        else:
            by_shard: dict[str, list[str]] = {}
            for k in keys:
                by_shard.setdefault(shard(k, 1), []).append(k)
            todo = [(1, g) for g in by_shard.values()]
        while todo:
            more: list[Group] = []
            for found, split in self._pool_map(probe, todo):
                out.update(found)
                more += split
            todo = more
        return out

    def _list_page(self, prefix: str, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``ListObjectsV2`` under ``prefix`` (retried): its objects and the token
        of the next page (``None`` on the last page)."""
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": self.list_page_size,
        }
        if token:
            kw["ContinuationToken"] = token
        page = self._run("ListObjectsV2", prefix, lambda: self._client.list_objects_v2(**kw))
        objs = page.get("Contents", []) or []
        if not page.get("IsTruncated"):
            return objs, None
        nxt = page.get("NextContinuationToken")
        if not nxt:
            raise StoreError(f"{self.url}: ListObjectsV2 {prefix} is truncated without a token")
        return objs, nxt

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` (full key), page by page, each page retried."""
        token: str | None = None
        while True:
            objs, token = self._list_page(prefix, token)
            yield from objs
            if token is None:
                return

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

    def _existing_ok(self, digest: str, size: int) -> bool | None:
        """Is the object at the blob's key the blob? None when there is no object."""
        head = self._head(self.key_for(blob_path(digest)))
        if head is None:
            return None
        if int(head.get("ContentLength", -1)) != size:
            log.warning(
                "%s: blob %s exists with %s bytes, expected %d: replacing it",
                self.url,
                digest,
                head.get("ContentLength"),
                size,
            )
            return False
        try:
            self._stream(digest, lambda: _NullSink())
        except BlobMissing:
            return None
        except CorruptBlob as e:
            log.warning(
                "%s: blob %s exists but hashes to %s: replacing it", self.url, digest, e.actual
            )
            return False
        return True

    def _put_blob(self, digest: str, src: _Source) -> None:
        key = self.key_for(blob_path(digest))
        if src.size > self.multipart_threshold:
            # Check first: a large existing blob is not worth uploading again.
            state = self._existing_ok(digest, src.size)
            if state:
                return
            done = self._put_multipart(key, digest, src, conditional=state is None)
        else:
            done = self._put_single(key, digest, src, conditional=True)
        if done:
            return
        # 412: something is at the key. Keep it only if it is provably the blob.
        state = self._existing_ok(digest, src.size)
        if state:
            return
        if src.size > self.multipart_threshold:
            ok = self._put_multipart(key, digest, src, conditional=state is None)
        else:
            ok = self._put_single(key, digest, src, conditional=state is None)
        if not ok and not self._existing_ok(digest, src.size):
            raise StoreError(f"{self.url}: blob {digest} could not be written (conflicting writes)")

    def _is_412(self, e: BaseException) -> bool:
        code, status = self._code(e)
        return status == 412 or code == "PreconditionFailed"

    def _put_single(self, key: str, digest: str, src: _Source, *, conditional: bool) -> bool:
        """PutObject; False on 412 (an object exists and the write was conditional)."""
        from botocore.exceptions import ClientError

        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if conditional:
            kw["IfNoneMatch"] = "*"
        if self._send_sha256:
            kw["ChecksumSHA256"] = _hex_to_b64(digest)

        def go() -> bool:
            try:
                if src.data is not None:
                    self._client.put_object(Body=src.data, **kw)
                else:
                    assert src.path is not None
                    with open(src.path, "rb") as f:
                        self._client.put_object(Body=f, **kw)
            except ClientError as e:
                if conditional and self._is_412(e):
                    return False
                raise
            return True

        return self._run("PutObject", key, go)

    def _put_multipart(self, key: str, digest: str, src: _Source, *, conditional: bool) -> bool:
        """Multipart upload, condition on completion; False on 412. Aborts on any failure."""
        from botocore.exceptions import ClientError

        create_kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if self._send_sha256:
            create_kw["ChecksumAlgorithm"] = "SHA256"
        resp = self._run(
            "CreateMultipartUpload", key, lambda: self._client.create_multipart_upload(**create_kw)
        )
        upload_id = resp["UploadId"]
        nparts = max(1, -(-src.size // self.part_size))

        def part(i: int) -> dict[str, Any]:
            data = src.read_range(i * self.part_size, self.part_size)
            kw: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": i + 1,
                "Body": data,
            }
            if self._send_sha256:
                kw["ChecksumSHA256"] = _b64sha256(data)
            r = self._run("UploadPart", key, lambda: self._client.upload_part(**kw))
            out = {"PartNumber": i + 1, "ETag": r["ETag"]}
            if self._send_sha256:
                out["ChecksumSHA256"] = r.get("ChecksumSHA256") or kw["ChecksumSHA256"]
            return out

        try:
            with ThreadPoolExecutor(
                max_workers=min(self.part_concurrency, nparts), thread_name_prefix="reelfarm-part"
            ) as pool:
                parts = list(pool.map(part, range(nparts)))
            complete_kw: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if conditional:
                complete_kw["IfNoneMatch"] = "*"

            def complete() -> bool:
                try:
                    self._client.complete_multipart_upload(**complete_kw)
                except ClientError as e:
                    if conditional and self._is_412(e):
                        return False
                    code, _ = self._code(e)
                    if code == "NoSuchUpload":
                        # A retried completion whose first try succeeded: the object is there.
                        head = self._head(key)
                        if head is not None and int(head.get("ContentLength", -1)) == src.size:
                            return True
                    raise
                return True

            done = self._run("CompleteMultipartUpload", key, complete)
        except BaseException:
            self._abort(key, upload_id)
            raise
        if not done:
            self._abort(key, upload_id)
        return done

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._run(
                "AbortMultipartUpload",
                key,
                lambda: self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                ),
            )
        except StoreError as e:
            log.warning("%s", e)

    def get_bytes(self, digest: str) -> bytes:
        data = self._stream(digest, None)
        assert data is not None
        return data

    def get_file(self, digest: str, dest: str | Path) -> None:
        blob_path(digest)  # validate before touching the file system
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        f = os.fdopen(fd, "wb")
        try:

            def sink_open() -> Any:
                f.seek(0)
                f.truncate()
                return f

            self._stream(digest, sink_open)
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, dest)
        except BaseException:
            f.close()
            Path(tmp).unlink(missing_ok=True)
            raise

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


class _NullSink:
    def write(self, chunk: bytes) -> None:
        pass
