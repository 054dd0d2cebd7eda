"""What ``--out`` holds after a render: every master file agrees with ``branches.json``.

Masters of branches the story no longer has are removed (and listed in the report); a branch
whose shot failed after an edit has no master file (never the cut from before the edit); a
concurrent ``cache gc`` cannot take a master the render is about to reuse; the terminal gets its
cursor back whatever ends the run.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from backends_for_tests import NoRendererBackend, SleepBackend, use
from cachetools import check_masters, cli_process, plan_json, run_cli, save, wait_for
from storybuild import shot, story, story_dict

from orchestrator.run.driver import WorkerStartError
from orchestrator.run.render import RenderOptions, render_story
from orchestrator.store import sha256_file

use(SleepBackend("sleep"))


def three_ways(name: str, *, with_c: bool = True, lamp: str = "a lamp") -> dict:
    options = [{"label": "left", "next": "a"}, {"label": "right", "next": "b"}]
    segs = [
        {"id": "intro", "shots": [shot("hall")], "choice": {"prompt": "Which way?",
                                                           "options": options}},
        {"id": "a", "shots": [shot("lamp", lamp)]},
        {"id": "b", "shots": [shot("door")]},
    ]
    if with_c:
        options.append({"label": "up", "next": "c"})
        segs.append({"id": "c", "shots": [shot("roof")]})
    return story_dict(segs, name=name, renderer={"backend": "sleep"})


def render(story: str, store: Path, out: Path) -> tuple[int, str]:
    code, _, stderr = run_cli("render", story, "--store", str(store), "--out", str(out),
                              "--quiet")
    return code, stderr


def files_agree_with_index(out: Path) -> dict[str, str]:
    """Every file under masters/ is a master of branches.json, with its digest; returns them."""
    index = json.loads((out / "branches.json").read_text())
    listed = {b["master"]["path"]: b["master"]["sha256"] for b in index if b["master"]}
    on_disk = {f"masters/{p.name}": sha256_file(p)[0] for p in (out / "masters").iterdir()}
    assert on_disk == listed
    return on_disk


def test_masters_of_branches_that_no_longer_exist_are_removed(ray_cluster, tmp_path):
    store, out = tmp_path / "store", tmp_path / "out"
    v1 = save(tmp_path, three_ways("gone-branch"), "v1.yaml")
    assert render(v1, store, out)[0] == 0
    before = files_agree_with_index(out)
    assert len(before) == 3

    v2 = save(tmp_path, three_ways("gone-branch", with_c=False), "v2.yaml")
    code, stderr = render(v2, store, out)
    assert code == 0, stderr
    after = files_agree_with_index(out)
    assert len(after) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["removed"] == sorted(set(before) - set(after)) != []
    assert all(f"removed {rel}" in stderr for rel in report["removed"])
    check_masters(out, plan_json(v2, str(store)))


def test_a_failed_rerender_leaves_no_stale_master(ray_cluster, tmp_path):
    store, out = tmp_path / "store", tmp_path / "out"
    v1 = save(tmp_path, three_ways("stale", with_c=False), "v1.yaml")
    assert render(v1, store, out)[0] == 0
    before = files_agree_with_index(out)

    v2 = save(tmp_path, three_ways("stale", with_c=False, lamp="a brighter lamp"), "v2.yaml")
    use(SleepBackend("sleep", fail_shots=frozenset({"lamp"})))  # same keys; lamp now fails
    try:
        code, stderr = render(v2, store, out)
    finally:
        use(SleepBackend("sleep"))
    assert code == 1, stderr
    index = json.loads((out / "branches.json").read_text())
    failed = [b for b in index if "lamp" in b["shots"]]
    assert len(failed) == 1 and failed[0]["master"] is None
    after = files_agree_with_index(out)  # the pre-edit cut of the lamp branch is gone
    assert len(after) == 1 and set(after.items()) < set(before.items())
    report = json.loads((out / "report.json").read_text())
    assert report["removed"] == sorted(set(before) - set(after))


def test_gc_during_a_render_keeps_the_masters_it_reuses(ray_cluster, tmp_path):
    store, out = tmp_path / "store", tmp_path / "out"
    story_file = save(tmp_path, three_ways("gc-race"))
    assert render(story_file, store, tmp_path / "first")[0] == 0
    old = time.time() - 7200  # everything in the store is older than gc's grace period
    for p in store.rglob("*"):
        os.utime(p, (old, old))

    # Re-render one shot slowly: the other branches' masters are reused from the store.
    log = tmp_path / "render.log"
    p = cli_process(["render", story_file, "--store", str(store), "--out", str(out), "--plain",
                     "--force", "lamp"], address=ray_cluster.address, per_frame_s=2.0, log=log)
    try:
        wait_for(lambda: "start    lamp" in log.read_text(), 240, "the forced render to start")
        code, stdout, stderr = run_cli("cache", "gc", "--store", str(store), "--keep-runs", "0",
                                       "--grace", "1h", "--apply")
        assert code == 0, stderr
        assert p.wait(timeout=240) == 0, log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "succeeded"
    assert report["totals"]["masters"] == 3 and report["totals"]["masters_assembled"] == 1
    check_masters(out, plan_json(story_file, str(store)))


def test_live_display_gives_the_cursor_back_when_the_run_fails(ray_cluster, tmp_path,
                                                              monkeypatch):
    """The run ends by an exception (renderer actors cannot start) while the live display
    runs on a terminal: the cursor is shown again."""
    use(NoRendererBackend("sleep-nodevice"))
    s = story([{"id": "only", "shots": [shot("a")]}], renderer={"backend": "sleep-nodevice"})
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    term = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", term)
    try:
        with pytest.raises(WorkerStartError):
            render_story(s, RenderOptions(store=str(tmp_path / "store"),
                                          out=str(tmp_path / "out"), progress="auto"))
    finally:
        monkeypatch.undo()
        term.flush()
        time.sleep(0.5)
        term.close()
        reader.join(timeout=5)
        os.close(master)
    text = b"".join(chunks)
    hide, show = b"\x1b[?25l", b"\x1b[?25h"
    assert hide in text, "the live display ran"
    assert text.rfind(show) > text.rfind(hide)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_render_keeps_the_published_index(ray_cluster, tmp_path, sig, code):
    """SIGINT (twice: the second during shutdown) or SIGTERM part-way through a re-render:
    branches.json still lists every master it listed, each file agrees with it, the run record
    is finalised as interrupted with its counts, one summary line, no traceback."""
    store, out = tmp_path / "store", tmp_path / "out"
    name = f"stop-{sig.name.lower()}"
    story_file = save(tmp_path, three_ways(name))
    assert render(story_file, store, out)[0] == 0
    before = files_agree_with_index(out)

    force = [x for s in ("hall", "lamp", "door", "roof") for x in ("--force", s)]
    log = tmp_path / "render.log"
    p = cli_process(["render", story_file, "--store", str(store), "--out", str(out), "--plain",
                     "--max-workers", "1", *force],
                    address=ray_cluster.address, per_frame_s=0.5, log=log)
    try:
        wait_for(lambda: "rendered hall" in log.read_text(), 240, "the first shot")
        p.send_signal(sig)
        if sig == signal.SIGINT:
            time.sleep(0.2)
            p.send_signal(sig)
        assert p.wait(timeout=120) == code, log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert "Traceback" not in text
    assert sum(1 for line in text.splitlines() if line.startswith(f"{name}: interrupted:")) == 1
    assert files_agree_with_index(out) == before
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert report["totals"]["rendered"] >= 1
    runs = [json.loads(f.read_text()) for f in sorted((store / "runs" / name).glob("*.json"))]
    assert [r["status"] for r in runs] == ["succeeded", "interrupted"]
    assert runs[-1]["totals"] == report["totals"]
