"""One farm per cluster, shared by every job: priorities, fair share, warm models across jobs,
leases that come back from cancelled and dead jobs, and a farm that dies (real Ray, the session
cluster; start traces, never timings, decide the order of things)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from backends_for_tests import GateBackend, SleepBackend, start_trace, use
from storybuild import shot, story, story_dict, write_story

from orchestrator.plan.expand import expand
from orchestrator.run.driver import SchedulerOptions
from orchestrator.run.farm import get_farm, kill_farm
from orchestrator.run.render import RenderOptions, render_story

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 180  # bound on waiting for something the test needs (a loaded machine is slow)


def cli_env(**more: str) -> dict[str, str]:
    """This process's environment (the cluster's token included) for a ``reelfarm`` process."""
    return {**os.environ, **more,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def fresh_farm(ray_cluster):
    """No farm left by an earlier test: this test's jobs start one of their own."""
    kill_farm()
    wait_for(lambda: get_farm(create=False) is None, "the old farm to go")
    yield
    kill_farm()


def wait_for(cond, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def farm_status() -> dict:
    farm = get_farm(create=False)
    return ray.get(farm.status.remote()) if farm is not None else {"jobs": [], "workers": []}


def job_of(status: dict, story_name: str) -> dict | None:
    return next((j for j in status["jobs"] if j["story"] == story_name), None)


def opts(tmp: Path, name: str, **sched) -> RenderOptions:
    return RenderOptions(store=str(tmp / name / "store"), out=str(tmp / name / "out"),
                         progress="quiet", scheduler=SchedulerOptions(backoff_s=0.05, **sched))


def shots_story(name: str, n: int, backend: str, **renderer):
    return story([{"id": "only", "shots": [shot(f"{name}-{i}") for i in range(n)]}],
                 name=name, renderer={"backend": backend, **renderer})


class Job(threading.Thread):
    """A render in a thread of this process (the drivers of both jobs share it)."""

    def __init__(self, s, o: RenderOptions) -> None:
        super().__init__(daemon=True)
        self.s, self.o, self.result, self.error = s, o, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = render_story(self.s, self.o)
        except BaseException as e:  # noqa: BLE001 - re-raised by done()
            self.error = e

    def done(self):
        self.join(WAIT_S)
        assert not self.is_alive(), "the render did not finish"
        if self.error is not None:
            raise self.error
        assert self.result.exit_code == 0, self.result.report["failures"]
        return self.result


def gate_backend(tmp: Path, name: str) -> GateBackend:
    gate, log = tmp / "gate", tmp / "log"
    gate.mkdir()
    log.mkdir()
    b = GateBackend(name, gate_dir=str(gate))
    b.log_dir, b.per_frame_s, b.gpus = str(log), 0.05, 1.0  # one fake GPU each: 4 slots
    return use(b)


def gated(tmp: Path) -> set[str]:
    return {p.name.removesuffix(".started") for p in (tmp / "gate").glob("*.started")}


def hold_all_workers_then_join(tmp: Path, first: Job, second_story: str) -> None:
    """Wait until ``first`` holds every slot with renders stopped at the gate and the farm
    has told its driver which of them to give back for ``second_story``, then open the gate."""
    wait_for(lambda: len(gated(tmp)) == 4, "the first job's renders to fill the 4 GPU slots")
    j = wait_for(lambda: (s := job_of(farm_status(), second_story)) and s["want"] and s,
                 "the second job to queue")
    assert j["leases"] == 0 and j["place"] == 1  # nothing is free: it waits, next in line
    first_name = first.s.metadata.name
    before = wait_for(lambda: (f := job_of(farm_status(), first_name)) and f["returning"]
                      and f["syncs"], "the farm to revoke the first job's workers")
    # the driver applies a reply before it sends its next sync: two more syncs mean it knows
    wait_for(lambda: job_of(farm_status(), first_name)["syncs"] >= before + 2,
             "the first job's driver to hear of the revocation")
    (tmp / "gate" / "open").touch()


def starts(tmp: Path, s) -> dict[str, float]:
    return {t.key: start_trace(tmp / "log", t.key)[0] for t in expand(s).tasks}


def test_a_high_priority_job_started_second_goes_before_the_low_ones_remaining_tasks(
        fresh_farm, tmp_path):
    gate_backend(tmp_path, "gate-prio")
    low, high = shots_story("low", 10, "gate-prio"), shots_story("high", 6, "gate-prio")
    lo = Job(low, opts(tmp_path, "low", priority=10))
    wait_for(lambda: len(gated(tmp_path)) == 4, "the low job to take the 4 slots")
    first_wave = gated(tmp_path)
    hi = Job(high, opts(tmp_path, "high", priority=90))
    hold_all_workers_then_join(tmp_path, lo, "high")
    r_hi, r_lo = hi.done(), lo.done()
    assert r_hi.report["priority"] == 90 and r_lo.report["priority"] == 10
    lo_starts, hi_starts = starts(tmp_path, low), starts(tmp_path, high)
    remaining = {k: t for k, t in lo_starts.items() if k not in first_wave}
    assert len(remaining) == 6
    # every task of the high job started before any of the low job's remaining tasks
    assert max(hi_starts.values()) < min(remaining.values())


def test_equal_priorities_share_the_workers(fresh_farm, tmp_path):
    gate_backend(tmp_path, "gate-fair")
    one, two = shots_story("one", 10, "gate-fair"), shots_story("two", 10, "gate-fair")
    a = Job(one, opts(tmp_path, "one"))
    wait_for(lambda: len(gated(tmp_path)) == 4, "the first job to take the 4 slots")
    b = Job(two, opts(tmp_path, "two"))
    hold_all_workers_then_join(tmp_path, a, "two")
    a.done(), b.done()
    s1, s2 = starts(tmp_path, one), starts(tmp_path, two)
    # both progress: the second job's renders start while the first still has tasks to start,
    # and the first job's go on while the second's run
    assert min(s2.values()) < max(s1.values())
    assert min(s1.values()) < max(s2.values())
    late1 = sorted(s1.values())[4:]  # after its first, gated wave
    assert any(min(s2.values()) < t for t in late1)


def test_a_model_loaded_for_one_job_is_used_warm_by_the_next(fresh_farm, tmp_path,
                                                             ray_cluster):
    use(SleepBackend("sleep-shared-model", per_frame_s=0.01, load_s=0.3, gpus=1))
    model = {"model": "studio/model-a"}
    first = render_story(shots_story("first", 3, "sleep-shared-model", **model),
                         opts(tmp_path, "first", max_workers=1))
    loads = [t["load_seconds"] > 0 for t in first.report["tasks"]]
    assert first.exit_code == 0 and sum(loads) == 1  # loaded once, for its first shot
    warm = [w for w in farm_status()["workers"] if w["model"] == "studio/model-a"]
    assert len(warm) == 1 and warm[0]["state"] == "idle"  # kept warm after the job
    # `reelfarm farm` shows it, as a person and a program read it
    cli = [sys.executable, "-m", "orchestrator.cli", "farm", "--address", ray_cluster.address]
    r = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=WAIT_S,
                       env=cli_env())
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    shown = {w["id"]: w for w in doc["workers"]}[warm[0]["id"]]
    assert (shown["model"], shown["state"], shown["job"]) == ("studio/model-a", "idle", None)
    table = subprocess.run(cli, capture_output=True, text=True, check=True, timeout=WAIT_S,
                           env=cli_env())
    assert "studio/model-a" in table.stdout and "renderer actors" in table.stdout
    second = render_story(shots_story("second", 3, "sleep-shared-model", **model),
                          opts(tmp_path, "second", max_workers=1))
    assert second.exit_code == 0
    assert [t["load_seconds"] for t in second.report["tasks"]] == [0.0, 0.0, 0.0]
    assert {t["node"] for t in second.report["tasks"]} == {warm[0]["node"]}


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_cancelled_or_dead_job_gives_its_workers_back_at_once(fresh_farm, tmp_path,
                                                                 ray_cluster, how):
    """A job (another process, as `reelfarm render` or a Ray job) fills the cluster with renders
    that never end (their gate stays shut). A second job waits for room; stopping the first
    (SIGTERM, as `reelfarm cancel` does; SIGKILL, a driver that dies) frees it for the second."""
    gate = tmp_path / "gate"
    gate.mkdir()
    path = write_story(tmp_path / "stuck.yaml", story_dict(
        [{"id": "only", "shots": [shot(f"stuck-{i}") for i in range(12)]}], name="stuck",
        renderer={"backend": "gate"}))
    env = cli_env(REELFARM_TEST_GATE_DIR=str(gate))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "render_entry.py"), "render", str(path),
         "--address", ray_cluster.address, "--store", str(tmp_path / "stuck-store"),
         "--out", str(tmp_path / "stuck-out"), "--plain"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def full() -> bool:  # every actor it could get is up and stuck at the gate
            st = farm_status()
            j = job_of(st, "stuck")
            starting = [w for w in st["workers"] if w["state"] == "starting"]
            return bool(j and j["busy"] and j["busy"] == j["leases"]
                        and len(gated(tmp_path)) == j["busy"] and not starting)
        wait_for(full, "the stuck job to fill the cluster")
        use(SleepBackend("sleep-after-cancel", per_frame_s=0.01))
        after = Job(shots_story("after", 4, "sleep-after-cancel"), opts(tmp_path, "after"))
        wait_for(lambda: (j := job_of(farm_status(), "after")) and j["want"],
                 "the second job to queue")
        assert after.is_alive()
        proc.send_signal(getattr(signal, how))
        proc.wait(WAIT_S)
        r = after.done()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (143 if how == "SIGTERM" else -signal.SIGKILL)
    assert r.report["totals"]["rendered"] == 4
    assert not (gate / "open").exists()  # the stuck renders never ended: they were stopped
    assert job_of(farm_status(), "stuck") is None  # its leases came back


