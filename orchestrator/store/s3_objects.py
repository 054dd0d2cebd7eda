"""Stories and outputs in S3: read a manifest, list a prefix, publish a render's outputs.

These helpers reuse :class:`~orchestrator.store.s3.S3Store`'s client, retries, redaction and
settings (endpoint, checksum mode, addressing style); there is no second S3 client.

* :func:`read_object` reads one small object (a manifest) with a size bound; a missing object,
  a missing bucket or an object too large is a :class:`StoreError` with one clear line.
* :func:`list_objects` lists the object URLs under a prefix, filtered by suffix (for
  ``reelfarm nightly``).
* :class:`S3Output` publishes ``branches.json``, ``report.json`` and masters under
  ``s3://bucket/prefix/``. A master is a verified copy of a store blob: a server-side
  ``CopyObject`` when the store is in S3 on the same endpoint (the bytes never leave the
  server, and the server's SHA-256 of the copy is checked), otherwise the blob is read from the
  store (verified while it streams) and uploaded with its SHA-256 checksum. Every published
  blob carries its digest in the object metadata (``x-amz-meta-sha256``); a blob whose
  destination already holds that digest (and, where the server reports one, the same full-object
  SHA-256 checksum) is not copied again, so re-publishing an unchanged render sends no bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from .base import CHUNK, BlobMissing, BlobRef, CorruptBlob, Store, StoreError, blob_path
from .output_api import Output, check_output_rel, json_text
from .s3 import S3Store, _hex_to_b64, parse_s3_url

MAX_COPY_BYTES = 5 * (1 << 30)  # CopyObject's limit; larger blobs are streamed instead
DEFAULT_SUFFIXES = (".yaml", ".yml", ".json")


def _store_for(url: str, endpoint_url: str | None) -> S3Store:
    return S3Store(url, endpoint_url=endpoint_url)


def _object_key(url: str) -> tuple[str, str]:
    bucket, prefix = parse_s3_url(url)
    key = prefix.rstrip("/")
    if not key or url.endswith("/"):
        raise StoreError(f"{url} names a bucket or a prefix, not an object")
    return bucket, key


def read_object(url: str, *, endpoint_url: str | None = None, max_bytes: int) -> bytes:
    """The bytes of the object at ``s3://bucket/key``, at most ``max_bytes`` of them.

    Raises :class:`StoreError` (never with credentials in it) when the object or the bucket
    does not exist, access is refused, or the object is larger than ``max_bytes``.
    """
    from botocore.exceptions import ClientError

    bucket, key = _object_key(url)
    s3 = _store_for(f"s3://{bucket}", endpoint_url)
    too_big: list[int] = []

    def go() -> bytes | None:
        try:
            resp = s3.client.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if s3._is_missing(e):
                return None
            raise
        body = resp["Body"]
        try:
            size = int(resp.get("ContentLength", -1))
            if size > max_bytes:
                too_big.append(size)
                return b""
            data = body.read(max_bytes + 1)
        finally:
            body.close()
        if len(data) > max_bytes:
            too_big.append(len(data))
            return b""
        return data

    try:
        data = s3._run("GetObject", key, go)
    finally:
        s3.close()
    if data is None:
        raise StoreError(f"{url}: no such object (endpoint {s3.endpoint})")
    if too_big:
        raise StoreError(
            f"{url}: the object is {too_big[0]} bytes, larger than the {max_bytes} accepted"
        )
    return data


def list_objects(
    url_prefix: str,
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES,
    *,
    endpoint_url: str | None = None,
) -> list[str]:
    """``s3://`` URLs of the objects under ``url_prefix`` whose names end in one of
    ``suffixes`` (all objects when ``suffixes`` is empty), sorted. ``s3://bucket/stories`` and
    ``s3://bucket/stories/`` both list the objects under ``stories/``."""
    s3 = _store_for(url_prefix, endpoint_url)
    try:
        keys = [o["Key"] for o in s3._list(s3.prefix)]
    finally:
        s3.close()
    wanted = tuple(s.lower() for s in suffixes)
    return sorted(
        f"s3://{s3.bucket}/{k}"
        for k in keys
        if not k.endswith("/") and (not wanted or k.lower().endswith(wanted))
    )


