"""Integrity: a corrupt clip is found, reported, never assembled and rendered again; the salt
disowns every record. Local stores and S3 (moto over HTTP) alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cachetools import by_id, check_masters, fork_story, masters, plan_json, render, run_cli, save

from orchestrator.store import open_store
from orchestrator.store.base import action_path, blob_path


def _rot(data: bytes) -> bytes:
    """Bit rot: flip bits in the middle, same length (a size check cannot see it)."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 16]) + data[mid + 16:]


def _corrupt_local(store: str, digest: str) -> None:
    p = Path(store) / blob_path(digest)
    p.write_bytes(_rot(p.read_bytes()))


def _corrupt_s3(store: str, digest: str, client: Any) -> None:
    s = open_store(store)
    key = s.key_for(blob_path(digest))
    body = client.get_object(Bucket=s.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s.bucket, Key=key, Body=_rot(body))


def _corrupt_then_render(store: str, tmp: Path, corrupt) -> None:
    story = save(tmp, fork_story("rot"))
    first = render(story, store, tmp / "out1")
    clip = by_id(first)["hall"]["clip"]  # in both branches
    branch_b = next(b for b in first["branches"] if b["name"] == "b")
    corrupt(clip)
    # Branch b's master record is gone (as after a gc of an older story version), so the next
    # render must assemble b again and read the corrupt clip to do so.
    open_store(store).delete_action(branch_b["key"])

    code, stdout, _ = run_cli("cache", "verify", "--store", store, "--json")
    assert code == 1
    found = json.loads(stdout)
    assert [c["sha256"] for c in found["corrupt"]] == [clip]
    assert found["corrupt"][0]["records"] == [by_id(first)["hall"]["key"]]
    assert found["corrupt"][0]["actual"] != clip

    second = render(story, store, tmp / "out2")
    assert [c["sha256"] for c in second["corrupt"]] == [clip]
    assert second["corrupt"][0]["found_by"] == "master b"
    tasks = by_id(second)
    assert tasks["hall"]["status"] == "rendered"
    assert tasks["hall"]["reason"] == "corrupt blob in the store"
    assert tasks["hall"]["clip"] == clip  # the same bytes, rendered again
    # its new record keeps its key document, as every render's does (for the next plan's why)
    from orchestrator.plan.keys import digest

    record = open_store(store).get_action(tasks["hall"]["key"])
    assert record.inputs is not None and digest(record.inputs) == tasks["hall"]["key"]
    assert {t for t, v in tasks.items() if v["status"] == "rendered"} == {"hall"}
    # Never assembled from corrupt bytes: b's master is bit-identical to the first run's.
    assert masters(tmp / "out2") == masters(tmp / "out1")
    assert second["status"] == "succeeded"
    check_masters(tmp / "out2", plan_json(story, store))
    # The re-render replaced the corrupt blob: the store verifies clean now.
    code, stdout, _ = run_cli("cache", "verify", "--store", store, "--json")
    assert code == 0 and json.loads(stdout)["corrupt"] == []


