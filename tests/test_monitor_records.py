"""What the monitor reads from run records (old and new shapes) and the review records it
writes, on a real local store; no server, no browser."""

from __future__ import annotations

import json

import pytest

from orchestrator.monitor import ids, runs
from orchestrator.monitor.reviews import ReviewError, add_review, history, story_reviews, summary
from orchestrator.store import LocalStore

KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


def record(**extra) -> dict:
    doc = {
        "story": "heist", "run_id": "20260101T000000Z-abc123", "status": "succeeded",
        "started": "2026-01-01T00:00:00Z", "seconds": 12.5,
        "tasks": [
            {"id": "vault", "shot": "vault", "segment": "s1", "key": KEY_A, "status": "rendered",
             "reason": "new key", "seconds": 1.0, "load_seconds": 0.5, "retries": 0,
             "node": "n1", "error": None, "clip": KEY_C},
            {"id": "exit", "shot": "exit", "segment": "s2", "key": KEY_B, "status": "failed",
             "reason": "never rendered", "seconds": 0.0, "load_seconds": 0.0, "retries": 2,
             "node": "n2", "error": "boom", "clip": None},
            {"id": "exit~1", "shot": "exit", "segment": "s2", "key": KEY_C, "status": "pending",
             "reason": "", "seconds": 0.0, "load_seconds": 0.0, "retries": 0, "node": None,
             "error": None, "clip": None},
        ],
        "branches": [{"name": "main", "status": "failed", "master": None, "frames": 0,
                      "error": "not assembled"}],
        "totals": {"unique": 3, "masters": 0},
        "records": {KEY_A: {"outputs": {"clip": {"sha256": KEY_C, "size": 3},
                                        "last_frame": {"sha256": KEY_B, "size": 3}}}},
    }
    doc.update(extra)
    return doc


def test_an_old_record_without_graph_log_or_user_is_drawn_from_its_tasks():
    v = runs.view(record())
    assert not v["graph_recorded"]
    assert [s["id"] for s in v["graph"]["segments"]] == ["s1", "s2"]
    assert [n["id"] for n in v["layout"]["nodes"]] == ["s1", "s2"] and v["layout"]["edges"] == []
    assert v["shots"]["vault"]["thumb"] == {"sha256": KEY_B, "type": "png"}  # the last frame
    assert v["shots"]["exit"]["status"] == "failed"  # the worst of its tasks
    assert [t["id"] for t in v["shots"]["exit"]["tasks"]] == ["exit", "exit~1"]
    assert v["shots"]["vault"]["tasks"][0]["log"] is None
    assert v["summary"]["user"] is None and v["summary"]["counts"]["failed"] == 1
    assert v["branches"][0]["sheet_recorded"] is False


def test_a_newer_record_gives_graph_poster_log_running_and_traceback():
    graph = {"start": "s1", "segments": [
        {"id": "s1", "shots": ["vault"], "next": None, "choice": {
            "prompt": "?", "default": 0, "options": [{"label": "run", "next": "s2"}]}},
        {"id": "s2", "shots": ["exit"], "next": None, "choice": None}]}
    doc = record(graph=graph, user="mara", host="ws1", version="0.2.0", priority=3,
                 running=[{"task": "exit~1", "shot": "exit", "node": "gpu-3",
                           "since": "2026-01-01T00:00:05Z"}],
                 failures=[{"id": "exit", "error": "boom", "traceback": "Traceback ...\nboom"}],
                 eta_seconds=30)
    doc["records"][KEY_A]["outputs"]["poster"] = {"sha256": KEY_A, "size": 9}
    doc["tasks"][0]["log"] = {"sha256": KEY_B, "size": 10}
    doc["branches"][0]["tasks"] = ["vault", "exit~1"]
    v = runs.view(doc)
    assert v["graph_recorded"] and v["layout"]["edges"][0]["label"] == "run"
    assert v["shots"]["vault"]["thumb"] == {"sha256": KEY_A, "type": "jpg"}  # the poster
    assert v["shots"]["vault"]["tasks"][0]["log"] == KEY_B
    variant = v["shots"]["exit"]["tasks"][1]
    assert (variant["status"], variant["node"], variant["since"]) == (
        "running", "gpu-3", "2026-01-01T00:00:05Z")
    assert v["shots"]["exit"]["tasks"][0]["traceback"] == "Traceback ...\nboom"
    s = v["summary"]
    assert (s["user"], s["host"], s["version"], s["priority"], s["eta_seconds"]) == (
        "mara", "ws1", "0.2.0", 3, 30)
    assert [x["shot"] for x in v["branches"][0]["sheet"]] == ["vault", "exit"]


