"""Stories, store and outputs in S3, over real HTTP (moto's server, or any S3 endpoint given by
the environment, see tests/fixtures_s3.py): ``reelfarm render`` and ``reelfarm nightly``.

Which objects a run wrote is read from the bucket's object versions: with versioning on, every
PUT or copy makes a new version even when the bytes are the same, so an unchanged version list
proves that nothing was uploaded.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fixtures_s3 import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, Requests
from storybuild import shot, story_dict

from actors.media import probe
from orchestrator.cli import main
from orchestrator.spec.loading import MAX_MANIFEST_BYTES
from orchestrator.store import BlobMissing, CorruptBlob, LocalStore, StoreError, open_store
from orchestrator.store.s3 import parse_s3_url
from orchestrator.store.s3_objects import S3Output, list_objects, read_object

pytestmark = pytest.mark.s3


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def small_story(name: str, tag: str = "") -> dict:
    return story_dict([
        {"id": "intro", "shots": [shot("wide", f"{name} wide {tag}"),
                                  shot("close", f"{name} close", continuity="previous")],
         "choice": {"prompt": "?", "default": 0,
                    "options": [{"label": "Left", "next": "left"},
                                {"label": "Right", "next": "right"}]}},
        {"id": "left", "shots": [shot("left-shot", f"{name} goes left")]},
        {"id": "right", "shots": [shot("right-shot", f"{name} goes right",
                                       continuity="previous")]},
    ], name=name)


def put_text(client: Any, url: str, text: str) -> None:
    bucket, key = parse_s3_url(url)
    client.put_object(Bucket=bucket, Key=key.rstrip("/"), Body=text.encode())


def get_bytes(client: Any, url: str) -> bytes:
    bucket, key = parse_s3_url(url)
    return client.get_object(Bucket=bucket, Key=key.rstrip("/"))["Body"].read()


def get_json(client: Any, url: str) -> Any:
    return json.loads(get_bytes(client, url))


@pytest.fixture
def bucket(s3_url: str, s3_client: Any) -> Iterator[str]:
    """A fresh ``s3://bucket/prefix`` for one test, in a bucket with versioning on (on an
    external endpoint, the test bucket gets versioning enabled; every version written under
    the prefix is deleted afterwards)."""
    name, prefix = parse_s3_url(s3_url)
    s3_client.put_bucket_versioning(Bucket=name,
                                    VersioningConfiguration={"Status": "Enabled"})
    yield s3_url
    pages = s3_client.get_paginator("list_object_versions").paginate(Bucket=name, Prefix=prefix)
    for page in pages:
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            s3_client.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})


def versions(client: Any, url: str) -> Counter:
    """How many versions each key under ``url`` has."""
    name, prefix = parse_s3_url(url)
    counts: Counter = Counter()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=name,
                                                                       Prefix=prefix):
        for v in page.get("Versions", []):
            counts[v["Key"]] += 1
    return counts


# -- read_object and list_objects ------------------------------------------------------------


def test_read_object_reads_a_manifest_and_refuses_missing_or_large(bucket, s3_client):
    url = f"{bucket}/stories/a.yaml"
    put_text(s3_client, url, "apiVersion: reelfarm/v1\n")
    assert read_object(url, max_bytes=100) == b"apiVersion: reelfarm/v1\n"
    with pytest.raises(StoreError, match="larger than the 10 accepted"):
        read_object(url, max_bytes=10)
    with pytest.raises(StoreError, match="no such object") as e:
        read_object(f"{bucket}/stories/missing.yaml", max_bytes=100)
    assert f"{bucket}/stories/missing.yaml" in str(e.value)
    assert DUMMY_SECRET_KEY not in str(e.value) and DUMMY_ACCESS_KEY not in str(e.value)
    with pytest.raises(StoreError, match="does not exist") as e:
        read_object("s3://reelfarm-no-such-bucket-x/a.yaml", max_bytes=100)
    assert DUMMY_SECRET_KEY not in str(e.value) and DUMMY_ACCESS_KEY not in str(e.value)
    with pytest.raises(StoreError, match="not an object"):
        read_object(f"{bucket}/stories/", max_bytes=100)


def test_list_objects_filters_by_suffix_and_sorts(bucket, s3_client):
    for key in ("stories/b.yaml", "stories/a.yml", "stories/sub/c.json", "stories/notes.txt",
                "other/d.yaml"):
        put_text(s3_client, f"{bucket}/{key}", "x")
    assert list_objects(f"{bucket}/stories") == [
        f"{bucket}/stories/a.yml", f"{bucket}/stories/b.yaml", f"{bucket}/stories/sub/c.json"]
    assert list_objects(f"{bucket}/stories/", suffixes=(".txt",)) == [
        f"{bucket}/stories/notes.txt"]
    assert list_objects(f"{bucket}/nothing-here") == []


def test_cli_reports_a_missing_or_oversized_s3_manifest_in_one_line(bucket, s3_client, tmp_path):
    code, _, stderr = cli("plan", f"{bucket}/stories/none.yaml", "--store", str(tmp_path))
    assert code == 2
    assert stderr.startswith(f"{bucket}/stories/none.yaml: cannot read: no such object")
    assert len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stderr and DUMMY_SECRET_KEY not in stderr
    big = f"{bucket}/stories/big.yaml"
    put_text(s3_client, big, "#" * (MAX_MANIFEST_BYTES + 10))
    code, _, stderr = cli("plan", big, "--store", str(tmp_path))
    assert code == 2 and "bytes" in stderr and "Traceback" not in stderr


# -- S3Output ----------------------------------------------------------------------------------


def test_output_streams_from_a_local_store_and_skips_what_is_published(bucket, s3_client,
                                                                       tmp_path):
    store = LocalStore(tmp_path / "store")
    data = b"a master's bytes " * 1000
    ref = store.put_bytes(data)
    out = S3Output(f"{bucket}/out/x")
    seen = Requests(out.client)
    out.put_blob("masters/m.mp4", store, ref)
    assert seen.ops["PutObject"] == 1 and seen.ops["CopyObject"] == 0
    name, _ = parse_s3_url(bucket)
    head = s3_client.head_object(Bucket=name, Key=out.key_for("masters/m.mp4"))
    assert head["Metadata"]["sha256"] == ref.sha256
    assert head["ContentType"] == "video/mp4"
    assert hashlib.sha256(get_bytes(s3_client, f"{bucket}/out/x/masters/m.mp4")).hexdigest() \
        == ref.sha256

    seen.ops.clear()
    out.put_blob("masters/m.mp4", store, ref)  # identical: nothing is sent
    assert seen.writes() == 0 and seen.ops["HeadObject"] == 1
    other = store.put_bytes(b"another cut")
    out.put_blob("masters/m.mp4", store, other)  # changed: replaced
    assert seen.ops["PutObject"] == 1
    assert get_bytes(s3_client, f"{bucket}/out/x/masters/m.mp4") == b"another cut"


def test_output_copies_server_side_from_an_s3_store(bucket, s3_client):
    store = open_store(f"{bucket}/store")
    ref = store.put_bytes(b"clip bytes " * 500)
    out = S3Output(f"{bucket}/out/y")
    seen = Requests(out.client)
    out.put_blob("masters/a.mp4", store, ref)
    assert seen.ops["CopyObject"] == 1 and seen.ops["PutObject"] == 0
    got = get_bytes(s3_client, f"{bucket}/out/y/masters/a.mp4")
    assert hashlib.sha256(got).hexdigest() == ref.sha256
    seen.ops.clear()
    out.put_blob("masters/a.mp4", store, ref)
    assert seen.writes() == 0


def test_output_never_publishes_a_corrupt_or_missing_blob(bucket, s3_client, tmp_path):
    store = open_store(f"{bucket}/store")
    ref = store.put_bytes(b"good bytes " * 300)
    name, _ = parse_s3_url(bucket)
    key = store.key_for(f"cas/sha256/{ref.sha256[:2]}/{ref.sha256}")
    s3_client.put_object(Bucket=name, Key=key, Body=b"rotten bytes" * 275)  # same digest name
    out = S3Output(f"{bucket}/out/z")
    with pytest.raises(CorruptBlob):
        out.put_blob("masters/a.mp4", store, ref)  # server-side copy, checked
    with pytest.raises(CorruptBlob):
        out.put_blob("masters/b.mp4", local_copy_of(tmp_path, store, ref), ref)  # streamed
    assert list_objects(f"{bucket}/out/z") == []  # the bad copy was removed at once
    store.delete_blob(ref.sha256)
    with pytest.raises(BlobMissing):
        out.put_blob("masters/a.mp4", store, ref)
    assert list_objects(f"{bucket}/out/z") == []


def local_copy_of(tmp_path: Path, s3store: Any, ref: Any) -> LocalStore:
    """A local store holding the (corrupt) bytes of an S3 blob under its original name."""
    local = LocalStore(tmp_path / "mirror")
    name = local.root / "cas" / "sha256" / ref.sha256[:2] / ref.sha256
    name.parent.mkdir(parents=True, exist_ok=True)
    bucket = s3store.bucket
    body = s3store.client.get_object(Bucket=bucket, Key=s3store.key_for(
        f"cas/sha256/{ref.sha256[:2]}/{ref.sha256}"))["Body"].read()
    name.write_bytes(body)
    return local


# -- render through the CLI, everything in S3 --------------------------------------------------


def test_render_from_s3_to_s3(ray_cluster, bucket, s3_client, tmp_path):
    src = f"{bucket}/stories/x.yaml"
    put_text(s3_client, src, yaml.safe_dump(small_story("x")))
    store, out = f"{bucket}/store", f"{bucket}/out/x"
    code, stdout, stderr = cli("render", src, "--store", store, "--out", out, "--quiet")
    assert code == 0, stderr
    branches = get_json(s3_client, f"{out}/branches.json")
    report = get_json(s3_client, f"{out}/report.json")
    assert report["status"] == "succeeded" and report["totals"]["rendered"] == 4
    assert sorted(stdout.split()) == sorted(f"{out}/{b['master']['path']}" for b in branches)
    name, _ = parse_s3_url(bucket)
    for b in branches:
        key = f"{out}/{b['master']['path']}"
        data = get_bytes(s3_client, key)
        assert hashlib.sha256(data).hexdigest() == b["master"]["sha256"]
        head = s3_client.head_object(Bucket=name, Key=parse_s3_url(key)[1].rstrip("/"))
        assert head["Metadata"]["sha256"] == b["master"]["sha256"]
        local = tmp_path / Path(b["master"]["path"]).name
        local.write_bytes(data)
        assert probe(local).frames == b["master"]["frames"] == 4 * len(b["shots"])
    # report.html beside report.json, with a thumbnail per shot beside it
    page = get_bytes(s3_client, f"{out}/report.html").decode()
    for t in report["tasks"]:
        assert f'src="thumbs/{t["key"]}.jpg"' in page
        assert get_bytes(s3_client, f"{out}/thumbs/{t['key']}.jpg")[:2] == b"\xff\xd8"  # JPEG
    # the run record is in the store, and a second render publishes nothing new
    runs = list_objects(f"{store}/runs/x", suffixes=(".json",))
    assert runs == [f"{store}/runs/x/{report['run_id']}.json"]
    # a shot's log and the run history are read from the S3 store as well
    shot0 = report["tasks"][0]["shot"]
    code, text, stderr = cli("logs", report["run_id"], "--shot", shot0, "--store", store)
    assert code == 0, stderr
    assert text.startswith("reelfarm ") and f"(shot {shot0}," in text
    assert DUMMY_SECRET_KEY not in text
    code, text, stderr = cli("runs", "x", "--store", store, "--json")
    assert code == 0, stderr
    assert [r["run_id"] for r in json.loads(text)] == [report["run_id"]]
    before = versions(s3_client, f"{out}/masters")
    code, _, stderr = cli("render", src, "--store", store, "--out", out, "--quiet")
    assert code == 0 and "nothing to render" in stderr
    assert versions(s3_client, f"{out}/masters") == before


# -- nightly over an S3 prefix -----------------------------------------------------------------


def nightly(client: Any, bucket: str, *extra: str) -> tuple[int, str, str, dict]:
    """``reelfarm nightly`` over ``<bucket>/stories``; the summary it wrote is read back."""
    out = f"{bucket}/out"
    code, stdout, stderr = cli("nightly", f"{bucket}/stories", "--store", f"{bucket}/store",
                               "--out", out, "--quiet", *extra)
    line = [ln for ln in stderr.splitlines() if ln.startswith("nightly ")][-1]
    run_id = line.split()[1].rstrip(":")
    return code, stdout, stderr, get_json(client, f"{out}/nightly-{run_id}.json")


def by_story(summary: dict) -> dict[str, tuple[str, int, int]]:
    return {s["story"]: (s["status"], s["rendered"], s["masters_assembled"])
            for s in summary["stories"]}


def test_nightly_renders_only_what_changed(ray_cluster, bucket, s3_client):
    for n in ("alpha", "bravo", "charlie"):
        put_text(s3_client, f"{bucket}/stories/{n}.yaml", yaml.safe_dump(small_story(n)))

    code, stdout, stderr, first = nightly(s3_client, bucket)
    assert code == 0, stderr
    assert by_story(first) == {n: ("rendered", 4, 2) for n in ("alpha", "bravo", "charlie")}
    for n in ("alpha", "bravo", "charlie"):
        assert n in stdout  # the table
        branches = get_json(s3_client, f"{bucket}/out/{n}/branches.json")
        for b in branches:
            data = get_bytes(s3_client, f"{bucket}/out/{n}/{b['master']['path']}")
            assert hashlib.sha256(data).hexdigest() == b["master"]["sha256"]

    # bravo's first shot changes: every shot conditioned on it renders again, both branches
    # re-assemble; alpha and charlie are untouched
    put_text(s3_client, f"{bucket}/stories/bravo.yaml",
             yaml.safe_dump(small_story("bravo", tag="at dusk")))
    before = versions(s3_client, bucket)
    code, stdout, stderr, second = nightly(s3_client, bucket)
    assert code == 0, stderr
    assert by_story(second) == {"alpha": ("unchanged", 0, 0), "bravo": ("rendered", 3, 2),
                                "charlie": ("unchanged", 0, 0)}
    assert second["totals"]["tasks_rendered"] == 3
    after = versions(s3_client, bucket)
    written = {k for k in after if after[k] != before.get(k)}
    name, prefix = parse_s3_url(bucket)
    assert not [k for k in written if "/out/alpha/" in k or "/out/charlie/" in k
                or "/runs/alpha/" in k or "/runs/charlie/" in k]
    bravo = get_json(s3_client, f"{bucket}/out/bravo/report.json")
    thumbs = {f"{prefix}out/bravo/thumbs/{t['key']}.jpg" for t in bravo["tasks"]
              if t["status"] == "rendered"}
    assert len(thumbs) == 3
    assert {k for k in written if "/out/" in k} == {
        f"{prefix}out/bravo/branches.json", f"{prefix}out/bravo/report.json",
        f"{prefix}out/bravo/report.html",
        f"{prefix}out/bravo/masters/left.mp4", f"{prefix}out/bravo/masters/right.mp4",
        f"{prefix}out/nightly-{second['run_id']}.json"} | thumbs

    # a third run with nothing changed uploads nothing but its own summary
    before = versions(s3_client, bucket)
    code, _, _, third = nightly(s3_client, bucket)
    assert code == 0
    assert {s["status"] for s in third["stories"]} == {"unchanged"}
    after = versions(s3_client, bucket)
    assert {k for k in after if after[k] != before.get(k)} == {
        f"{prefix}out/nightly-{third['run_id']}.json"}


def test_nightly_reports_an_invalid_story_and_renders_the_others(ray_cluster, bucket,
                                                                 s3_client):
    put_text(s3_client, f"{bucket}/stories/alpha.yaml", yaml.safe_dump(small_story("alpha")))
    broken = small_story("broken")
    broken["spec"]["segments"][0]["shots"][0]["duration"] = -1
    put_text(s3_client, f"{bucket}/stories/broken.yaml", yaml.safe_dump(broken))
    put_text(s3_client, f"{bucket}/stories/charlie.yaml",
             yaml.safe_dump(small_story("charlie")))
    put_text(s3_client, f"{bucket}/stories/README.md", "not a story")  # not listed

    code, stdout, stderr, summary = nightly(s3_client, bucket)
    assert code == 1
    assert summary["status"] == "failed"
    assert summary["totals"]["invalid"] == 1 and summary["totals"]["rendered"] == 2
    bad = [s for s in summary["stories"] if s["status"] == "invalid"]
    assert [s["source"] for s in bad] == [f"{bucket}/stories/broken.yaml"]
    assert any("duration" in p and "broken.yaml" in p for p in bad[0]["problems"])
    assert "invalid" in stdout and "broken.yaml" in stdout
    assert "duration" in stderr
    for n in ("alpha", "charlie"):
        assert get_json(s3_client, f"{bucket}/out/{n}/report.json")["status"] == "succeeded"
    assert list_objects(f"{bucket}/out/broken") == []


def test_nightly_over_an_empty_prefix_is_an_error(bucket):
    code, _, stderr = cli("nightly", f"{bucket}/nothing", "--store", f"{bucket}/store",
                          "--out", f"{bucket}/out")
    assert code == 2 and "no story manifests" in stderr
