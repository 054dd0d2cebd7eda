"""Prometheus metrics through ``ray.util.metrics``: a ``reelfarm render`` against a Ray head
started with ``--metrics-export-port`` (``ray_head``), read back from that head's metrics
endpoint; the Grafana dashboard names only metrics the code defines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from backends_for_tests import SleepBackend, use
from storybuild import shot, story, story_dict, write_story

from orchestrator.plan.expand import expand
from orchestrator.run.metrics import METRICS, Tally, exported_names
from orchestrator.run.state import FAILED, RENDERED, RunState

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "k8s" / "grafana" / "reelfarm-dashboard.json"
REELFARM = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
POLL_S = 90  # bound on waiting for the exporter; the assertions do not depend on timing


def scrape(port: int, story: str) -> dict[str, float]:
    """Each reelfarm series of ``story`` summed over Ray's own labels (worker, session ...),
    keyed ``name{label=value,...}`` with the reelfarm labels only."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.name.startswith("ray_reelfarm_") or s.labels.get("story") != story:
                continue
            keep = {k: v for k, v in s.labels.items()
                    if k in ("story", "backend", "model", "priority", "le")}
            key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(keep.items())) + "}"
            out[key] = out.get(key, 0.0) + s.value
    return out


def poll(port: int, story: str, done) -> dict[str, float]:
    """Scrape until ``done(metrics)`` holds, within :data:`POLL_S`."""
    deadline = time.monotonic() + POLL_S
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = scrape(port, story)
        if done(got):
            return got
        time.sleep(1)
    raise AssertionError(f"the metrics did not arrive: {json.dumps(got, indent=1)}")


def series(got: dict[str, float], name: str) -> float:
    return sum(v for k, v in got.items() if k.split("{")[0] == name)


def render(ray_head, src: Path, tmp: Path, *extra: str) -> None:
    env = ray_head.client_env(RAY_ADDRESS=None)
    r = subprocess.run([*REELFARM, "render", str(src), "--store", str(tmp / "store"), "--out",
                        str(tmp / "out"), "--address", ray_head.gcs_address, "--quiet", *extra],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_render_metrics_reach_the_heads_endpoint(ray_head, tmp_path):
    name = "metered"
    src = write_story(tmp_path / "m.yaml", story_dict(
        [{"id": "a", "shots": [shot("one"), shot("two", continuity="previous"), shot("three")]}],
        name=name))
    render(ray_head, src, tmp_path)
    tags = "backend=previz,model=none,story=metered"
    got = poll(ray_head.metrics_port, name,
               lambda g: series(g, "ray_reelfarm_shots_rendered_total") == 3
               and series(g, "ray_reelfarm_queue_depth") == 0
               and "ray_reelfarm_gpu_seconds_per_video_second{story=metered}" in g)
    assert got[f"ray_reelfarm_shots_rendered_total{{{tags}}}"] == 3
    assert got[f"ray_reelfarm_render_seconds_count{{{tags}}}"] == 3
    assert got[f"ray_reelfarm_video_seconds_total{{{tags}}}"] == pytest.approx(1.5)  # 3 x 0.5 s
    assert got["ray_reelfarm_queue_depth{priority=50,story=metered}"] == 0  # at the end
    assert got["ray_reelfarm_gpu_seconds_per_video_second{story=metered}"] == 0  # previz: CPU
    assert series(got, "ray_reelfarm_shots_failed_total") == 0

    # again, one shot forced: the two others are counted as cached
    render(ray_head, src, tmp_path, "--force", "three")
    got = poll(ray_head.metrics_port, name,
               lambda g: series(g, "ray_reelfarm_shots_rendered_total") == 4
               and series(g, "ray_reelfarm_shots_cached_total") == 2)
    assert got[f"ray_reelfarm_shots_cached_total{{{tags}}}"] == 2
    assert got[f"ray_reelfarm_render_seconds_count{{{tags}}}"] == 4


def test_tally_counts_gpu_seconds_per_video_second_and_failures():
    use(SleepBackend("metric-gpu", gpus=2))
    plan = expand(story([{"id": "a", "shots": [shot("x", duration=1.0), shot("y"),
                                               shot("z")]}],
                        renderer={"backend": "metric-gpu", "model": "m1"}, name="gpu"))
    state = RunState(plan)
    x, y, z = (state.runs[t] for t in ("x", "y", "z"))
    tally = Tally("gpu")
    for run, status, seconds, load in ((x, RENDERED, 3.0, 1.5), (y, RENDERED, 1.0, 0.0),
                                       (z, FAILED, 0.0, 0.0)):
        run.status, run.seconds, run.load_seconds = status, seconds, load
        tally.finished(run)
    tags = (("backend", "metric-gpu"), ("model", "m1"), ("story", "gpu"))
    by = [(m, t, v) for m, t, v in tally.recorded]
    assert [v for m, t, v in by if m == "shots_rendered"] == [1, 1]
    assert [v for m, t, v in by if m == "shots_failed"] == [1]
    assert [v for m, t, v in by if m == "model_load_seconds"] == [1.5]  # only a load is one
    assert [v for m, t, v in by if m == "gpu_seconds"] == [6.0, 2.0]  # seconds x 2 GPUs
    assert [v for m, t, v in by if m == "video_seconds"] == [1.0, 0.5]
    # (3 + 1) s x 2 GPUs over 1.5 s of video
    assert [v for m, t, v in by if m == "gpu_seconds_per_video_second"] == [6.0, 8.0 / 1.5]
    assert {t for m, t, v in by if m != "gpu_seconds_per_video_second"} == {tags}
    tally.recorded.clear()
    tally.queue(list(state.runs.values()), priority=70)
    assert tally.recorded == [("queue_depth", (("priority", "70"), ("story", "gpu")), 0)]


def test_dashboard_uses_only_defined_metrics():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["title"] and doc["uid"] and isinstance(doc["schemaVersion"], int)
    panels = doc["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs and all(p.get("title") and p.get("type") for p in panels)
    used = {m for e in exprs for m in re.findall(r"\bray_reelfarm_\w+", e)}
    assert used <= exported_names(), used - exported_names()
    # every metric is on the dashboard
    for name in METRICS:
        names = {n for n in exported_names()
                 if re.fullmatch(f"ray_reelfarm_{name}(_total|_bucket|_count|_sum)?", n)}
        assert names & used, name
    # the datasource is a variable the importer picks, not a uid of someone's Grafana
    assert {t.get("datasource", {}).get("uid") for p in panels
            for t in p.get("targets", [])} == {"${datasource}"}
