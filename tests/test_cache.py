"""`reelfarm cache stats` and `cache gc`: sizes per kind and story; what gc keeps and deletes."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from cachetools import by_id, fork_story, masters, plan_json, render, run_cli, save

from orchestrator.store import open_store
from orchestrator.store.base import action_path, blob_path
from orchestrator.store.cache import plan_gc


def _files(store: Path) -> set[str]:
    return {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}


def _two_runs(tmp: Path) -> dict:
    """Run 1 renders the story; shot `door` changes; run 2 renders the new version."""
    store = tmp / "store"
    v1 = save(tmp, fork_story("gc"), "v1.yaml")
    first = render(v1, str(store), tmp / "out1")
    v2 = save(tmp, fork_story("gc", b_prompt="the back door, now painted red"), "v2.yaml")
    second = render(v2, str(store), tmp / "out2")
    return {"store": store, "v1": v1, "v2": v2, "first": first, "second": second}


def test_gc_keeps_the_last_run_and_deletes_the_old_shot(ray_cluster, tmp_path: Path) -> None:
    r = _two_runs(tmp_path)
    store, first, second = r["store"], r["first"], r["second"]
    t1, t2 = by_id(first), by_id(second)
    # `door` changed and `yard` continues from it: both rendered anew, nothing else
    assert {t for t, v in t2.items() if v["status"] == "rendered"} == {"door", "yard"}
    old_b = next(b for b in first["branches"] if b["name"] == "b")
    old_records = {t1["door"]["key"], t1["yard"]["key"], old_b["key"]}
    old_rec_docs = {k: json.loads((store / action_path(k)).read_text()) for k in old_records}
    new_records = [t["key"] for t in second["tasks"]] + [b["key"] for b in second["branches"]]
    new_blobs = {o["sha256"] for k in new_records
                 for o in json.loads((store / action_path(k)).read_text())["outputs"].values()}
    # a blob both versions name (the same bytes) stays
    old_blobs = {o["sha256"] for d in old_rec_docs.values()
                 for o in d["outputs"].values()} - new_blobs
    assert t1["door"]["clip"] in old_blobs and old_b["master"] in old_blobs

    # with the default grace (6 h) everything here is too new to delete
    code, stdout, _ = run_cli("cache", "gc", "--keep-runs", "1", "--store", str(store), "--json")
    assert code == 0 and json.loads(stdout)["delete"]["objects"] == []

    before = _files(store)
    code, stdout, _ = run_cli("cache", "gc", "--keep-runs", "1", "--grace", "0", "--store",
                              str(store))
    assert code == 0
    assert f"would delete blob {blob_path(t1['door']['clip'])} clip (gc/door)" in stdout
    assert "dry run: nothing was deleted" in stdout
    assert _files(store) == before  # a dry run changes nothing

    code, stdout, _ = run_cli("cache", "gc", "--keep-runs", "1", "--grace", "0", "--store",
                              str(store), "--json")
    doc = json.loads(stdout)
    listed = {d["path"] for d in doc["delete"]["objects"]}
    expected = ({blob_path(d) for d in old_blobs} | {action_path(k) for k in old_records}
                | {f"runs/gc/{first['run_id']}.json"})
    assert listed == expected
    assert doc["delete"]["bytes"] == sum((store / p).stat().st_size for p in listed)
    assert doc["kept_runs"] == [f"runs/gc/{second['run_id']}.json"]

    code, stdout, _ = run_cli("cache", "gc", "--keep-runs", "1", "--grace", "0", "--store",
                              str(store), "--apply", "--json")
    assert code == 0
    assert json.loads(stdout)["applied"]["deleted"] == {"record": 3, "blob": len(old_blobs),
                                                        "run": 1}
    assert _files(store) == before - expected

    # the current story is whole: nothing renders, nothing is assembled, nothing is corrupt
    third = render(r["v2"], str(store), tmp_path / "out3")
    assert third["totals"]["rendered"] == 0 and third["totals"]["masters_assembled"] == 0
    assert masters(tmp_path / "out3") == masters(tmp_path / "out2")
    assert run_cli("cache", "verify", "--store", str(store))[0] == 0
    # the old version is gone: its changed shots would render again
    plan = plan_json(r["v1"], str(store))
    assert {t["id"] for t in plan["task_list"] if t["status"] == "to_render"} == {"door", "yard"}


def _fake_run(store, story: str, started: float, status: str, like: dict) -> str:
    run_id = datetime.fromtimestamp(started, timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-abcdef"
    store.put_run(story, run_id, {**like, "run_id": run_id, "status": status})
    return f"runs/{story}/{run_id}.json"


def test_gc_never_deletes_what_a_run_in_progress_needs(ray_cluster, tmp_path: Path) -> None:
    r = _two_runs(tmp_path)
    store = open_store(str(r["store"]))
    door1 = by_id(r["first"])["door"]["clip"]
    # Seen from a day later, with a 6 h grace: every object is old.
    later = time.time() + 86400
    plan = plan_gc(store, 1, 6 * 3600, now=later)
    assert blob_path(door1) in {d.rel for d in plan.delete}

    # A render of the old version started an hour before "later" and is still running.
    live = _fake_run(store, "gc", later - 3600, "running", r["first"])
    plan = plan_gc(store, 1, 6 * 3600, now=later)
    assert live in plan.kept_runs
    assert not {d.rel for d in plan.delete} & {blob_path(door1), action_path(
        by_id(r["first"])["door"]["key"])}

    # A run that says "running" but started two days before is a crashed driver: not kept.
    store.delete_doc(live)
    stale = _fake_run(store, "gc", later - 2 * 86400, "running", r["first"])
    plan = plan_gc(store, 1, 6 * 3600, now=later)
    assert stale not in plan.kept_runs
    assert blob_path(door1) in {d.rel for d in plan.delete}


def test_gc_keeps_the_last_finished_run_behind_an_interrupted_one(ray_cluster,
                                                                  tmp_path: Path) -> None:
    r = _two_runs(tmp_path)
    store = open_store(str(r["store"]))
    later = time.time() + 86400
    # A newer run of the old version was interrupted at once: it names the keys of the first
    # version but no clips. keep-runs 1 still keeps the last finished run (the second).
    interrupted = _fake_run(store, "gc", time.time() + 60, "interrupted", r["first"])
    plan = plan_gc(store, 1, 6 * 3600, now=later)
    assert plan.kept_runs == sorted([interrupted, f"runs/gc/{r['second']['run_id']}.json"])
    doomed = {d.rel for d in plan.delete}
    for t in r["second"]["tasks"]:
        assert blob_path(t["clip"]) not in doomed and action_path(t["key"]) not in doomed


def test_stats_counts_blobs_records_and_stories(ray_cluster, tmp_path: Path) -> None:
    r = _two_runs(tmp_path)
    store = r["store"]
    code, stdout, _ = run_cli("cache", "stats", "--store", str(store), "--json")
    assert code == 0
    doc = json.loads(stdout)
    blobs = [p for p in (store / "cas").rglob("*") if p.is_file()]
    records = list((store / "ac").glob("*.json"))
    assert doc["blobs"]["objects"] == len(blobs)
    assert doc["blobs"]["bytes"] == sum(p.stat().st_size for p in blobs)
    # 5 + 2 renders: 7 clips; masters a, b (v1) and b (v2); last frames as distinct as bytes
    frames = {json.loads(p.read_text())["outputs"].get("last_frame", {}).get("sha256")
              for p in records} - {None}
    assert doc["blobs"]["clips"]["objects"] == 7
    assert doc["blobs"]["last_frames"]["objects"] == len(frames) >= 6
    assert doc["blobs"]["masters"]["objects"] == 3
    assert doc["blobs"]["unreferenced"]["objects"] == 0
    assert doc["records"] == {"objects": len(records),
                              "bytes": sum(p.stat().st_size for p in records),
                              "render": 7, "master": 3, "damaged": 0}
    story = doc["stories"]["gc"]
    assert story["runs"] == 2
    assert story["last_run"] == {"id": r["second"]["run_id"], "status": "succeeded"}
    assert story["clips"]["objects"] == 7 and story["masters"]["objects"] == 3
    code, text, _ = run_cli("cache", "stats", "--store", str(store))
    assert code == 0 and "story gc: 2 runs" in text and "7 clips, 3 masters" in text
