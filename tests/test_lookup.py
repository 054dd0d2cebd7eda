"""The cache lookup of a plan in S3 (moto over HTTP, or the endpoint of REELFARM_TEST_S3_ENDPOINT).

A story of 302 tasks is rendered once into a store this module owns. Its lookup must cost far
fewer requests than tasks: which records exist comes from listing ``ac/`` prefixes, the records
themselves from the copies kept in the latest run record (one GET), the blobs' existence from
listing ``cas/sha256/`` prefixes. A copy is trusted only while the store agrees with it: a record
deleted from ``ac/``, a damaged record, a missing blob or a replaced record are seen.

Tests that damage the store put back exactly what they took, so they may run in any order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends_for_tests import SleepBackend, use
from fixtures_s3 import Requests, _empty_prefix, new_s3_location
from storybuild import shot, story

from orchestrator.plan.expand import expand
from orchestrator.run.driver import Scheduler
from orchestrator.run.render import RenderOptions, render_story
from orchestrator.run.state import CACHED
from orchestrator.store import ActionRecord, open_store
from orchestrator.store.base import action_path, blob_path
from orchestrator.store.s3 import S3Store

pytestmark = pytest.mark.s3

SEGMENTS, PER_SEGMENT = 6, 50


def big_story() -> Any:
    segs: list[dict[str, Any]] = []
    for i in range(SEGMENTS):
        seg: dict[str, Any] = {
            "id": f"s{i}",
            "shots": [shot(f"shot-{i}-{j}", duration=0.125) for j in range(PER_SEGMENT)],
        }
        if i + 1 < SEGMENTS:
            seg["next"] = f"s{i + 1}"
        else:
            seg["choice"] = {"prompt": "?", "default": 0,
                             "options": [{"label": "A", "next": "end-a"},
                                         {"label": "B", "next": "end-b"}]}
        segs.append(seg)
    segs += [{"id": e, "shots": [shot(f"{e}-shot", duration=0.125, continuity="previous")]}
             for e in ("end-a", "end-b")]
    return story(segs, name="lookup", renderer={"backend": "lookup-solid"})


@pytest.fixture(scope="module")
def cached(ray_cluster, s3_client: Any, tmp_path_factory) -> Iterator[dict[str, Any]]:
    bucket, prefix = new_s3_location(s3_client, "reelfarm-lookup")
    url = f"s3://{bucket}/{prefix}"
    use(SleepBackend("lookup-solid"))
    out = tmp_path_factory.mktemp("lookup") / "out"
    result = render_story(big_story(), RenderOptions(store=url, out=str(out), progress="quiet"))
    assert result.exit_code == 0
    assert result.report["totals"]["rendered"] == SEGMENTS * PER_SEGMENT + 2
    yield {"url": url, "out": out, "report": result.report}
    _empty_prefix(s3_client, bucket, prefix + "/")


def lookup(url: str) -> tuple[Scheduler, Requests]:
    """A fresh store (its own client), the plan, and the lookup's requests counted."""
    store = S3Store(url)
    plan = expand(big_story(), salt=store.salt)
    count = Requests(store.client)
    sched = Scheduler(plan, store, store_url=url)
    sched.lookup()
    return sched, count


def reasons(sched: Scheduler) -> dict[str, str]:
    """Each task that is not cached, with its reason."""
    return {tid: r.reason for tid, r in sched.runs.items() if r.status != CACHED}


def test_run_record_keeps_a_copy_of_every_record(cached: dict[str, Any]) -> None:
    store = open_store(cached["url"])
    run = store.get_run("lookup", cached["report"]["run_id"])
    assert run is not None and run["status"] == "succeeded"
    keys = {t["key"] for t in run["tasks"]}
    assert set(run["records"]) == keys
    for key, data in run["records"].items():
        assert "key" not in data  # the key is the map's key: compact
        assert ActionRecord.model_validate({**data, "key": key}) == store.get_action(key)
    # the published report stays the report
    assert "records" not in json.loads((Path(cached["out"]) / "report.json").read_text())


def test_cached_plan_costs_far_fewer_requests_than_tasks(cached: dict[str, Any]) -> None:
    sched, count = lookup(cached["url"])
    tasks = len(sched.runs)
    assert tasks == SEGMENTS * PER_SEGMENT + 2
    assert reasons(sched) == {}
    # Before: a GET per record and a HEAD per clip and per last frame, 3 per task. Now: 16
    # LISTs of ac/<digit>, 16 of cas/sha256/<digit>, the run records' LIST and one GET.
    assert count.by_op.get("HEAD", 0) == 0
    assert count.by_op.get("GET", 0) == 1, count.by_op  # the latest run record, no record
    assert count.total <= 40, count.by_op
    assert count.total * 5 < tasks