def test_junk_in_a_record_is_left_out_not_raised():
    doc = record(graph={"start": 5, "segments": [{"id": "s1", "shots": [1, "vault"],
                                                   "choice": {"options": ["x", {"next": 3}]}}]},
                 running="no", failures=[None], branches=[None, {"tasks": [None]}])
    doc["tasks"].append("junk")
    doc["tasks"][0]["log"] = "../../etc/passwd"
    v = runs.view(doc)
    assert v["graph"]["segments"] == [{"id": "s1", "shots": ["vault"], "next": None,
                                       "choice": {"prompt": "", "default": None, "options": []}}]
    assert v["shots"]["vault"]["tasks"][0]["log"] is None  # not a digest: never fetched


@pytest.fixture
def store(tmp_path):
    st = LocalStore(tmp_path / "store")
    st.put_run("heist", "20260101T000000Z-abc123", record())
    return st


def test_reviews_keep_their_history_and_the_keys_they_judged(store):
    rid = "20260101T000000Z-abc123"
    add_review(store, "heist", rid, "exit", "changes", "too dark", "mara")
    add_review(store, "heist", rid, "exit", "approved", "", "joe")
    h = history(store, "heist", "exit")
    assert [(r.verdict, r.who) for r in h] == [("changes", "mara"), ("approved", "joe")]
    assert h[-1].key == KEY_B and h[-1].keys == [KEY_B, KEY_C]  # the shot's own task first
    raw = json.loads(store.get_doc("reviews/heist/exit.json"))
    assert raw["shot"] == "exit" and len(raw["reviews"]) == 2
    # a later run with another key for one of its tasks: the review was for an older take
    later = record(run_id="20260102T000000Z-def456")
    later["tasks"][2]["key"] = KEY_A
    s = summary(story_reviews(store, "heist"), later)
    assert s["exit"]["current"] is False and s["exit"]["verdict"] == "approved"
    assert summary(story_reviews(store, "heist"), record())["exit"]["current"] is True


@pytest.mark.parametrize("args,why", [
    (("heist", "20260101T000000Z-abc123", "exit", "meh", "", "mara"), "verdict"),
    (("heist", "20260101T000000Z-abc123", "exit", "changes", "  ", "mara"), "note"),
    (("heist", "20260101T000000Z-abc123", "nope", "approved", "", "mara"), "no shot"),
    (("heist", "20260101T000000Z-zzz999", "exit", "approved", "", "mara"), "no run"),
])
def test_a_review_that_cannot_be_made_is_refused(store, args, why):
    with pytest.raises(ReviewError, match=why):
        add_review(store, *args)
    assert store.list_docs("reviews/") == []


@pytest.mark.parametrize("args", [
    ("../x", "20260101T000000Z-abc123", "exit", "approved", "", "mara"),
    ("heist", "..", "exit", "approved", "", "mara"),
    ("heist", "20260101T000000Z-abc123", "../../config", "approved", "", "mara"),
    ("heist", "20260101T000000Z-abc123", "exit", "approved", "", "\x1b[2Jmara"),
    ("heist", "20260101T000000Z-abc123", "exit", "approved", "", ""),
])
def test_ids_and_names_are_checked_before_they_name_anything(store, args):
    with pytest.raises(ids.BadId):
        add_review(store, *args)
    assert store.list_docs("reviews/") == []


def test_a_damaged_review_document_reads_as_no_reviews_and_is_replaced(store):
    store.put_doc("reviews/heist/exit.json", b"{not json")
    assert history(store, "heist", "exit") == []
    add_review(store, "heist", "20260101T000000Z-abc123", "exit", "approved", "", "mara")
    assert [r.who for r in history(store, "heist", "exit")] == ["mara"]
