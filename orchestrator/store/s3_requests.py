"""S3 requests with bounded retries, and the few object operations built on them. Part of
:class:`~orchestrator.store.s3.S3Store`.

Why a retry loop of our own and not botocore's ``standard``/``adaptive`` retry modes: botocore
retries one HTTP request, but most of our operations are a request *and* the reading of its
body (a blob is streamed, hashed and compared; a dropped connection or a checksum failure
mid-body shows up only while reading, after botocore has returned), and those must restart
whole. Conditional writes need the same: a 409 ``ConditionalRequestConflict`` (a concurrent
conditional write in flight) is retried, while a 412 (the blob exists) is an answer that
:mod:`.s3_writes` settles by proving the existing object, never a retry. Stacking botocore's
retries under this loop would multiply attempts, so botocore runs in ``standard`` mode with
one attempt, and every attempt is counted here (``requests``, ``retries``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .base import StoreError
from .s3_errors import S3Errors

log = logging.getLogger("reelfarm.store.s3")

T = TypeVar("T")


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _hex_to_b64(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode()


class S3Requests(S3Errors):
    """Expects ``_client``, ``bucket``, ``max_attempts``, ``backoff_base``, ``backoff_max``,
    ``concurrency``, ``_lock``, ``_pool``, ``requests`` and ``retries`` on the store."""

    _client: Any
    _lock: threading.Lock
    _pool: ThreadPoolExecutor | None
    max_attempts: int
    backoff_base: float
    backoff_max: float
    concurrency: int
    requests: int
    retries: int

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


    def _run(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """``_call`` with errors turned into :class:`StoreError` (store errors pass through)."""
        try:
            return self._call(op, key, fn)
        except (StoreError, ValueError):
            raise
        except Exception as e:
            raise self._error(op, key, e) from None


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