def test_a_record_deleted_from_the_store_is_not_taken_from_the_copy(
        cached: dict[str, Any]) -> None:
    store = S3Store(cached["url"])
    task = cached["report"]["tasks"][7]
    raw = store.get_doc(action_path(task["key"]))
    assert raw is not None
    store.delete_action(task["key"])
    try:
        sched, _ = lookup(cached["url"])
        assert reasons(sched) == {task["id"]: "new key"}
    finally:
        store.put_doc(action_path(task["key"]), raw)
    assert reasons(lookup(cached["url"])[0]) == {}


def test_a_damaged_record_is_read_not_taken_from_the_copy(cached: dict[str, Any]) -> None:
    store = S3Store(cached["url"])
    task = cached["report"]["tasks"][11]
    raw = store.get_doc(action_path(task["key"]))
    assert raw is not None
    store.put_doc(action_path(task["key"]), raw[:-7])  # truncated: no longer a record
    try:
        sched, count = lookup(cached["url"])
        assert reasons(sched) == {task["id"]: "new key"}
        assert count.by_op.get("GET", 0) == 2  # the run record, and this record
    finally:
        store.put_doc(action_path(task["key"]), raw)


@pytest.mark.parametrize("output", ["clip", "last_frame"])
def test_a_missing_blob_is_seen_through_the_copy(cached: dict[str, Any], output: str) -> None:
    store = S3Store(cached["url"])
    task = cached["report"]["tasks"][23]
    rec = store.get_action(task["key"])
    assert rec is not None
    ref = rec.outputs[output]
    data = store.get_bytes(ref.sha256)
    store.delete_blob(ref.sha256)
    try:
        sched, _ = lookup(cached["url"])
        assert reasons(sched) == {task["id"]: "record's blobs missing"}
    finally:
        assert store.put_bytes(data) == ref
    assert reasons(lookup(cached["url"])[0]) == {}


def test_a_replaced_record_wins_over_a_stale_copy(cached: dict[str, Any], s3_client) -> None:
    """Another render replaced a record (new clip) and the copy's clip is gone: the lookup reads
    the record in the store and trusts it, since its blobs are there."""
    store = S3Store(cached["url"])
    task = cached["report"]["tasks"][42]
    raw = store.get_doc(action_path(task["key"]))
    old = ActionRecord.from_json(raw or b"")
    assert old is not None
    old_clip = store.get_bytes(old.outputs["clip"].sha256)
    new_clip = store.put_bytes(old_clip + b"\0")  # another valid render of the same key
    new = old.model_copy(update={"outputs": {**old.outputs, "clip": new_clip}})
    store.put_action(new)
    store.delete_blob(old.outputs["clip"].sha256)
    try:
        sched, _ = lookup(cached["url"])
        assert reasons(sched) == {}
        assert sched.runs[task["id"]].record == new
    finally:
        store.put_bytes(old_clip)
        store.put_doc(action_path(task["key"]), raw or b"")
        store.delete_blob(new_clip.sha256)
    assert blob_path(new_clip.sha256) not in store.list_docs("cas/")
    assert reasons(lookup(cached["url"])[0]) == {}


def test_noop_render_renders_nothing_and_keeps_the_copies(cached: dict[str, Any],
                                                          tmp_path: Path) -> None:
    result = render_story(big_story(), RenderOptions(store=cached["url"], out=str(tmp_path),
                                                     progress="quiet"))
    assert result.exit_code == 0
    assert result.report["totals"]["rendered"] == 0
    assert result.report["totals"]["masters_assembled"] == 0
    run = open_store(cached["url"]).get_run("lookup", result.report["run_id"])
    assert run is not None and len(run["records"]) == SEGMENTS * PER_SEGMENT + 2


def test_noop_render_sends_a_bounded_number_of_requests(cached: dict[str, Any], tmp_path: Path,
                                                        monkeypatch) -> None:
    """The whole no-op render, not only its lookup: listings, the latest run record, the run
    records it writes and the master checks; no request per task."""
    import orchestrator.run.render as render_mod

    # A nightly re-render publishes into the --out it published to before: report.html's
    # thumbnails are there already (a first publish reads one image per shot to make them).
    render_story(big_story(), RenderOptions(store=cached["url"], out=str(tmp_path),
                                            progress="quiet"))
    counts: list[Requests] = []
    opened = render_mod.open_store

    def counted(*a: Any, **kw: Any) -> Any:
        store = opened(*a, **kw)
        counts.append(Requests(store.client))
        return store

    monkeypatch.setattr(render_mod, "open_store", counted)
    result = render_story(big_story(), RenderOptions(store=cached["url"], out=str(tmp_path),
                                                     progress="quiet"))
    assert result.exit_code == 0 and result.report["totals"]["rendered"] == 0
    (count,) = counts
    tasks = SEGMENTS * PER_SEGMENT + 2
    # GETs: the latest run record, then per master (two) its record and its bytes (verified,
    # then checked in --out); PUTs: the run record, at the start and at the end
    masters = len(result.report["branches"])
    assert masters == 2
    assert count.by_op.get("GET", 0) <= 1 + 4 * masters, count.by_op
    assert count.by_op.get("PUT", 0) <= 2, count.by_op
    assert count.total <= 60, count.by_op
    assert count.total * 5 < tasks
