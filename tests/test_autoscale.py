"""Scale from zero with Ray's autoscaler: the real autoscaler, its fake multi-node provider
starting real raylets as nodes (``fixtures_autoscaling.py``), and the real ``reelfarm render``
CLI joining the cluster with ``--address``.

The cluster starts with a head of 0 CPUs and no worker node: every shot waits for a node the
autoscaler launches because the render asked for it (``ray.autoscaler.sdk.request_resources``),
and the request is withdrawn when the render ends, however it ends.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backends_for_tests import start_trace
from storybuild import shot, story_dict, write_story

from actors.media import probe

pytestmark = pytest.mark.cluster

ENTRY = Path(__file__).resolve().parent / "render_entry.py"
FPS, SHOT_S = 8, 0.5
FRAMES = int(FPS * SHOT_S)  # frames per shot


@pytest.fixture(params=["v1", "v2"])
def any_autoscaler(request):
    """The cluster with the v1 autoscaler, then with v2 (the one KubeRay runs)."""
    name = {"v1": "autoscaling_cluster", "v2": "autoscaling_cluster_v2"}[request.param]
    return request.getfixturevalue(name)


def forked_story(renderer: dict, name: str) -> dict:
    """An opening of two shots, then a choice of two one-shot endings: 4 tasks, 2 masters."""
    segs = [
        {"id": "open", "shots": [shot("o1", duration=SHOT_S),
                                 shot("o2", duration=SHOT_S, continuity="previous")],
         "choice": {"options": [{"label": "left", "next": "left"},
                                {"label": "right", "next": "right"}]}},
        {"id": "left", "shots": [shot("l1", duration=SHOT_S)]},
        {"id": "right", "shots": [shot("r1", duration=SHOT_S)]},
    ]
    return story_dict(segs, name=name, renderer=renderer,
                      profile={"width": 64, "height": 64, "fps": FPS})


def render(cluster, tmp: Path, doc: dict, *args: str, **env: str):
    """``reelfarm render`` on the autoscaling cluster. The farm's renderer actors exit after
    2 s without work (``--idle-timeout``), so the autoscaler may then remove their nodes."""
    path = write_story(tmp / f"{doc['metadata']['name']}.yaml", doc)
    return cluster.run(
        [sys.executable, str(ENTRY), "render", str(path), "--address", cluster.address,
         "--store", str(tmp / "store"), "--out", str(tmp / "out"), "--plain",
         "--idle-timeout", "2", *args],
        REELFARM_TEST_SLEEP_PER_FRAME="0.02", **env)


def worker_nodes(status: dict) -> list[dict]:
    """Live nodes that can run a renderer actor (the head has no CPU)."""
    return [n for n in status["nodes"] if n["alive"] and n["resources"].get("CPU", 0) > 0]


def back_to_zero(cluster, within_s: float = 240.0) -> dict:
    """Wait until the autoscaler has removed every worker node: the farm's actors exit after
    their idle timeout, then the autoscaler's own (6 s) removes the idle nodes."""
    deadline = time.monotonic() + within_s
    while True:
        st = cluster.status()
        if not worker_nodes(st):
            return st
        assert time.monotonic() < deadline, f"worker nodes left: {worker_nodes(st)}"
        time.sleep(2)


def check_masters(out: Path) -> list[dict]:
    branches = json.loads((out / "branches.json").read_text())
    assert len(branches) == 2
    for b in branches:
        info = probe(out / b["master"]["path"])
        assert info.frames == b["master"]["frames"] == FRAMES * len(b["tasks"]) == 3 * FRAMES
    return branches