def test_corrupt_clip_local(ray_cluster, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    _corrupt_then_render(store, tmp_path, lambda d: _corrupt_local(store, d))


@pytest.mark.s3
def test_corrupt_clip_s3(ray_cluster, s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    _corrupt_then_render(s3_url, tmp_path, lambda d: _corrupt_s3(s3_url, d, s3_client))


def test_verify_repair_deletes_corrupt_blob_and_its_records(ray_cluster, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    story = save(tmp_path, fork_story("mend"))
    first = render(story, store, tmp_path / "out1")
    lamp = by_id(first)["lamp"]
    _corrupt_local(store, lamp["clip"])
    code, stdout, _ = run_cli("cache", "verify", "--store", store, "--repair", "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert doc["repaired"]["blobs_deleted"] == [lamp["clip"]]
    assert doc["repaired"]["records_deleted"] == [lamp["key"]]
    assert not (Path(store) / blob_path(lamp["clip"])).exists()
    assert not (Path(store) / action_path(lamp["key"])).exists()
    plan = plan_json(story, store)
    assert [(t["id"], t["reason"]) for t in plan["task_list"] if t["status"] == "to_render"] == [
        ("lamp", "record missing (repaired)")]
    code, stdout, _ = run_cli("cache", "verify", "--store", store)
    assert code == 0 and "ok: nothing corrupt" in stdout


def test_verify_finds_records_whose_blobs_are_missing(ray_cluster, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    story = save(tmp_path, fork_story("gone"))
    first = render(story, store, tmp_path / "out1")
    door = by_id(first)["door"]
    (Path(store) / blob_path(door["clip"])).unlink()
    (Path(store) / action_path(by_id(first)["yard"]["key"])).write_text("{not json")
    code, stdout, _ = run_cli("cache", "verify", "--store", store, "--json")
    assert code == 1
    doc = json.loads(stdout)
    assert doc["corrupt"] == []
    assert [(m["record"], m["output"]) for m in doc["missing"]] == [(door["key"], "clip")]
    assert doc["damaged_records"] == [by_id(first)["yard"]["key"]]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_salt_disowns_every_record(ray_cluster, request, tmp_path: Path, kind: str) -> None:
    store = str(tmp_path / "store") if kind == "local" else request.getfixturevalue("s3_url")
    story = save(tmp_path, fork_story("salty"))
    render(story, store, tmp_path / "out1")
    before = plan_json(story, store)
    assert before["tasks"]["to_render"] == 0

    assert run_cli("cache", "salt", "--store", store)[1] == "\n"
    code, _, stderr = run_cli("cache", "salt", "batch-2", "--store", store, "--yes")
    assert code == 0 and "disowned" in stderr
    assert run_cli("cache", "salt", "--store", store)[1] == "batch-2\n"

    after = plan_json(story, store)
    assert after["tasks"]["cached"] == 0
    assert after["tasks"]["to_render"] == after["tasks"]["unique"] == 5
    assert {t["reason"] for t in after["task_list"]} == {"salt changed"}
    assert not {t["key"] for t in after["task_list"]} & {t["key"] for t in before["task_list"]}


def _runs(store: str, story: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text())
            for p in sorted((Path(store) / "runs" / story).glob("*.json"))]


def test_corrupt_master_is_assembled_again_and_reported(ray_cluster, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    story = save(tmp_path, fork_story("rotmaster"))
    first = render(story, store, tmp_path / "out1")
    bad = first["branches"][0]
    _corrupt_local(store, bad["master"])  # same size: an existence check cannot see it

    code, _, stderr = run_cli("render", story, "--store", store, "--out",
                              str(tmp_path / "out2"), "--quiet")
    assert code == 0, stderr
    second = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert second["status"] == "succeeded"
    assert second["corrupt"] == [{"sha256": bad["master"], "found_by": f"master {bad['name']}"}]
    assert second["totals"]["rendered"] == 0 and second["totals"]["masters_assembled"] == 1
    assert masters(tmp_path / "out2") == masters(tmp_path / "out1")
    check_masters(tmp_path / "out2", plan_json(story, store))
    assert [r["status"] for r in _runs(store, "rotmaster")] == ["succeeded", "succeeded"]
    code, stdout, _ = run_cli("cache", "verify", "--store", store, "--json")
    assert code == 0 and json.loads(stdout)["ok"]


def test_publish_failure_exits_1_with_the_run_record_finalised(ray_cluster,
                                                               tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    story = save(tmp_path, fork_story("nopub"))
    first = render(story, store, tmp_path / "out1")
    out = tmp_path / "out2"
    blocked = first["branches"][0]["name"]
    (out / "masters" / f"{blocked}.mp4").mkdir(parents=True)  # publishing it must fail

    code, stdout, stderr = run_cli("render", story, "--store", store, "--out", str(out),
                                   "--quiet")
    assert code == 1, stderr
    assert "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed"
    assert len(report["errors"]) == 1 and str(out) in report["errors"][0]
    assert [r["status"] for r in _runs(store, "nopub")] == ["succeeded", "failed"]


def test_a_tampered_run_record_copy_never_decides_a_master(ray_cluster, tmp_path: Path) -> None:
    """A run record's copy of a record points a task at another task's clip (same record
    size, so the size check passes): the masters are still made of the clips the store's
    records name."""
    from orchestrator.store import ActionRecord

    store = str(tmp_path / "store")
    doc = fork_story("tamper")
    doc["spec"]["segments"][1]["shots"][0]["duration"] = 1.5  # lamp: 12 frames, not 4
    story = save(tmp_path, doc)
    first = render(story, store, tmp_path / "out1")
    tasks = by_id(first)
    run_file = sorted((Path(store) / "runs" / "tamper").glob("*.json"))[-1]
    run = json.loads(run_file.read_text())
    hall = run["records"][tasks["hall"]["key"]]
    stored = (Path(store) / action_path(tasks["hall"]["key"])).stat().st_size
    forged = None
    for other in ("lamp", "door", "yard"):  # the first forgery that keeps the record's size
        clip = run["records"][tasks[other]["key"]]["outputs"]["clip"]
        candidate = {**hall, "outputs": {**hall["outputs"], "clip": clip}}
        rec = ActionRecord.model_validate({**candidate, "key": tasks["hall"]["key"]})
        if len(rec.to_json()) == stored:
            forged = candidate
            break
    assert forged is not None, "some forgery keeps the record's size"
    run["records"][tasks["hall"]["key"]] = forged
    run_file.write_text(json.dumps(run))
    for b in first["branches"]:  # every master is assembled again
        open_store(store).delete_action(b["key"])

    second = render(story, store, tmp_path / "out2")
    assert second["totals"]["rendered"] == 0
    assert by_id(second)["hall"]["clip"] == tasks["hall"]["clip"]
    check_masters(tmp_path / "out2", plan_json(story, store))
    assert masters(tmp_path / "out2") == masters(tmp_path / "out1")
