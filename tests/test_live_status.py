"""Live status: the run record is updated while the render runs, and ``reelfarm status`` and
``reelfarm runs`` read it from the store (no cluster needed) with non-zero progress."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from backends_for_tests import GateBackend, use
from cachetools import run_cli
from storybuild import shot, story

from orchestrator.run.driver import SchedulerOptions
from orchestrator.run.render import RenderOptions, render_story
from orchestrator.store import open_store

pytestmark = pytest.mark.cluster


def _wait(pred, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_status_mid_run_shows_progress_and_what_renders_where(ray_cluster, tmp_path: Path):
    gate = tmp_path / "gate"
    gate.mkdir()
    # `a` and `b` render at once; `held` renders only once the test opens the gate
    use(GateBackend("gate-live", gate_dir=str(gate), hold=frozenset({"held"}),
                    per_frame_s=0.01))
    s = story([{"id": "reel", "shots": [shot("a"), shot("b"), shot("held")]}], name="livereel",
              renderer={"backend": "gate-live"})
    store = str(tmp_path / "store")
    opts = RenderOptions(store=store, out=str(tmp_path / "out"), progress="quiet",
                         run_id="live-1", priority=70, live_interval=0.2,
                         scheduler=SchedulerOptions(backoff_s=0.05))
    done: dict = {}
    th = threading.Thread(target=lambda: done.update(result=render_story(s, opts)))
    th.start()
    try:
        _wait(lambda: list(gate.glob("*.started")), "the held shot to start rendering")

        def live():
            code, text, err = run_cli("status", "live-1", "--store", store, "--json")
            assert code == 0, err
            doc = json.loads(text)
            return doc if doc["totals"].get("rendered") == 2 and doc["running"] else None

        doc = _wait(live, "the run record to show two shots rendered and one rendering")
        assert doc["status"] == "running" and doc["run_id"] == "live-1"
        assert doc["story"] == "livereel" and doc["priority"] == 70
        assert doc["totals"]["unique"] == 3 and doc["totals"]["running"] == 1
        held, = doc["running"]
        assert held["shot"] == "held" and held["task"] == "held"
        assert held["node"] and held["since"] >= doc["started"]
        assert doc["eta_seconds"] > 0 and doc["stale"] is False
        assert doc["user"] and doc["version"] and doc["updated"] >= doc["started"]

        code, text, err = run_cli("status", "live-1", "--store", store)
        assert code == 0, err
        assert text.startswith("live-1: running")
        assert "3 unique: 2 rendered, 0 cached" in text
        assert f"rendering  held on {held['node']} since" in text and "eta" in text

        code, text, err = run_cli("runs", "livereel", "--store", store, "--json")
        assert code == 0, err
        run, = json.loads(text)
        assert run["status"] == "running" and run["totals"]["rendered"] == 2
    finally:
        (gate / "open").touch()
        th.join(timeout=300)
    result = done["result"]
    assert result.exit_code == 0
    final = open_store(store).get_run("livereel", "live-1")
    assert final["status"] == "succeeded" and final["running"] == []
    assert final["eta_seconds"] == 0 and final["totals"]["rendered"] == 3
    assert final["updated"] >= doc["updated"]


def test_runs_lists_the_history_with_who_when_and_counts(ray_cluster, tmp_path: Path):
    use(GateBackend("gate-open", gate_dir=str(tmp_path), hold=frozenset()))
    s = story([{"id": "reel", "shots": [shot("a"), shot("b")]}], name="histreel",
              renderer={"backend": "gate-open"})
    store = str(tmp_path / "store")
    for run_id, force in (("hist-1", frozenset()), ("hist-2", frozenset({"b"}))):
        r = render_story(s, RenderOptions(store=store, out=str(tmp_path / "out"),
                                          progress="quiet", run_id=run_id, force=force))
        assert r.exit_code == 0
    code, text, err = run_cli("runs", "histreel", "--store", store, "--json")
    assert code == 0, err
    first, second = json.loads(text)
    assert [first["run_id"], second["run_id"]] == ["hist-1", "hist-2"]
    assert first["totals"]["rendered"] == 2 and first["totals"]["cached"] == 0
    assert second["totals"]["rendered"] == 1 and second["totals"]["cached"] == 1
    for run in (first, second):
        assert run["status"] == "succeeded" and run["priority"] == 50
        assert "@" in run["user"] and run["version"] and run["seconds"] > 0
        assert run["story"] == "histreel" and run["stale"] is False
    code, text, err = run_cli("runs", "--store", store)
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["STORY", "RUN", "ID", "STATUS"]
    assert [ln.split()[1] for ln in lines[1:]] == ["hist-1", "hist-2"]
    assert "2r 0c 0f/2" in lines[1] and "1r 1c 0f/2" in lines[2]
    code, _, err = run_cli("runs", "../x", "--store", store)
    assert code == 2 and err == "error: '../x' is not a story name\n"
    code, _, err = run_cli("runs", "--store", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error: store ") and "does not exist" in err