def run_record(store: Path, story: str) -> dict:
    records = list((store / "runs" / story).glob("*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def test_a_previz_story_scales_a_cluster_up_from_zero_and_withdraws_its_demand(
        autoscaling_cluster, tmp_path):
    before = back_to_zero(autoscaling_cluster)
    known = {n["id"] for n in before["nodes"]}
    assert before["requests"] == []
    r = render(autoscaling_cluster, tmp_path, forked_story({"backend": "previz"}, "asprev"),
               "--max-workers", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    # asked for one bundle per actor, capped by --max-workers, while no node could hold one
    assert "waiting for 2 × {CPU: 1} from the autoscaler" in r.stderr
    check_masters(tmp_path / "out")
    after = autoscaling_cluster.status()
    launched = [n for n in after["nodes"] if n["id"] not in known]
    assert launched and all(n["resources"].get("CPU") == 2 for n in launched), launched
    assert after["requests"] == []  # withdrawn: the cluster may scale back to zero
    record = run_record(tmp_path / "store", "asprev")
    assert record["status"] == "succeeded" and record["waiting_for"] is None
    back_to_zero(autoscaling_cluster)


def test_a_fake_gpu_story_gets_gpu_nodes_from_the_autoscaler(any_autoscaler, tmp_path):
    autoscaling_cluster = any_autoscaler
    before = back_to_zero(autoscaling_cluster)
    known = {n["id"] for n in before["nodes"]}
    traces = tmp_path / "starts"
    traces.mkdir()
    doc = forked_story({"backend": "sleep", "gpus": 1}, "asgpu")
    r = render(autoscaling_cluster, tmp_path, doc, "--max-workers", "2",
               REELFARM_TEST_SLEEP_LOG_DIR=str(traces))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "waiting for 2 × {CPU: 1, GPU: 1} from the autoscaler" in r.stderr
    check_masters(tmp_path / "out")
    after = autoscaling_cluster.status()
    nodes = {n["id"]: n for n in after["nodes"]}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    ran_on = {start_trace(traces, t["key"])[1] for t in report["tasks"]}
    # every shot ran on a GPU node the autoscaler launched for this render
    assert ran_on and not ran_on & known
    assert all(nodes[n]["resources"].get("GPU") == 1 for n in ran_on), ran_on
    assert after["requests"] == []


def test_the_capacity_timeout_fails_the_run_with_a_finalised_record(autoscaling_cluster,
                                                                    tmp_path):
    back_to_zero(autoscaling_cluster)
    # The autoscaler stops acting (a cloud out of capacity): the one node type that fits
    # ({CPU: 1, big: 1}) is never launched.
    assert autoscaling_cluster.ask("freeze")["monitors"] == 1
    try:
        doc = forked_story({"backend": "sleep", "resources": {"big": 1}}, "asbig")
        r = render(autoscaling_cluster, tmp_path, doc, "--capacity-timeout", "3")
        status = autoscaling_cluster.status()
    finally:
        autoscaling_cluster.ask("thaw")
    assert r.returncode == 1, r.stderr[-3000:]
    assert "--capacity-timeout" in r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    record = run_record(tmp_path / "store", "asbig")
    for doc_ in (report, record):
        assert doc_["status"] == "failed"
        assert doc_["waiting_for"] == "4 × {CPU: 1, big: 1} from the autoscaler"
        assert any("--capacity-timeout" in e for e in doc_["errors"])
        assert {t["status"] for t in doc_["tasks"]} <= {"ready", "pending"}
    assert status["requests"] == []  # withdrawn when the run failed


def test_a_plan_no_node_type_fits_is_refused_up_front(any_autoscaler, tmp_path):
    autoscaling_cluster = any_autoscaler
    doc = forked_story({"backend": "sleep", "gpus": 2}, "astoobig")
    r = render(autoscaling_cluster, tmp_path, doc)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "cannot place the plan on this cluster" in r.stderr
    assert "nor does any node type the autoscaler can launch" in r.stderr
    assert "gpu {CPU: 1, GPU: 1}, up to 2" in r.stderr
    assert autoscaling_cluster.status()["requests"] == []  # nothing was asked for


def test_an_interrupted_wait_withdraws_the_demand_and_finalises_the_record(
        autoscaling_cluster, tmp_path):
    back_to_zero(autoscaling_cluster)
    assert autoscaling_cluster.ask("freeze")["monitors"] == 1
    try:
        doc = forked_story({"backend": "sleep", "resources": {"big": 1}}, "asstop")
        path = write_story(tmp_path / "asstop.yaml", doc)
        proc = autoscaling_cluster.popen(
            [sys.executable, str(ENTRY), "render", str(path), "--address",
             autoscaling_cluster.address, "--store", str(tmp_path / "store"), "--out",
             str(tmp_path / "out"), "--plain"])
        seen = []
        for line in proc.stderr:  # until it says what it waits for (the request is out)
            seen.append(line)
            if "from the autoscaler" in line:
                break
        asked = autoscaling_cluster.status()["requests"]
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
        status = autoscaling_cluster.status()
    finally:
        autoscaling_cluster.ask("thaw")
    assert proc.returncode == 130, "".join(seen) + rest
    assert asked == [{"CPU": 1, "big": 1}] * 4  # what it asked for while it waited
    assert status["requests"] == []  # and withdrew when interrupted
    record = run_record(tmp_path / "store", "asstop")
    assert record["status"] == "interrupted"


def test_submit_passes_the_capacity_timeout_to_the_jobs_render(ray_head, tmp_path):
    path = write_story(tmp_path / "one.yaml", story_dict(
        [{"id": "only", "shots": [shot("a", duration=SHOT_S)]}], name="one",
        profile={"width": 64, "height": 64, "fps": FPS}))
    reelfarm = str(Path(sys.executable).with_name("reelfarm"))
    out = tmp_path / "out"

    def cli(*args: str):
        return subprocess.run([reelfarm, *args], env=ray_head.env, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    r = cli("submit", str(path), "--store", str(tmp_path / "store"), "--out", str(out),
            "--capacity-timeout", "120", "--wait")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(cli("status", r.stdout.strip(), "--json").stdout)
    argv = shlex.split(doc["entrypoint"])
    assert argv[argv.index("--capacity-timeout") + 1] == "120"
    assert probe(out / "masters" / "only.mp4").frames == FRAMES
