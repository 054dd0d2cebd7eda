"""Blob writes to S3: conditional (``IfNoneMatch="*"``) single and multipart uploads with a
SHA-256 checksum, and the proof that an existing object is the blob. Part of
:class:`~orchestrator.store.s3.S3Store`."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import BlobMissing, CorruptBlob, StoreError, blob_path
from .s3_requests import S3Requests, _b64sha256, _hex_to_b64

log = logging.getLogger("reelfarm.store.s3")

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (all but the last)


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


class _NullSink:
    def write(self, chunk: bytes) -> None:
        pass


class S3Writes(S3Requests):
    """Expects ``_send_sha256``, ``multipart_threshold``, ``part_size`` and
    ``part_concurrency`` on the store."""

    _send_sha256: bool
    multipart_threshold: int
    part_size: int
    part_concurrency: int

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

