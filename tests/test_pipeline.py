"""Pipelined dispatch on a real Ray cluster: each renderer actor holds the next task before
its running one ends, and a queued task that has not started can be taken back and run
elsewhere (the policy's side is in test_policy.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from backends_for_tests import GateBackend, SlowStartBackend, use
from storybuild import shot, story

from orchestrator.plan.expand import expand
from orchestrator.run.driver import Scheduler, SchedulerOptions
from orchestrator.store import open_store

pytestmark = pytest.mark.cluster


class _Watch:
    """A listener that notes the most calls any worker held at once, at each loop turn."""

    def __init__(self) -> None:
        self.most = 0
        self.turns = 0

    def start(self, sched) -> None: ...
    def task_started(self, sched, run, w) -> None: ...
    def task_finished(self, sched, run) -> None: ...
    def branch_finished(self, sched, b) -> None: ...
    def note(self, text: str) -> None: ...
    def tick(self, sched) -> None:
        self.most = max([self.most, *(len(w.calls) for w in sched.workers.values())])
        self.turns += 1

    def finish(self, sched) -> None: ...
    def stop(self) -> None: ...


def _one_segment(backend: str, shots: list[str]):
    return expand(story([{"id": "only", "shots": [shot(s) for s in shots]}],
                        renderer={"backend": backend}))


@pytest.mark.parametrize("depth", [1, 2])
def test_an_actor_holds_up_to_queue_depth_tasks(ray_cluster, tmp_path, depth):
    """One worker; its first render is held until the driver has looked at its worker a few
    times: the driver sends the next shots as far as the queue depth allows, not further."""
    gate = tmp_path / "gate"
    gate.mkdir()
    use(GateBackend("gate-depth", gate_dir=str(gate), hold=frozenset({"s0"})))
    plan = _one_segment("gate-depth", [f"s{i}" for i in range(6)])
    url = str(tmp_path / "store")
    watch = _Watch()
    sched = Scheduler(plan, open_store(url), store_url=url, progress=watch,
                      options=SchedulerOptions(max_workers=1, queue_depth=depth,
                                               farm=False))

    def open_after_a_few_turns() -> None:
        deadline = time.monotonic() + 120
        first = next(t for t in plan.tasks if t.shot == "s0")
        while not (gate / f"{first.key}.started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = watch.turns
        while watch.turns < seen + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        (gate / "open").touch()

    opener = threading.Thread(target=open_after_a_few_turns, daemon=True)
    opener.start()
    sched.lookup()
    sched.run()
    opener.join()
    assert {r.status for r in sched.runs.values()} == {"rendered"}
    assert watch.most == depth


def test_a_task_queued_behind_a_long_render_runs_on_a_worker_that_falls_idle(ray_cluster,
                                                                               tmp_path):
    """The first shot's render holds until every other shot has rendered. Two workers, two
    tasks each: one short shot is queued behind the held one at once; only if it is taken
    back and run on the other worker can every short shot finish while the first is held."""
    gate = tmp_path / "gate"
    gate.mkdir()
    use(GateBackend("gate-steal", gate_dir=str(gate), hold=frozenset({"held"})))
    short = [f"short{i}" for i in range(5)]
    plan = _one_segment("gate-steal", ["held", *short])
    url = str(tmp_path / "store")
    store = open_store(url)
    keys = [t.key for t in plan.tasks if t.shot != "held"]
    opened_early: list[bool] = []

    def open_when_the_short_shots_are_in() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(store.get_actions(keys).values()):
                opened_early.append(True)
                break
            time.sleep(0.1)
        (gate / "open").touch()

    sched = Scheduler(plan, store, store_url=url,
                      options=SchedulerOptions(max_workers=2, queue_depth=2, farm=False))
    sched.lookup()
    opener = threading.Thread(target=open_when_the_short_shots_are_in, daemon=True)
    opener.start()
    sched.run()
    opener.join()
    assert {r.status for r in sched.runs.values()} == {"rendered"}
    assert opened_early == [True], "a short shot waited behind the held render"
    assert sched.recalls >= 1


def test_an_actor_gives_back_a_queued_call_but_not_a_started_one(ray_cluster, tmp_path):
    import ray

    from actors.renderer import ACTOR_OPTIONS, CONTROL, ShotRenderer

    gate = tmp_path / "gate"
    gate.mkdir()
    backend = use(GateBackend("gate-recall", gate_dir=str(gate)))
    plan = _one_segment("gate-recall", ["first", "second"])
    first, second = plan.tasks
    url = str(tmp_path / "store")
    actor = (ray.remote(**ACTOR_OPTIONS)(ShotRenderer)
             .options(max_concurrency=1, num_cpus=1).remote(url, None, backend))
    ray.get(actor.info.remote())
    a = actor.render.remote(first, None, None, "job:1")
    b = actor.render.remote(second, None, None, "job:2")
    deadline = time.monotonic() + 60
    while not (gate / f"{first.key}.started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    recall = actor.recall.options(concurrency_group=CONTROL)
    assert ray.get(recall.remote("job:1"), timeout=30) is False  # running: it runs to its end
    assert ray.get(recall.remote("job:2"), timeout=30) is True  # answered while job:1 runs
    (gate / "open").touch()
    assert ray.get(a).key == first.key
    assert ray.get(b) is None
    store = open_store(url)
    assert store.get_actions([first.key, second.key]) == {
        first.key: store.get_action(first.key), second.key: None}
    assert not Path(gate, f"{second.key}.started").exists()
    ray.kill(actor)


@pytest.mark.parametrize("farm", [True, False], ids=["farm", "own-actors"])
def test_shots_render_on_the_first_actor_up_while_the_others_still_start(ray_cluster, tmp_path,
                                                                         farm):
    """Actors start together and each is used as soon as it is up: with every actor but the
    first held in its start-up, the first one renders shots meanwhile."""
    from orchestrator.run.farm import kill_farm

    kill_farm()  # no warm actor of an earlier test: this one's start from nothing
    gate = tmp_path / "gate"
    gate.mkdir()
    name = "slow-start-farm" if farm else "slow-start-own"
    use(SlowStartBackend(name, str(gate), per_frame_s=0.01))
    plan = _one_segment(name, [f"s{i}" for i in range(6)])
    url = str(tmp_path / "store")
    store = open_store(url)
    rendered_first: list[int] = []

    def open_once_shots_are_in() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = sum(1 for r in store.get_actions([t.key for t in plan.tasks]).values() if r)
            if done >= 2:
                rendered_first.append(done)
                break
            time.sleep(0.1)
        (gate / "open").touch()

    sched = Scheduler(plan, store, store_url=url,
                      options=SchedulerOptions(max_workers=3, farm=farm))
    sched.lookup()
    opener = threading.Thread(target=open_once_shots_are_in, daemon=True)
    opener.start()
    sched.run()
    opener.join()
    kill_farm()
    assert {r.status for r in sched.runs.values()} == {"rendered"}
    assert rendered_first, "no shot rendered until every actor was up"
