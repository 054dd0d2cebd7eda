"""S3 fixtures: an S3-compatible server over real HTTP on 127.0.0.1.

By default the session starts moto's server mode (``ThreadedMotoServer`` on port 0) and sets
dummy credentials for the session. To run the same tests against another server (MinIO, Ceph),
set::

    REELFARM_TEST_S3_ENDPOINT=http://127.0.0.1:9000
    REELFARM_TEST_S3_BUCKET=reelfarm-test        # created when missing
    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...  # the standard chain

Fixtures:

* ``s3_endpoint`` (session): the endpoint URL. It is also exported as ``AWS_ENDPOINT_URL`` for
  the session, so ``open_store("s3://...")`` and subprocesses (the CLI) reach the same server.
* ``s3_client`` (session): a plain boto3 client on that endpoint (to inspect or corrupt objects).
* ``s3_url`` (function): a fresh, empty ``s3://bucket/prefix`` store URL for one test: a new
  bucket on moto, a new prefix in ``REELFARM_TEST_S3_BUCKET`` otherwise (removed afterwards).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["Requests", "s3_client", "s3_endpoint", "s3_url"]


class Requests:
    """Counts what a boto3 client sends, with botocore event hooks on that client:

    * ``by_op``: HTTP requests by method (``"GET list"`` for a listing), every attempt, retries
      included (``before-send``), and ``total``;
    * ``ops``: API calls by operation name (``before-call``: once per call), and ``writes()``.
    """

    WRITES = ("PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart")

    def __init__(self, client: Any) -> None:
        self.by_op: dict[str, int] = {}
        self.ops: Counter = Counter()
        self.lock = threading.Lock()
        client.meta.events.register("before-send.s3", self._sent)
        client.meta.events.register("before-call.s3", self._called)

    def _sent(self, request: Any, **_: Any) -> None:
        op = request.method + (" list" if "list-type=2" in str(request.url) else "")
        with self.lock:
            self.by_op[op] = self.by_op.get(op, 0) + 1

    def _called(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.ops[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    def writes(self) -> int:
        return sum(n for op, n in self.ops.items() if op in self.WRITES)

# Distinctive dummy credentials: tests assert they never appear in messages.
DUMMY_ACCESS_KEY = "AKIAREELFARMTEST0001"
DUMMY_SECRET_KEY = "reelfarmTestSecret/0123456789abcdefghijKLMN"


def _external() -> bool:
    return bool(os.environ.get("REELFARM_TEST_S3_ENDPOINT"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    server = None
    try:
        if _external():
            endpoint = os.environ["REELFARM_TEST_S3_ENDPOINT"]
        else:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                mp.delenv(name, raising=False)
            mp.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
            mp.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            mp.setenv("AWS_CONFIG_FILE", os.devnull)
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        yield endpoint
    finally:
        mp.undo()
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
    )
    yield client
    client.close()


def _empty_prefix(client: Any, bucket: str, prefix: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    for up in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])


def new_s3_location(client: Any, name: str = "reelfarm") -> tuple[str, str]:
    """A fresh ``(bucket, prefix)`` for one test: a new bucket on moto, or a new prefix in
    ``REELFARM_TEST_S3_BUCKET`` on an external endpoint (emptied by the caller)."""
    tag = uuid.uuid4().hex[:12]
    if _external():
        bucket = os.environ.get("REELFARM_TEST_S3_BUCKET") or "reelfarm-test"
        try:
            client.head_bucket(Bucket=bucket)
        except Exception:  # noqa: BLE001 - missing: create it
            client.create_bucket(Bucket=bucket)
        return bucket, f"reelfarm-tests/{tag}"
    bucket = f"{name}-{tag}"
    client.create_bucket(Bucket=bucket)
    return bucket, "store"


@pytest.fixture
def s3_url(s3_client: Any) -> Iterator[str]:
    bucket, prefix = new_s3_location(s3_client)
    yield f"s3://{bucket}/{prefix}"
    if _external():
        _empty_prefix(s3_client, bucket, prefix + "/")
