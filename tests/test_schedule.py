"""Farm-scale scheduling on a real multi-node Ray cluster (fake GPUs, custom resources)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from backends_for_tests import SleepBackend, start_trace, use
from fixtures_ray import GPU_TYPE
from storybuild import shot, story

from actors.media import probe
from orchestrator.run.driver import SchedulerOptions, Unplaceable
from orchestrator.run.render import RenderOptions, render_story
from orchestrator.store import open_store

pytestmark = pytest.mark.cluster


def opts(tmp: Path, **sched) -> RenderOptions:
    return RenderOptions(store=str(tmp / "store"), out=str(tmp / "out"), progress="quiet",
                         scheduler=SchedulerOptions(backoff_s=0.05, **sched))


def fan_story(backend: str, n_branches: int = 4, chain: int = 3, **renderer) -> object:
    """A root segment choosing between branches of continuity chains, all meeting at an end."""
    opts_ = [{"label": f"b{i}", "next": f"b{i}"} for i in range(n_branches)]
    segs = [{"id": "root", "shots": [shot("root-a"), shot("root-b", continuity="previous")],
             "choice": {"options": opts_}}]
    for i in range(n_branches):
        segs.append({"id": f"b{i}", "next": "end", "shots": [
            shot(f"b{i}-{k}", continuity="previous" if k else "cut") for k in range(chain)]})
    segs.append({"id": "end", "shots": [shot("end-a"), shot("end-b", continuity="previous")]})
    return story(segs, renderer={"backend": backend, **renderer})


def test_dependents_never_start_before_their_conditioning_record_exists(ray_cluster, tmp_path):
    log = tmp_path / "starts"
    log.mkdir()
    use(SleepBackend("sleep-log", per_frame_s=0.01, log_dir=str(log)))
    s = fan_story("sleep-log")
    result = render_story(s, opts(tmp_path))
    assert result.exit_code == 0
    store = tmp_path / "store"
    tasks = {t["id"]: t for t in result.report["tasks"]}
    checked = 0
    from orchestrator.plan.expand import expand

    for t in expand(s).tasks:
        if t.upstream is None:
            continue
        started, _ = start_trace(log, t.key)
        upstream_record = store / "ac" / f"{tasks[t.upstream]['key']}.json"
        assert upstream_record.stat().st_mtime <= started, (t.id, t.upstream)
        checked += 1
    assert checked >= 10


def test_a_failing_shot_blocks_exactly_its_dependents(ray_cluster, tmp_path):
    use(SleepBackend("sleep-fail", fail_shots=frozenset({"b1-1"})))
    result = render_story(fan_story("sleep-fail"), opts(tmp_path, retries=2))
    assert result.exit_code == 1
    status = {t["id"]: t["status"] for t in result.report["tasks"]}
    assert status["b1-1"] == "failed"
    assert status["b1-2"] == "blocked"
    # end-a is a cut, so it and end-b (conditioned on end-a, not on b1) still render
    assert {k for k, v in status.items() if v == "blocked"} == {"b1-2"}
    assert all(v == "rendered" for k, v in status.items() if k not in ("b1-1", "b1-2"))
    failure, = result.report["failures"]
    assert failure["id"] == "b1-1" and failure["retries"] == 2
    assert "deliberate failure of b1-1" in failure["error"] and failure["node"]
    masters = {b["name"]: b["master"] for b in result.branches}
    assert masters["end~b1"] is None
    assert all(m is not None for name, m in masters.items() if name != "end~b1")
    assert len(list((tmp_path / "out" / "masters").iterdir())) == 3


def test_model_affinity_keeps_switches_near_the_minimum(ray_cluster, tmp_path):
    use(SleepBackend("sleep-models", per_frame_s=0.005, load_s=0.3))
    shots = [shot(f"a{i}", renderer={"model": "model-a"}) for i in range(8)]
    shots += [shot(f"b{i}", renderer={"model": "model-b"}) for i in range(8)]
    s = story([{"id": "only", "shots": shots}], renderer={"backend": "sleep-models"})
    result = render_story(s, opts(tmp_path, max_workers=2))
    assert result.exit_code == 0
    # the minimum is 0 (one model per actor); alternating would cost ~14
    assert result.report["totals"]["model_switches"] <= 2
    loads = sum(1 for t in result.report["tasks"] if t["load_seconds"] > 0)
    assert loads <= 4


def test_a_plan_no_node_can_run_is_refused_before_anything_runs(ray_cluster, tmp_path):
    use(SleepBackend("sleep-b200"))
    s = story([{"id": "only", "shots": [
        shot("fits"), shot("huge", renderer={"resources": {"accelerator_type:B200": 1}}),
        shot("big-memory", renderer={"gpu_memory_gb": 141})]}],
        renderer={"backend": "sleep-b200"})
    with pytest.raises(Unplaceable) as e:
        render_story(s, opts(tmp_path))
    assert "huge" in str(e.value) and "accelerator_type:B200" in str(e.value)
    assert "big-memory" in str(e.value) and "gpu_memory_gb=141" in str(e.value)
    assert not (tmp_path / "store" / "ac").exists()  # nothing rendered


def test_gpu_type_resource_places_shots_only_where_it_exists(ray_cluster, tmp_path):
    import ray

    use(SleepBackend("sleep-typed", gpus=1))
    s = story([{"id": "only", "shots": [
        shot(f"t{i}", renderer={"resources": {GPU_TYPE: 1}}) for i in range(4)]}],
        renderer={"backend": "sleep-typed"})
    result = render_story(s, opts(tmp_path))
    assert result.exit_code == 0
    typed = {n["NodeID"][:8] for n in ray.nodes() if n["Alive"] and GPU_TYPE in n["Resources"]}
    assert {t["node"].rsplit("/", 1)[1] for t in result.report["tasks"]} <= typed


def test_a_node_joining_mid_run_gets_actors_and_losing_it_requeues_its_tasks(
        ray_cluster, tmp_path):
    starts = tmp_path / "starts"
    starts.mkdir()
    use(SleepBackend("sleep-gpu", per_frame_s=0.25, gpus=1, log_dir=str(starts)))
    s = fan_story("sleep-gpu", n_branches=6, chain=4)
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(r=render_story(s, opts(tmp_path))))
    th.start()
    # the run has started on the cluster as it was; now a node joins (an autoscaler's work)
    store = tmp_path / "store" / "ac"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (store.exists() and any(store.glob("*.json"))):
        time.sleep(0.05)
    node = ray_cluster.add_node(num_cpus=2, num_gpus=2)

    def in_flight_on_new_node() -> bool:
        """A shot has started on the new node and has no record yet: it is rendering there."""
        for p in starts.glob("*.start"):
            parts = p.read_text().split()
            if len(parts) == 2 and parts[1] == node.node_id and not (
                    store / f"{p.stem}.json").exists():
                return True
        return False

    # wait until the new node has finished a shot and is rendering another, then take it away
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        recs = [json.loads(p.read_text()) for p in store.glob("*.json")] if store.exists() else []
        if any(r["node"].endswith(node.node_id[:8]) for r in recs) and in_flight_on_new_node():
            break
        time.sleep(0.02)
    node_id = node.node_id[:8]
    grew = any(json.loads(p.read_text())["node"].endswith(node_id) for p in store.glob("*.json"))
    ray_cluster.remove_node(node)
    th.join(timeout=300)
    r = result["r"]
    assert grew, "no shot ran on the node that joined mid-run"
    assert r.exit_code == 0, r.report["failures"]
    assert all(t["status"] == "rendered" for t in r.report["tasks"])
    assert r.report["totals"]["requeued"] >= 1
    assert any(t["requeued"] for t in r.report["tasks"])
    for b in r.branches:
        assert probe(tmp_path / "out" / b["master"]["path"]).frames == b["master"]["frames"]


def test_task_timeout_kills_the_actor_and_fails_only_that_shot(ray_cluster, tmp_path):
    use(SleepBackend("sleep-stuck", costs={"stuck": 60.0}))
    s = story([{"id": "only", "shots": [shot("ok-1"), shot("stuck"), shot("ok-2")]}],
              renderer={"backend": "sleep-stuck"})
    result = render_story(s, opts(tmp_path, retries=0, task_timeout=2.0))
    assert result.exit_code == 1
    status = {t["id"]: t["status"] for t in result.report["tasks"]}
    assert status == {"ok-1": "rendered", "stuck": "failed", "ok-2": "rendered"}
    failure, = result.report["failures"]
    assert "timed out after 2s" in failure["error"]


def test_preview_first_starts_every_branch_opening_before_the_rest(ray_cluster, tmp_path):
    log = tmp_path / "starts"
    log.mkdir()
    use(SleepBackend("sleep-preview", per_frame_s=0.002, log_dir=str(log)))
    s = fan_story("sleep-preview", n_branches=3, chain=3)
    result = render_story(s, opts(tmp_path, max_workers=1, preview_first=True))
    assert result.exit_code == 0
    from orchestrator.plan.expand import expand

    plan = expand(s)
    started = sorted(plan.tasks, key=lambda t: start_trace(log, t.key)[0])
    # root (the opening) and each branch's own first segment b0..b2 come before the end segment
    preview = {"root", "b0", "b1", "b2"}
    order = [t.segment for t in started]
    last_preview = max(i for i, seg in enumerate(order) if seg in preview)
    assert all(seg in preview for seg in order[: last_preview + 1]), order


@pytest.mark.parametrize(("kind", "message"), [
    ("UnloadableBackend", "cannot be loaded on this worker"),  # unpickling fails on the worker
    ("NoRendererBackend", "found no device to render on"),  # its renderer cannot be made there
])
def test_actors_that_cannot_start_end_the_run_with_their_error(ray_cluster, tmp_path, kind,
                                                               message):
    import backends_for_tests

    from orchestrator.run.driver import WorkerStartError

    name = f"sleep-{kind.lower()}"
    use(getattr(backends_for_tests, kind)(name))
    s = story([{"id": "only", "shots": [shot("a"), shot("b")]}], renderer={"backend": name})
    with pytest.raises(WorkerStartError) as e:
        render_story(s, opts(tmp_path))
    assert "failed to start" in str(e.value)
    assert message in str(e.value)
    assert list(open_store(str(tmp_path / "store")).iter_action_keys()) == []  # no shot rendered


def test_start_workers_brings_the_pool_up_before_run_and_run_uses_it(ray_cluster, tmp_path):
    from orchestrator.plan.expand import expand
    from orchestrator.run.driver import Scheduler

    use(SleepBackend("sleep-warm", per_frame_s=0.01, gpus=1))
    s = fan_story("sleep-warm", n_branches=4, chain=2)
    store_url = str(tmp_path / "store")
    used: set[int] = set()

    class Workers:  # a listener noting which actor each task started on
        def task_started(self, run, task, worker):
            used.add(worker.id)

        def __getattr__(self, name):
            return lambda *a, **k: None

    sched = Scheduler(expand(s), open_store(store_url), store_url=store_url,
                      options=SchedulerOptions(max_workers=3), progress=Workers())
    sched.lookup()
    assert sched.start_workers(timeout_s=120) == 3
    started = {w.id: w.node for w in sched.workers.values()}
    assert all(w.ready and w.task is None for w in sched.workers.values())
    assert sched.counts()["rendered"] == 0  # nothing dispatched yet

    sched.run()
    assert sched.counts()["rendered"] == len(sched.runs)
    # every task ran on an actor that was up before run() began: none was started during it
    assert {r.node for r in sched.runs.values()} <= set(started.values())
    assert used and used <= set(started)


def test_start_workers_refuses_an_unplaceable_plan_and_leaves_no_actor(ray_cluster, tmp_path):
    from orchestrator.plan.expand import expand
    from orchestrator.run.driver import Scheduler

    use(SleepBackend("sleep-huge", gpus=64))
    s = story([{"id": "only", "shots": [shot("a")]}], renderer={"backend": "sleep-huge"})
    store_url = str(tmp_path / "store")
    sched = Scheduler(expand(s), open_store(store_url), store_url=store_url)
    sched.lookup()
    with pytest.raises(Unplaceable):
        sched.start_workers(timeout_s=30)
    assert sched.workers == {}


def test_actors_that_keep_failing_after_one_came_up_stop_being_started(ray_cluster, tmp_path,
                                                                       monkeypatch):
    """After a first actor came up, a node whose actors always fail to start is not retried
    forever: past the bound no more actors are started and the ones up finish the work."""
    from backends_for_tests import OneGoodActorBackend
    from cachetools import wait_actors_gone

    import orchestrator.run.pool as pool

    # the farm's warm actors from earlier tests would hold the slots this run's actors need
    wait_actors_gone()

    monkeypatch.setattr(pool, "MAX_POOL_START_FAILURES", 3)
    log = tmp_path / "log"
    log.mkdir()
    use(OneGoodActorBackend("sleep-onegood", per_frame_s=0.25, log_dir=str(log), gate=3))
    s = story([{"id": "only", "shots": [shot(f"s{i}") for i in range(6)]}],
              renderer={"backend": "sleep-onegood"})
    # actors of this run's own (farm=False): the bound is patched in this process, and the
    # farm's pool (the same WorkerPool) runs in the farm actor's
    result = render_story(s, opts(tmp_path, farm=False))
    assert result.exit_code == 0
    assert result.report["totals"]["rendered"] == 6
    # the bound, plus the starts already under way when it was reached: at most one an actor
    # slot of the cluster (6 CPUs) beside the good actor's
    assert 3 <= len(list(log.glob("failed-*"))) <= 3 + 5
