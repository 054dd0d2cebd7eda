"""The benchmarks' no-op backend writes nothing and cannot be named by a story.

It exists to measure what the driver costs per task beside a raw actor call, so its renderer
actor must not encode or store anything (no clip, no record: nothing is ever cached from it),
and a user's manifest must not reach it (it is registered only by a benchmark or a test).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backends_for_tests import NoopBackend
from storybuild import shot, story, story_dict, write_story

from actors.renderer import ShotRenderer
from orchestrator.plan.expand import SHAPE_ONLY, expand
from orchestrator.store import open_store

REPO = Path(__file__).resolve().parents[1]


def test_a_no_op_render_stores_nothing_and_says_so(tmp_path):
    from actors.backends import register_backend

    register_backend(NoopBackend())
    plan = expand(story([{"id": "a", "shots": [shot("one"), shot("two", continuity="previous")]}],
                        renderer={"backend": "noop"}), encoder=SHAPE_ONLY)
    url = str(tmp_path / "store")
    renderer = ShotRenderer(url, None, NoopBackend())
    records = [renderer.render(t, None) for t in plan.tasks]
    assert [(r.key, r.kind, r.outputs, r.frames) for r in records] == [
        (t.key, "noop", {}, 0) for t in plan.tasks]
    store = open_store(url)
    assert store.get_actions([t.key for t in plan.tasks]) == {t.key: None for t in plan.tasks}
    assert list(store.iter_blobs()) == []


def test_a_manifest_cannot_name_the_no_op_backend(tmp_path):
    path = write_story(tmp_path / "s.yaml", story_dict([{"id": "a", "shots": [shot("one")]}],
                                                       renderer={"backend": "noop"}))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "noop" in proc.stderr and "Traceback" not in proc.stderr


def test_the_driver_runs_a_no_op_plan_and_caches_nothing(ray_cluster, tmp_path):
    """What a driver benchmark does with it: every task of a plan with continuity chains runs
    through real renderer actors, and the store stays empty. A plan for it has no masters."""
    from backends_for_tests import use

    from orchestrator.run.driver import Scheduler, SchedulerOptions

    use(NoopBackend())
    segs = [{"id": "a", "shots": [shot("a1"), shot("a2", continuity="previous")],
             "choice": {"options": [{"label": "x", "next": "b"}, {"label": "y", "next": "c"}]}},
            {"id": "b", "shots": [shot("b1", continuity="previous")]},
            {"id": "c", "shots": [shot("c1", continuity="previous")]}]
    plan = expand(story(segs, renderer={"backend": "noop"}), encoder=SHAPE_ONLY)
    plan = plan.model_copy(update={"branches": []})
    url = str(tmp_path / "store")
    store = open_store(url)
    sched = Scheduler(plan, store, store_url=url,
                      options=SchedulerOptions(max_workers=2, backoff_s=0.05))
    sched.lookup()
    sched.run()
    assert {t: (r.status, r.record.kind, r.record.outputs)
            for t, r in sched.runs.items()} == {t.id: ("rendered", "noop", {}) for t in plan.tasks}
    assert store.get_actions([t.key for t in plan.tasks]) == {t.key: None for t in plan.tasks}
    assert list(store.iter_blobs()) == []