def test_a_farm_that_dies_is_replaced_and_rendered_shots_stay_cached(fresh_farm, tmp_path):
    use(SleepBackend("sleep-farm-dies", per_frame_s=0.1, gpus=1))
    s = shots_story("dies", 8, "sleep-farm-dies")
    job = Job(s, opts(tmp_path, "dies"))
    ac = tmp_path / "dies" / "store" / "ac"
    wait_for(lambda: ac.exists() and any(ac.glob("*.json")), "a first shot in the store")
    old = get_farm(create=False)
    old_id = old._actor_id.hex()
    kill_farm()
    r = job.done()  # the job goes on with a new farm
    assert r.report["totals"]["rendered"] == 8
    new = wait_for(lambda: get_farm(create=False), "a new farm")
    assert new._actor_id.hex() != old_id
    # the next job renders with the new farm, and what was rendered stays cached
    more = shots_story("dies", 9, "sleep-farm-dies")
    r2 = render_story(more, opts(tmp_path, "dies"))
    assert r2.exit_code == 0
    assert (r2.report["totals"]["cached"], r2.report["totals"]["rendered"]) == (8, 1)


def test_the_farm_command_only_reads(fresh_farm, ray_cluster):
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "farm", "--address",
                        ray_cluster.address, "--json"], capture_output=True, text=True,
                       timeout=WAIT_S, env=cli_env())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"farm": None, "jobs": [], "workers": []}
    assert get_farm(create=False) is None  # asking created none


class _OlderFarm:
    """A farm of an older reelfarm on the cluster: it answers in its own protocol."""

    def sync(self, job, report):
        return {"protocol": 1, "grant": [], "held": [], "revoke": [], "errors": [],
                "notes": [], "place": 0, "starting": 0}

    def leave(self, job, release=(), kill=()):
        return None


def test_a_driver_refuses_a_farm_that_speaks_another_protocol(fresh_farm, tmp_path):
    from orchestrator.run.driver import WorkerStartError
    from orchestrator.run.farm import NAMESPACE, PROTOCOL, farm_name

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the class, by value
    older = (ray.remote(_OlderFarm)
             .options(name=farm_name(), namespace=NAMESPACE, lifetime="detached", num_cpus=0)
             .remote())
    ray.get(older.leave.remote("nobody"))
    use(SleepBackend("sleep-old-farm", per_frame_s=0.01))
    with pytest.raises(WorkerStartError) as err:
        render_story(shots_story("old-farm", 2, "sleep-old-farm"), opts(tmp_path, "old"))
    assert f"protocol 1, this reelfarm {PROTOCOL}" in str(err.value)
    # nothing was rendered into the store for it
    assert not list((tmp_path / "old" / "store").glob("ac/*.json"))
