"""One contract suite for every store: a local directory and S3 (moto over HTTP, or the server
named by ``REELFARM_TEST_S3_ENDPOINT``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import (
    ActionRecord,
    BlobMissing,
    BlobRef,
    CorruptBlob,
    LocalStore,
    Store,
    open_store,
)
from orchestrator.store.base import action_path, blob_path
from orchestrator.store.s3 import S3Store


class Harness:
    """A store plus a way to damage its objects behind its back."""

    def __init__(self, store: Store, write_raw: Callable[[str, bytes], None]) -> None:
        self.store = store
        self.write_raw = write_raw


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        store = LocalStore(tmp_path / "store")

        def write_raw(rel: str, data: bytes) -> None:
            p = store.root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

        yield Harness(store, write_raw)
    else:
        url = request.getfixturevalue("s3_url")
        client = request.getfixturevalue("s3_client")
        store = S3Store(url, backoff_base=0.01, backoff_max=0.1)

        def write_raw(rel: str, data: bytes) -> None:
            # moto does not validate checksums: corrupt objects directly.
            client.put_object(Bucket=store.bucket, Key=store.key_for(rel), Body=data)

        yield Harness(store, write_raw)
        store.close()


def _record(key: str, clip: BlobRef, **kw: Any) -> ActionRecord:
    fields: dict[str, Any] = dict(
        frames=72, width=640, height=360, fps=24, backend="previz", backend_version="1", seconds=1.5
    )
    fields.update(kw)
    return ActionRecord(key=key, outputs={"clip": clip}, **fields)


def _key(i: int | str) -> str:
    return hashlib.sha256(f"render-{i}".encode()).hexdigest()


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


# -- blobs --------------------------------------------------------------------------------------


def test_put_get_bytes_round_trip(h: Harness) -> None:
    data = os.urandom(100_000)
    ref = h.store.put_bytes(data)
    assert ref == BlobRef(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert h.store.get_bytes(ref.sha256) == data


def test_empty_blob(h: Harness) -> None:
    ref = h.store.put_bytes(b"")
    assert ref.size == 0
    assert h.store.get_bytes(ref.sha256) == b""


def test_put_get_file_round_trip(h: Harness, tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    src.write_bytes(os.urandom(300_000))
    ref = h.store.put_file(src)
    assert ref.size == 300_000
    dest = tmp_path / "out" / "nested" / "clip.mp4"
    h.store.get_file(ref.sha256, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["clip.mp4"]  # no temp file left


def test_identical_reput_is_success(h: Harness, tmp_path: Path) -> None:
    data = b"same bytes twice" * 1000
    first = h.store.put_bytes(data)
    second = h.store.put_bytes(data)
    src = tmp_path / "f"
    src.write_bytes(data)
    third = h.store.put_file(src)
    assert first == second == third
    assert h.store.get_bytes(first.sha256) == data
    assert [b.sha256 for b in h.store.iter_blobs()] == [first.sha256]


def test_missing_blob(h: Harness, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(BlobMissing) as e:
        h.store.get_bytes(digest)
    assert e.value.digest == digest
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BlobMissing):
        h.store.get_file(digest, out / "missing.bin")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "replace"])
def test_corrupt_blob_is_detected_on_read(h: Harness, tmp_path: Path, damage: str) -> None:
    data = os.urandom(50_000)
    ref = h.store.put_bytes(data)
    bad = {"flip": _flip(data), "truncate": data[:-10], "replace": b"garbage"}[damage]
    h.write_raw(blob_path(ref.sha256), bad)

    with pytest.raises(CorruptBlob) as e:
        h.store.get_bytes(ref.sha256)
    assert e.value.digest == ref.sha256
    assert e.value.actual == hashlib.sha256(bad).hexdigest()

    out = tmp_path / "out"
    out.mkdir()
    dest = out / "clip.bin"
    dest.write_bytes(b"previous content")
    with pytest.raises(CorruptBlob):
        h.store.get_file(ref.sha256, dest)
    assert dest.read_bytes() == b"previous content"  # a corrupt blob writes nothing
    assert [p.name for p in out.iterdir()] == ["clip.bin"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_reput_repairs_a_corrupt_blob(h: Harness, tmp_path: Path, damage: str) -> None:
    """A re-render after a CorruptBlob writes the same digest again: it must replace the bad
    object, not be taken for an identical one."""
    data = os.urandom(40_000)
    ref = h.store.put_bytes(data)
    h.write_raw(blob_path(ref.sha256), _flip(data) if damage == "flip" else data[:100])
    src = tmp_path / "rerendered.bin"
    src.write_bytes(data)
    assert h.store.put_file(src) == ref
    assert h.store.get_bytes(ref.sha256) == data


def test_has_blobs(h: Harness) -> None:
    a = h.store.put_bytes(b"a" * 10)
    b = h.store.put_bytes(b"b" * 20)
    absent = BlobRef(sha256=hashlib.sha256(b"nope").hexdigest(), size=4)
    wrong_size = BlobRef(sha256=b.sha256, size=21)
    assert h.store.has_blobs([a, absent]) == {a.sha256: True, absent.sha256: False}
    assert h.store.has_blobs([wrong_size]) == {b.sha256: False}
    assert h.store.has_blobs([]) == {}


def test_iter_and_delete_blobs(h: Harness) -> None:
    refs = {h.store.put_bytes(f"blob {i}".encode()) for i in range(12)}
    assert set(h.store.iter_blobs()) == refs
    gone = sorted(refs, key=lambda r: r.sha256)[0]
    h.store.delete_blob(gone.sha256)
    h.store.delete_blob(gone.sha256)  # idempotent
    assert set(h.store.iter_blobs()) == refs - {gone}
    with pytest.raises(BlobMissing):
        h.store.get_bytes(gone.sha256)


def test_bad_digest_is_refused(h: Harness, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        h.store.get_bytes("../../etc/passwd")
    with pytest.raises(ValueError):
        h.store.get_file("ABC", tmp_path / "x")


# -- action records -----------------------------------------------------------------------------


def test_action_record_round_trip(h: Harness) -> None:
    clip = h.store.put_bytes(b"clip bytes")
    rec = _record(_key(1), clip, load_seconds=0.25, node="n1")
    h.store.put_action(rec)
    got = h.store.get_action(rec.key)
    assert got == rec
    assert got is not None and got.outputs["clip"] == clip
    assert list(h.store.iter_action_keys()) == [rec.key]


def test_action_record_is_replaceable(h: Harness) -> None:
    clip = h.store.put_bytes(b"first")
    h.store.put_action(_record(_key(1), clip))
    newer = _record(_key(1), h.store.put_bytes(b"second"), seconds=9.0)
    h.store.put_action(newer)
    assert h.store.get_action(_key(1)) == newer


def test_missing_and_damaged_records_are_none(h: Harness) -> None:
    clip = h.store.put_bytes(b"clip")
    good = _record(_key("good"), clip)
    h.store.put_action(good)
    h.write_raw(action_path(_key("garbage")), b"{not json")
    h.write_raw(action_path(_key("truncated")), good.to_json()[:40])
    h.write_raw(
        action_path(_key("wrong-schema")), json.dumps({"key": _key("wrong-schema")}).encode()
    )
    # a record stored under another key's name is not that key's record
    h.write_raw(action_path(_key("other")), good.to_json())
    keys = [_key(k) for k in ("good", "garbage", "truncated", "wrong-schema", "other", "absent")]
    got = h.store.get_actions(keys)
    assert list(got) == keys
    assert got[_key("good")] == good
    assert [got[k] for k in keys[1:]] == [None] * 5


def test_batched_action_lookup(h: Harness) -> None:
    clip = h.store.put_bytes(b"clip")
    present = [_key(i) for i in range(0, 120, 2)]
    for k in present:
        h.store.put_action(_record(k, clip))
    keys = [_key(i) for i in range(120)] + [_key(0)]  # duplicates are fine
    got = h.store.get_actions(keys)
    assert len(got) == 120
    assert {k for k, v in got.items() if v is not None} == set(present)
    assert all(got[k].key == k for k in present)  # type: ignore[union-attr]
    assert sorted(h.store.iter_action_keys()) == sorted(present)


@pytest.mark.parametrize("n", [10, 300])  # below and above S3's listing threshold
def test_existing_actions_and_sizes(h: Harness, n: int) -> None:
    clip = h.store.put_bytes(b"clip")
    keys = [_key(f"{n}-{i}") for i in range(n)]
    present = keys[::3]
    for k in present:
        h.store.put_action(_record(k, clip, seconds=float(len(k) % 7)))
    # a damaged record exists (it has a size) but get_actions calls it a miss
    damaged = keys[1]
    h.write_raw(action_path(damaged), b"{not json")
    asked = keys + [present[0]]  # duplicates are fine
    assert h.store.existing_actions(asked) == {*present, damaged}
    sizes = h.store.action_sizes(asked)
    assert set(sizes) == {*present, damaged}
    assert sizes[damaged] == len(b"{not json")
    assert all(sizes[k] == len(_record(k, clip, seconds=float(len(k) % 7)).to_json())
               for k in present)
    h.store.delete_action(present[0])
    assert present[0] not in h.store.existing_actions(keys)
    assert h.store.existing_actions([]) == set()
    with pytest.raises(ValueError):
        h.store.existing_actions(["../config"])


def test_has_blobs_many_refs(h: Harness) -> None:
    """Existence and size of several hundred blobs, some absent, one with the wrong size."""
    refs = [h.store.put_bytes(f"blob {i}".encode()) for i in range(150)]
    absent = [BlobRef(sha256=_key(f"absent-{i}"), size=4) for i in range(150)]
    wrong = BlobRef(sha256=refs[0].sha256, size=refs[0].size + 1)
    got = h.store.has_blobs(refs[1:] + absent + [wrong])
    assert len(got) == 300
    assert all(got[r.sha256] for r in refs[1:])
    assert not any(got[r.sha256] for r in absent)
    assert got[wrong.sha256] is False


def test_delete_action(h: Harness) -> None:
    rec = _record(_key(3), h.store.put_bytes(b"c"))
    h.store.put_action(rec)
    h.store.delete_action(rec.key)
    h.store.delete_action(rec.key)
    assert h.store.get_action(rec.key) is None
    assert list(h.store.iter_action_keys()) == []


def test_bad_record_key_is_refused(h: Harness) -> None:
    with pytest.raises(ValueError):
        h.store.get_actions(["../config"])


# -- documents, runs, salt ----------------------------------------------------------------------


def test_docs(h: Harness) -> None:
    s = h.store
    assert s.get_doc("runs/heist/r1.json") is None
    s.put_doc("runs/heist/r2.json", b"two")
    s.put_doc("runs/heist/r1.json", b"one")
    s.put_doc("runs/heist/sub/r3.json", b"three")
    s.put_doc("runs/other/r1.json", b"x")
    s.put_doc("runs/heister/r9.json", b"not under runs/heist/")
    assert s.get_doc("runs/heist/r1.json") == b"one"
    s.put_doc("runs/heist/r1.json", b"one again")
    assert s.get_doc("runs/heist/r1.json") == b"one again"
    expected = ["runs/heist/r1.json", "runs/heist/r2.json", "runs/heist/sub/r3.json"]
    assert s.list_docs("runs/heist/") == expected
    assert s.list_docs("runs/heist") == expected
    assert s.list_docs("runs/nothing/") == []
    s.delete_doc("runs/heist/r2.json")
    s.delete_doc("runs/heist/r2.json")
    assert s.get_doc("runs/heist/r2.json") is None
    assert "runs/heist/r2.json" not in s.list_docs("runs/")


@pytest.mark.parametrize("bad", ["../escape.json", "/abs.json"])
def test_doc_paths_cannot_escape(h: Harness, bad: str) -> None:
    with pytest.raises(ValueError):
        h.store.put_doc(bad, b"x")


def test_runs(h: Harness) -> None:
    s = h.store
    s.put_run("heist", "20260101t000000-a", {"status": "ok", "n": 1})
    s.put_run("heist", "20260102t000000-b", {"status": "ok", "n": 2})
    s.put_run("caper", "20260101t000000-c", {"status": "failed"})
    assert s.list_runs("heist") == ["20260101t000000-a", "20260102t000000-b"]
    assert s.list_stories() == ["caper", "heist"]
    assert s.get_run("heist", "20260102t000000-b") == {"status": "ok", "n": 2}
    assert s.get_run("heist", "nope") is None


def test_salt_round_trip(h: Harness) -> None:
    s = h.store
    assert s.salt == ""
    s.set_salt("batch-2026-03")
    assert s.salt == "batch-2026-03"
    s.set_salt("again")
    assert s.salt == "again"
    assert json.loads(s.get_doc("config.json") or b"{}") == {"salt": "again"}


def test_open_store_url(h: Harness) -> None:
    """The URL a store reports opens the same store again."""
    ref = h.store.put_bytes(b"reopened")
    again = open_store(h.store.url)
    try:
        assert type(again) is type(h.store)
        assert again.get_bytes(ref.sha256) == b"reopened"
    finally:
        again.close()