class S3Output(Output):
    """Render outputs published under ``s3://bucket/prefix``."""

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        self._s3 = _store_for(url, endpoint_url)
        self.url = self._s3.url
        self.bucket = self._s3.bucket
        self.prefix = self._s3.prefix

    @property
    def client(self) -> Any:
        """The boto3 client (for event hooks in tests)."""
        return self._s3.client

    def key_for(self, rel: str) -> str:
        return self._s3.key_for(check_output_rel(rel))

    def close(self) -> None:
        self._s3.close()

    # -- documents --------------------------------------------------------------------------
    def put_json(self, rel: str, doc: Any) -> None:
        data = json_text(doc).encode()
        self._s3._put_small(self.key_for(rel), data, "application/json")

    def get_json(self, rel: str) -> Any | None:
        """A published JSON document, or ``None`` when it is missing or not JSON."""
        raw = self._s3._get_small(self.key_for(rel))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def put_bytes(self, rel: str, data: bytes, content_type: str) -> None:
        self._s3._put_small(self.key_for(rel), data, content_type)

    def list_files(self, prefix: str) -> list[str]:
        rel = prefix.rstrip("/")
        base = self.key_for(f"{rel}/x")[: -len("x")]
        return sorted(f"{rel}/{name}" for o in self._s3._list(base)
                      if "/" not in (name := o["Key"][len(base):]) and name
                      and not name.startswith("."))

    def list_masters(self) -> list[str]:
        base = self.key_for("masters/x")[: -len("x")]
        return sorted(f"masters/{name}" for o in self._s3._list(base)
                      if (name := o["Key"][len(base):]).endswith(".mp4") and "/" not in name
                      and not name.startswith("."))

    def remove(self, rel: str) -> None:
        self._s3._delete(self.key_for(rel))

    def holds(self, rel: str, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        key = self.key_for(rel)

        def go() -> dict[str, Any] | None:
            try:
                return self._s3.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if self._s3._is_missing(e):
                    return None
                raise

        head = self._s3._run("HeadObject", key, go)
        meta = {k.lower(): v for k, v in ((head or {}).get("Metadata") or {}).items()}
        return head is not None and meta.get("sha256") == sha256

    # -- blobs ------------------------------------------------------------------------------
    def published(self, rel: str, ref: BlobRef) -> bool:
        """Does ``rel`` already hold exactly this blob?

        True when its metadata names the digest, its size matches and, where the server keeps a
        full-object SHA-256 checksum, that checksum is the digest's too."""
        key = self.key_for(rel)
        from botocore.exceptions import ClientError

        def go() -> dict[str, Any] | None:
            try:
                return self._s3.client.head_object(
                    Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
                )
            except ClientError as e:
                if self._s3._is_missing(e):
                    return None
                raise

        head = self._s3._run("HeadObject", key, go)
        if head is None:
            return False
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        if meta.get("sha256") != ref.sha256 or int(head.get("ContentLength", -1)) != ref.size:
            return False
        checksum = head.get("ChecksumSHA256")
        full = checksum and "-" not in checksum and head.get("ChecksumType") != "COMPOSITE"
        return not full or checksum == _hex_to_b64(ref.sha256)

    def put_blob(self, rel: str, store: Store, ref: BlobRef) -> None:
        """Publish a verified copy of the store blob ``ref`` at ``rel``; skipped when the
        destination already holds it. Raises :class:`CorruptBlob` (nothing is left published)
        or :class:`BlobMissing` when the store's blob is bad or gone."""
        key = self.key_for(rel)
        if self.published(rel, ref):
            return
        ctype = {".mp4": "video/mp4", ".m4s": "video/iso.segment"}.get(
            Path(rel).suffix, "application/octet-stream"
        )
        same_server = isinstance(store, S3Store) and store.endpoint_url == self._s3.endpoint_url
        if same_server and ref.size <= MAX_COPY_BYTES:
            self._copy(key, store, ref, ctype)  # type: ignore[arg-type]
        else:
            self._upload(key, store, ref, ctype)

    def _copy(self, key: str, store: S3Store, ref: BlobRef, ctype: str) -> None:
        from botocore.exceptions import ClientError

        src_key = store.key_for(blob_path(ref.sha256))
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "CopySource": {"Bucket": store.bucket, "Key": src_key},
            "MetadataDirective": "REPLACE",
            "Metadata": {"sha256": ref.sha256},
            "ContentType": ctype,
        }
        if self._s3.checksum != "off":
            kw["ChecksumAlgorithm"] = "SHA256"

        def go() -> dict[str, Any]:
            try:
                return self._s3.client.copy_object(**kw)
            except ClientError as e:
                if self._s3._is_missing(e):
                    raise BlobMissing(ref.sha256) from None
                raise

        resp = self._s3._run("CopyObject", key, go)
        checksum = (resp.get("CopyObjectResult") or {}).get("ChecksumSHA256")
        if checksum and "-" not in checksum:
            if checksum != _hex_to_b64(ref.sha256):
                self._s3._delete(key)
                actual = base64.b64decode(checksum).hex()
                raise CorruptBlob(ref.sha256, actual)
            return
        self._verify_published(key, ref)  # the server gave no checksum: read the copy back

    def _verify_published(self, key: str, ref: BlobRef) -> None:
        def go() -> str:
            resp = self._s3.client.get_object(Bucket=self.bucket, Key=key)
            h = hashlib.sha256()
            body = resp["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK):
                    h.update(chunk)
            finally:
                body.close()
            return h.hexdigest()

        actual = self._s3._run("GetObject", key, go)
        if actual != ref.sha256:
            self._s3._delete(key)
            raise CorruptBlob(ref.sha256, actual)

    def _upload(self, key: str, store: Store, ref: BlobRef, ctype: str) -> None:
        s3 = self._s3
        with tempfile.TemporaryDirectory(prefix="reelfarm-publish-") as tmp:
            path = Path(tmp) / "blob"
            store.get_file(ref.sha256, path)  # verified while it streams; corrupt writes nothing
            extra: dict[str, Any] = {"Metadata": {"sha256": ref.sha256}, "ContentType": ctype}
            if ref.size <= s3.multipart_threshold:
                if s3.checksum != "off":
                    extra["ChecksumSHA256"] = _hex_to_b64(ref.sha256)

                def put() -> None:
                    with open(path, "rb") as f:
                        s3.client.put_object(Bucket=self.bucket, Key=key, Body=f, **extra)

                s3._run("PutObject", key, put)
                return
            from boto3.s3.transfer import TransferConfig

            if s3.checksum != "off":
                extra["ChecksumAlgorithm"] = "SHA256"
            config = TransferConfig(
                multipart_threshold=s3.multipart_threshold,
                multipart_chunksize=s3.part_size,
                max_concurrency=s3.part_concurrency,
            )
            s3._run(
                "UploadFile",
                key,
                lambda: s3.client.upload_file(
                    str(path), self.bucket, key, ExtraArgs=extra, Config=config
                ),
            )
