"""S3 store behaviour beyond the contract: multipart uploads, 412 handling, faults (throttling,
dropped connections, responses lost after the server applied a write), retry exhaustion,
credential redaction and the concurrency of batched lookups.

Faults are injected with botocore ``before-send`` hooks on the store's own client (an injected
response or exception replaces the HTTP exchange) and, for connections cut in the middle of a
response body, with a TCP proxy on 127.0.0.1 between the store and the server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import threading
import traceback
import zlib
from collections import Counter
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from botocore.httpsession import URLLib3Session
from fixtures_s3 import Requests

from orchestrator.store import ActionRecord, BlobRef, CorruptBlob, StoreError, open_store
from orchestrator.store.base import action_path, blob_path
from orchestrator.store.s3 import S3Store, parse_s3_url, redact

pytestmark = pytest.mark.s3

MiB = 1 << 20
FAST = {"backoff_base": 0.002, "backoff_max": 0.02}


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _key(i: int | str) -> str:
    return hashlib.sha256(f"render-{i}".encode()).hexdigest()


def _record(key: str, clip: BlobRef) -> ActionRecord:
    return ActionRecord(key=key, outputs={"clip": clip}, frames=24, fps=24, backend="previz")


@pytest.fixture
def store(s3_url: str) -> Iterator[S3Store]:
    s = S3Store(s3_url, max_attempts=6, **FAST)
    yield s
    s.close()


# -- fault injection ----------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def error_response(url: str, status: int, code: str, message: str) -> AWSResponse:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message><RequestId>test</RequestId></Error>"
    ).encode()
    return AWSResponse(url, status, {"Content-Type": "application/xml"}, _Raw(body))


class Faults:
    """A ``before-send`` hook failing the first ``times`` attempts of a chosen fraction of
    requests (chosen by a hash of method and URL, so the count is exact and repeatable).

    kinds: ``slowdown`` (503 SlowDown), ``internal`` (500), ``timeout`` (400 RequestTimeout),
    ``reset`` (connection closed), ``refused`` (cannot connect), cycled per request.
    """

    def __init__(
        self,
        percent: int,
        kinds: tuple[str, ...] = ("slowdown",),
        times: int = 1,
        ops: tuple[str, ...] | None = None,
    ) -> None:
        self.percent = percent
        self.kinds = kinds
        self.times = times
        self.ops = ops
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.attempts = 0
        self.lock = threading.Lock()

    def __call__(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        ident = f"{request.method} {request.url}"
        with self.lock:
            self.attempts += 1
            chosen = zlib.crc32(ident.encode()) % 100 < self.percent
            if not chosen or (self.ops is not None and op not in self.ops):
                return None
            if self.seen[ident] >= self.times:
                return None
            self.seen[ident] += 1
            kind = self.kinds[zlib.crc32(ident.encode()) % len(self.kinds)]
            self.injected[kind] += 1
        if kind == "slowdown":
            return error_response(request.url, 503, "SlowDown", "Please reduce your request rate.")
        if kind == "internal":
            return error_response(request.url, 500, "InternalError", "We encountered an error.")
        if kind == "timeout":
            return error_response(request.url, 400, "RequestTimeout", "Socket timeout.")
        if kind == "reset":
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind == "refused":
            raise EndpointConnectionError(endpoint_url=request.url)
        raise AssertionError(kind)

    @property
    def total(self) -> int:
        return sum(self.injected.values())


def test_operations_succeed_under_throttling_and_dropped_connections(
    store: S3Store, tmp_path: Path
) -> None:
    faults = Faults(35, kinds=("slowdown", "internal", "timeout", "reset", "refused"), times=2)
    store.client.meta.events.register("before-send.s3", faults)

    blobs = [os.urandom(2000 + i) for i in range(40)]
    refs = [store.put_bytes(b) for b in blobs]
    keys = [_key(i) for i in range(40)]
    for k, ref in zip(keys, refs, strict=True):
        store.put_action(_record(k, ref))
    store.put_doc("runs/heist/r1.json", b"{}")
    for i, ref in enumerate(refs):
        assert store.get_bytes(ref.sha256) == blobs[i]
    store.get_file(refs[0].sha256, tmp_path / "clip.bin")
    assert (tmp_path / "clip.bin").read_bytes() == blobs[0]
    got = store.get_actions(keys)
    assert all(
        got[k] is not None and got[k].outputs["clip"] == r for k, r in zip(keys, refs, strict=True)
    )
    assert all(store.has_blobs(refs).values())
    assert sorted(store.iter_blobs(), key=lambda r: r.sha256) == sorted(
        refs, key=lambda r: r.sha256
    )
    assert store.list_docs("runs/") == ["runs/heist/r1.json"]

    # every kind of fault happened, and every injected fault cost exactly one retry
    assert set(faults.injected) == {"slowdown", "internal", "timeout", "reset", "refused"}
    assert faults.total >= 20
    assert store.retries == faults.total
    assert store.requests == faults.attempts


def test_multipart_survives_faults_on_parts(s3_url: str, tmp_path: Path) -> None:
    s = S3Store(s3_url, multipart_threshold=6 * MiB, part_size=5 * MiB, **FAST)
    faults = Faults(100, kinds=("slowdown", "reset"), ops=("UploadPart", "CompleteMultipartUpload"))
    s.client.meta.events.register("before-send.s3", faults)
    src = tmp_path / "master.mp4"
    src.write_bytes(os.urandom(11 * MiB + 7))
    ref = s.put_file(src)
    assert faults.total == 4  # three parts and the completion, each failed once
    assert s.retries == 4
    assert s.get_bytes(ref.sha256) == src.read_bytes()


def test_exhausted_retries_give_a_clear_error_without_credentials(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_key = "AKIAEXHAUSTEDTEST123"
    secret = "exhaustedSecretKey/abcdefghijklmnop12345"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    s = S3Store(s3_url, max_attempts=3, **FAST)
    faults = Faults(100, kinds=("slowdown",), times=10**6)
    s.client.meta.events.register("before-send.s3", faults)
    with pytest.raises(StoreError) as e:
        s.put_bytes(b"never lands")
    assert faults.attempts == 3  # bounded
    assert s.retries == 2
    text = str(e.value)
    assert "PutObject" in text and "after 3 attempts" in text and "SlowDown" in text
    assert s.url in text
    full = "".join(traceback.format_exception(e.type, e.value, e.tb))
    for secret_part in (access_key, secret):
        assert secret_part not in full
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_connection_errors_exhaust_to_store_error(s3_url: str) -> None:
    s = S3Store(s3_url, max_attempts=4, **FAST)
    faults = Faults(100, kinds=("refused",), times=10**6)
    s.client.meta.events.register("before-send.s3", faults)
    with pytest.raises(StoreError, match=r"GetObject .* failed after 4 attempts"):
        s.get_actions([_key(1)])
    assert faults.attempts == 4


def test_server_messages_echoing_credentials_are_redacted(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_key = "AKIAECHOEDKEYTEST999"
    secret = "echoedSecretKeyValue/ABCDEFGHIJKLMNOP0123"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    s = S3Store(s3_url, **FAST)

    def deny(request: Any, **_: Any) -> AWSResponse:
        auth = _text(request.headers["Authorization"])
        assert access_key in auth
        msg = (
            f"Signature mismatch for key {access_key} (secret {secret}); "
            f"Authorization: {auth}; "
            f"see https://h/x?X-Amz-Credential={access_key}%2F20260101&X-Amz-Signature=abc123"
        )
        return error_response(request.url, 403, "SignatureDoesNotMatch", msg)

    s.client.meta.events.register("before-send.s3", deny)
    for call in (lambda: s.put_bytes(b"x"), lambda: s.get_doc("config.json")):
        with pytest.raises(StoreError) as e:
            call()
        text = str(e.value)
        assert "SignatureDoesNotMatch" in text and "credentials" in text
        assert access_key not in text and secret not in text
        assert "abc123" not in text and "Signature=" not in text.replace("Signature=<redacted>", "")
    assert s.retries == 0  # a 403 is not retried


def test_redact_presigned_url_and_secret_shapes(store: S3Store) -> None:
    url = store.client.generate_presigned_url(
        "get_object", Params={"Bucket": store.bucket, "Key": "k"}, ExpiresIn=60
    )
    key = os.environ["AWS_ACCESS_KEY_ID"]
    assert key in url
    clean = redact(url)
    assert key not in clean
    assert "Signature=<redacted>" in clean or "X-Amz-Signature=<redacted>" in clean
    text = "key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end"
    assert redact(text) == "key <redacted-key-id> secret <redacted> end"
    assert redact("http://user:pa55@minio:9000/x") == "http://<redacted>@minio:9000/x"
    assert redact("my own literal", ["literal"]) == "my own <redacted>"
    digest = hashlib.sha256(b"x").hexdigest()
    assert redact(f"blob {digest}") == f"blob {digest}"  # digests stay readable


def test_lost_response_after_applied_write_is_success(store: S3Store) -> None:
    """The server stores the blob but the response is lost; the retry meets a 412 (the object
    now exists), which is success once the object is verified."""
    session = URLLib3Session()
    state = {"lost": 0, "statuses": []}

    def apply_then_drop(request: Any, event_name: str, **_: Any) -> None:
        if event_name.endswith("PutObject") and state["lost"] == 0:
            state["lost"] += 1
            resp = session.send(request)
            state["statuses"].append(resp.status_code)
            raise ConnectionClosedError(endpoint_url=request.url)
        return None

    got_412 = []

    def watch(response: Any, event_name: str, **_: Any) -> None:
        if event_name.endswith("PutObject") and response and response[0] is not None:
            got_412.append(response[0].status_code == 412)

    store.client.meta.events.register("before-send.s3", apply_then_drop)
    store.client.meta.events.register("needs-retry.s3", watch)
    data = os.urandom(10_000)
    ref = store.put_bytes(data)
    assert state["statuses"] == [200]
    assert got_412 == [True]
    assert store.retries == 1
    assert store.get_bytes(ref.sha256) == data


# -- 412 and conditional writes -----------------------------------------------------------------


class OpCounter:
    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.status: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()

    def __call__(self, response: Any, event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        with self.lock:
            self.ops[op] += 1
            if response and response[0] is not None:
                self.status[(op, response[0].status_code)] += 1


def test_second_writer_gets_412_and_keeps_the_blob(s3_url: str, s3_client: Any) -> None:
    a, b = S3Store(s3_url), S3Store(s3_url)
    counter = OpCounter()
    b.client.meta.events.register("needs-retry.s3", counter)
    data = os.urandom(30_000)
    ref = a.put_bytes(data)
    obj_key = a.key_for(blob_path(ref.sha256))
    etag = s3_client.head_object(Bucket=a.bucket, Key=obj_key)["ETag"]
    assert b.put_bytes(data) == ref
    assert counter.status[("PutObject", 412)] == 1
    assert counter.ops["PutObject"] == 1  # not overwritten
    assert s3_client.head_object(Bucket=a.bucket, Key=obj_key)["ETag"] == etag
    assert b.get_bytes(ref.sha256) == data


def test_412_on_a_corrupt_object_replaces_it(s3_url: str, s3_client: Any) -> None:
    s = S3Store(s3_url)
    counter = OpCounter()
    s.client.meta.events.register("needs-retry.s3", counter)
    data = os.urandom(30_000)
    digest = hashlib.sha256(data).hexdigest()
    # a bad writer left same-size wrong bytes under the digest
    bad = bytes(x ^ 0xFF for x in data[:10]) + data[10:]
    s3_client.put_object(Bucket=s.bucket, Key=s.key_for(blob_path(digest)), Body=bad)
    with pytest.raises(CorruptBlob):
        s.get_bytes(digest)
    s.put_bytes(data)
    assert counter.status[("PutObject", 412)] == 1  # the conditional write met the bad object
    assert counter.status[("PutObject", 200)] == 1  # which was then replaced
    assert s.get_bytes(digest) == data


def test_multipart_upload(s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    s = S3Store(s3_url, multipart_threshold=6 * MiB, part_size=5 * MiB)
    counter = OpCounter()
    s.client.meta.events.register("needs-retry.s3", counter)
    src = tmp_path / "master.mp4"
    src.write_bytes(os.urandom(10 * MiB + 123))
    ref = s.put_file(src)
    assert counter.ops["CreateMultipartUpload"] == 1
    assert counter.ops["UploadPart"] == 3
    assert counter.ops["CompleteMultipartUpload"] == 1
    assert counter.ops["PutObject"] == 0
    head = s3_client.head_object(Bucket=s.bucket, Key=s.key_for(blob_path(ref.sha256)))
    assert head["ContentLength"] == ref.size
    assert head["ETag"].strip('"').endswith("-3")
    dest = tmp_path / "back.mp4"
    s.get_file(ref.sha256, dest)
    assert dest.read_bytes() == src.read_bytes()

    # a re-put of an existing large blob uploads nothing
    counter.ops.clear()
    assert s.put_file(src) == ref
    assert counter.ops["CreateMultipartUpload"] == 0 and counter.ops["UploadPart"] == 0
    assert s.has_blobs([ref]) == {ref.sha256: True}


def test_multipart_completion_meets_a_concurrent_writer(s3_url: str, tmp_path: Path) -> None:
    """Another writer completes the same blob while our parts upload: our conditional
    completion gets a 412, the upload is aborted and the blob is kept."""
    s = S3Store(s3_url, multipart_threshold=6 * MiB, part_size=5 * MiB)
    other = S3Store(s3_url)
    src = tmp_path / "master.mp4"
    src.write_bytes(os.urandom(7 * MiB))
    counter = OpCounter()

    def race(request: Any, event_name: str, **_: Any) -> None:
        if event_name.endswith("CompleteMultipartUpload") and not counter.ops["raced"]:
            counter.ops["raced"] += 1
            other._put_single(  # a plain writer of the same bytes wins the race
                s.key_for(blob_path(hashlib.sha256(src.read_bytes()).hexdigest())),
                hashlib.sha256(src.read_bytes()).hexdigest(),
                _src(src),
                conditional=True,
            )

    s.client.meta.events.register("before-send.s3", race)
    s.client.meta.events.register("needs-retry.s3", counter)
    ref = s.put_file(src)
    assert counter.status[("CompleteMultipartUpload", 412)] == 1
    assert counter.ops["AbortMultipartUpload"] == 1
    uploads = s.client.list_multipart_uploads(Bucket=s.bucket, Prefix=s.prefix).get("Uploads", [])
    assert uploads == []
    assert s.get_bytes(ref.sha256) == src.read_bytes()


def _src(path: Path) -> Any:
    from orchestrator.store.s3 import _Source

    return _Source(path=path, size=path.stat().st_size)


def test_failed_multipart_upload_is_aborted(s3_url: str, tmp_path: Path) -> None:
    s = S3Store(s3_url, multipart_threshold=6 * MiB, part_size=5 * MiB, max_attempts=2, **FAST)
    faults = Faults(100, kinds=("internal",), times=10**6, ops=("UploadPart",))
    s.client.meta.events.register("before-send.s3", faults)
    src = tmp_path / "master.mp4"
    src.write_bytes(os.urandom(6 * MiB + 1))
    with pytest.raises(StoreError, match="UploadPart"):
        s.put_file(src)
    assert (
        s.client.list_multipart_uploads(Bucket=s.bucket, Prefix=s.prefix).get("Uploads", []) == []
    )
    assert list(s.iter_blobs()) == []


# -- concurrency --------------------------------------------------------------------------------


class InFlight:
    """Counts requests in flight between ``before-send`` and ``needs-retry``.

    With ``meet=n``, the first ``n`` requests wait for each other at a barrier before they are
    sent: they all get through only when ``n`` requests are in flight at once, whatever the
    machine's speed. A store that sends them one at a time leaves the first one waiting alone;
    the barrier then breaks (after ``patience`` seconds, a bound against a hang, not a
    measurement) and ``met`` stays false.
    """

    def __init__(self, meet: int = 0, patience: float = 30.0) -> None:
        self.now = 0
        self.max = 0
        self.total = 0
        self.met = False
        self.lock = threading.Lock()
        self.meet(meet, patience)

    def meet(self, n: int, patience: float = 30.0) -> None:
        """Make the next ``n`` requests wait for each other (0: none); reset the counts."""
        with self.lock:
            self.max = self.total = 0
            self.met = False
            self._barrier = threading.Barrier(n, timeout=patience) if n > 1 else None
            self._waiting = n if n > 1 else 0

    def start(self, **_: Any) -> None:
        with self.lock:
            self.now += 1
            self.total += 1
            self.max = max(self.max, self.now)
            barrier = self._barrier if self._waiting > 0 else None
            if barrier is not None:
                self._waiting -= 1
        if barrier is not None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                return
            with self.lock:
                self.met = True

    def end(self, **_: Any) -> None:
        with self.lock:
            self.now -= 1

    def attach(self, store: S3Store) -> None:
        store.client.meta.events.register("before-send.s3", self.start)
        store.client.meta.events.register("needs-retry.s3", self.end)


def test_batched_lookups_of_1000_keys_are_concurrent(s3_url: str) -> None:
    s = S3Store(s3_url, concurrency=32)
    clip = s.put_bytes(b"clip")
    keys = [_key(i) for i in range(1000)]
    present = set(keys[::7])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s.put_action(_record(k, clip)), present))

    flight = InFlight(meet=8)
    flight.attach(s)
    got = s.get_actions(keys)
    assert {k for k, v in got.items() if v is not None} == present
    assert flight.total == 1000  # one request per key, none wasted
    assert flight.met  # 8 requests were in flight at once
    assert flight.now == 0

    refs = [BlobRef(sha256=_key(f"blob{i}"), size=4) for i in range(999)] + [clip]
    flight.meet(2)
    has = s.has_blobs(refs)
    assert sum(has.values()) == 1 and has[clip.sha256]
    # above the threshold: one LIST per prefix cas/sha256/<hex digit> (a small store: one page
    # each), concurrent
    assert flight.total == 16
    assert flight.met

    flight.meet(2)
    assert s.existing_actions(keys) == present
    assert flight.total == 16  # ac/<hex digit>
    assert flight.met


def test_small_existence_checks_head_each_object(s3_url: str) -> None:
    s = S3Store(s3_url, list_threshold=64)
    clip = s.put_bytes(b"clip")
    keys = [_key(f"small-{i}") for i in range(40)]
    for k in keys[:10]:
        s.put_action(_record(k, clip))
    count = Requests(s.client)
    assert s.existing_actions(keys) == set(keys[:10])
    assert s.has_blobs([clip, BlobRef(sha256=_key("nope"), size=1)]) == {
        clip.sha256: True, _key("nope"): False}
    assert count.by_op == {"HEAD": 42}


def test_shard_listing_is_paginated(s3_url: str) -> None:
    """A shard with more objects than a page is listed page by page; nothing is missed."""
    s = S3Store(s3_url, list_page_size=2, list_threshold=0)
    refs = [s.put_bytes(f"page {i}".encode()) for i in range(400)]
    shard = max({r.sha256[:2] for r in refs}, key=lambda d: sum(r.sha256[:2] == d for r in refs))
    crowded = [r for r in refs if r.sha256[:2] == shard]
    assert len(crowded) >= 3
    count = Requests(s.client)
    gone = BlobRef(sha256=shard + _key("gone")[2:], size=3)
    got = s.has_blobs([*crowded, gone])
    assert got == {**{r.sha256: True for r in crowded}, gone.sha256: False}
    # the prefix cas/sha256/<digit> holds more than a page: its first page, then the shard
    # cas/sha256/<2 digits>/ page by page
    assert count.by_op == {"GET list": 1 + -(-len(crowded) // 2)}
    # every prefix split into shards, some settled from the first page: nothing is missed
    absent = [BlobRef(sha256=_key(f"none {i}"), size=3) for i in range(100)]
    assert s.has_blobs(refs + absent) == {**{r.sha256: True for r in refs},
                                          **{r.sha256: False for r in absent}}


def test_sequential_store_is_observed_as_sequential(s3_url: str) -> None:
    """The in-flight probe itself can tell sequential from concurrent."""
    s = S3Store(s3_url, concurrency=1)
    flight = InFlight(meet=2, patience=2.0)
    flight.attach(s)
    s.get_actions([_key(i) for i in range(50)])
    assert flight.total == 50 and flight.max == 1
    assert not flight.met  # the first request waited alone for a second one, which never came


# -- connections cut mid-response (real sockets) ------------------------------------------------


class CuttingProxy:
    """TCP proxy on 127.0.0.1 that closes every ``every``-th connection once it has relayed
    ``cut_after`` bytes of responses, in the middle of a response body."""

    def __init__(self, upstream: str, cut_after: int, every: int) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.cut_after = cut_after
        self.every = every
        self.cuts = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cut = self.connections % self.every == 0
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(client, upstream, cut), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _down(self, client: socket.socket, upstream: socket.socket, cut: bool) -> None:
        sent = 0
        try:
            while data := upstream.recv(65536):
                room = self.cut_after - sent
                if cut and len(data) >= room:
                    client.sendall(data[:room])
                    with self.lock:
                        self.cuts += 1
                    return
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_reads_survive_connections_cut_mid_body(s3_url: str, s3_endpoint: str, tmp_path: Path):
    writer = S3Store(s3_url)
    blobs = [os.urandom(100_000 + i) for i in range(12)]
    refs = [writer.put_bytes(b) for b in blobs]
    proxy = CuttingProxy(s3_endpoint, cut_after=50_000, every=3)
    try:
        s = S3Store(s3_url, endpoint_url=proxy.url, **FAST)
        for i, ref in enumerate(refs):
            assert s.get_bytes(ref.sha256) == blobs[i]
            dest = tmp_path / f"{i}.bin"
            s.get_file(ref.sha256, dest)
            assert dest.read_bytes() == blobs[i]
        # 24 reads of ~100 kB, every third connection dies after 50 kB: cuts happened, each
        # cost a retry, and no read failed or returned wrong bytes
        assert proxy.cuts >= 5
        assert s.retries == proxy.cuts, (s.retries, proxy.cuts, proxy.connections, s.requests)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.bin" for i in range(12))
    finally:
        proxy.close()


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["when_supported", "when_required", "off"])
def test_checksum_modes(s3_url: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFARM_S3_CHECKSUM", mode)
    s = S3Store(s3_url)
    assert s.checksum == mode
    sent: list[dict[str, str]] = []

    def capture(request: Any, event_name: str, **_: Any) -> None:
        if event_name.endswith("PutObject"):
            sent.append({k.lower(): _text(v) for k, v in request.headers.items()})

    s.client.meta.events.register("before-send.s3", capture)
    data = b"checksummed" * 100
    ref = s.put_bytes(data)
    assert s.get_bytes(ref.sha256) == data
    headers = sent[0]
    has_sha = "x-amz-checksum-sha256" in headers
    assert has_sha == (mode != "off")
    if has_sha:
        assert headers["x-amz-checksum-sha256"] == base64.b64encode(sha256(data).digest()).decode()
    if mode != "when_supported":
        assert not any(k.startswith("x-amz-checksum-crc") for k in headers)


def test_bad_settings_are_refused(s3_url: str) -> None:
    with pytest.raises(StoreError, match="checksum"):
        S3Store(s3_url, checksum="sometimes")
    with pytest.raises(StoreError, match="addressing"):
        S3Store(s3_url, addressing_style="sideways")


def test_endpoint_from_environment(s3_url: str, s3_endpoint: str) -> None:
    s = open_store(s3_url)
    assert isinstance(s, S3Store)
    assert s.endpoint_url == s3_endpoint
    assert s.addressing_style == "path"
    s.put_doc("x.json", b"{}")
    assert s.list_docs("") == ["x.json"]


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket-1", "bucket-1", ""),
        ("s3://bucket-1/", "bucket-1", ""),
        ("s3://bucket-1/a/b/", "bucket-1", "a/b/"),
        ("s3://bucket-1//a//b", "bucket-1", "a/b/"),
    ],
)
def test_parse_url(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == (bucket, prefix)


@pytest.mark.parametrize(
    "url", ["s3://", "s3:///prefix", "s3://b/x", "s3://bkt/a/../b", "s3://bkt/a?x=1"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(StoreError):
        parse_s3_url(url)


def test_credentials_in_url_are_refused_without_echo() -> None:
    with pytest.raises(StoreError) as e:
        parse_s3_url("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@bucket/prefix")
    assert "AKIA" not in str(e.value) and "wJal" not in str(e.value)


def test_listing_is_paginated(s3_url: str) -> None:
    s = S3Store(s3_url, list_page_size=7)
    counter = OpCounter()
    s.client.meta.events.register("needs-retry.s3", counter)
    names = sorted(f"runs/heist/r{i:03d}.json" for i in range(30))
    for n in names:
        s.put_doc(n, b"{}")
    refs = {s.put_bytes(f"b{i}".encode()) for i in range(15)}
    clip = next(iter(refs))
    for i in range(9):
        s.put_action(_record(_key(i), clip))
    counter.ops.clear()
    assert s.list_docs("runs/heist/") == names
    assert counter.ops["ListObjectsV2"] == 5  # 30 keys in pages of 7
    assert set(s.iter_blobs()) == refs
    assert sorted(s.iter_action_keys()) == sorted(_key(i) for i in range(9))


def test_damaged_record_in_s3_is_a_miss(store: S3Store, s3_client: Any) -> None:
    rec = _record(_key(1), store.put_bytes(b"c"))
    store.put_action(rec)
    s3_client.put_object(
        Bucket=store.bucket, Key=store.key_for(action_path(rec.key)), Body=rec.to_json()[:-5]
    )
    assert store.get_actions([rec.key]) == {rec.key: None}
