"""Cache lookup benchmark: a fully cached 1,000-shot story in an S3 store, against plain HEADs.

Starts moto's S3 server (``python -m moto.server``, in its own process) on 127.0.0.1 and a
local Ray, generates a story of ``--shots`` shots (a chain of segments ending in a choice
between two endings, so two masters), renders it once into ``s3://<bucket>/store`` with a
synthetic backend (one solid 64x64 frame per shot: the point is the cache, not the pixels),
then measures, in one run and against the same server:

* ``plan_s``: ``reelfarm plan --json`` (manifest load, expansion, every render key, the batched
  record lookup and blob existence checks), in process;
* ``noop_render_s``: ``reelfarm render`` of the same story, now fully cached: nothing renders
  and no master is assembled (run record, masters published to a local directory);
* ``sequential_head_s``: the same number of HEAD requests as the story has tasks, one after
  the other, with a plain boto3 client (what a per-task existence check in sequence costs);
* ``ratio``: ``sequential_head_s / plan_s`` and ``sequential_head_s / noop_render_s`` (above 1:
  the whole cached plan costs less than one sequential request per task);
* ``lookup_requests``: the requests of the plan's cache lookup (``lookup``), beside those of
  the same lookup done object by object (``per_object``: a GET per record, a HEAD per blob).

Each measurement is repeated ``--repeat`` times; the JSON has every sample and the median.
Note that moto is a Python server sharing the machine's cores with the client: a real S3 or
MinIO serves concurrent requests in parallel, which favours reelfarm's batched lookups more.

    python benchmarks/cache.py                 # 1,000 shots
    python benchmarks/cache.py --shots 200     # quicker

Prints one JSON document on stdout; progress goes to stderr. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from actors.backends import Backend, Renderer, Resources, register_backend  # noqa: E402


class _Solid(Renderer):
    def render(self, task, condition):
        frame = np.full((task.profile.height, task.profile.width, 3),
                        int(task.key[:2], 16), np.uint8)
        for _ in range(task.frames):
            yield frame

    def loaded_models(self) -> list[str]:
        return []


class SolidBackend(Backend):
    """One solid frame a shot, its grey level from the render key. Costs only the encode."""

    name = "solid"
    version = "1"

    def key_params(self, task) -> dict[str, Any]:
        return {}

    def resources(self, renderer) -> Resources:
        return Resources(num_cpus=1.0)

    def seconds_per_frame(self, renderer, profile) -> float:
        return 0.01

    def create_renderer(self) -> Renderer:
        return _Solid()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def story_doc(shots: int, per_segment: int = 100) -> dict[str, Any]:
    """A chain of segments; the last one chooses between two one-shot endings."""
    body = shots - 2
    n_seg = max(1, -(-body // per_segment))
    segments = []
    for i in range(n_seg):
        lo, hi = i * body // n_seg, (i + 1) * body // n_seg
        seg: dict[str, Any] = {
            "id": f"s{i}",
            "shots": [{"id": f"shot-{j}", "prompt": f"shot number {j}", "duration": 0.125}
                      for j in range(lo, hi)],
        }
        if i + 1 < n_seg:
            seg["next"] = f"s{i + 1}"
        else:
            seg["choice"] = {"prompt": "?", "options": [{"label": "left", "next": "end-a"},
                                                        {"label": "right", "next": "end-b"}]}
        segments.append(seg)
    for end in ("end-a", "end-b"):
        segments.append({"id": end, "shots": [{"id": f"{end}-shot", "prompt": end,
                                                "duration": 0.125}]})
    return {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": "cache-bench", "title": f"{shots} cached shots"},
        "spec": {"profile": {"width": 64, "height": 64, "fps": 8},
                 "renderer": {"backend": "solid"}, "seed": 1, "start": "s0",
                 "segments": segments},
    }


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's S3 server in its own process (as a real server would be), on 127.0.0.1."""
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto's server did not start") from None
            time.sleep(0.2)


def bench_bucket(endpoint: str) -> Any:
    """The environment every process of a benchmark uses for the S3 server at ``endpoint``
    (throwaway credentials, no profile or metadata lookups), and a client with the bucket
    ``bench`` made."""
    import boto3
    from botocore.config import Config

    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}))
    client.create_bucket(Bucket="bench")
    return client


def count_lookup_requests(doc: dict[str, Any], store_url: str) -> dict[str, int]:
    """Requests of the cache lookup of the cached story, and of the same lookup object by
    object (what it cost before listings and the run record's copies of the records)."""
    from orchestrator.run.driver import Scheduler
    from orchestrator.run.render import plan_story
    from orchestrator.spec.manifest import Story
    from orchestrator.store.s3 import S3Store

    store = S3Store(store_url)
    plan = plan_story(Story.model_validate(doc), store)
    n0 = store.requests
    sched = Scheduler(plan, store, store_url=store_url)
    sched.lookup()
    assert all(r.status == "cached" for r in sched.runs.values())
    lookup = store.requests - n0
    one_by_one = S3Store(store_url, list_threshold=1 << 30)  # a HEAD per blob
    records = one_by_one.get_actions([t.key for t in plan.tasks])
    one_by_one.has_blobs([o for r in records.values() if r for o in r.outputs.values()])
    return {"tasks": len(plan.tasks), "lookup": lookup, "per_object": one_by_one.requests}


def timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import ray
    from click.testing import CliRunner

    from orchestrator.cli import main as cli
    from orchestrator.store import open_store
    from orchestrator.store.base import blob_path

    server, endpoint = start_moto()
    client = bench_bucket(endpoint)
    store_url = "s3://bench/store"
    register_backend(SolidBackend())
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    runner = CliRunner()

    def invoke(*argv: str) -> tuple[int, str]:
        r = runner.invoke(cli, list(argv), catch_exceptions=False)
        return r.exit_code, r.stdout

    try:
        with tempfile.TemporaryDirectory(prefix="reelfarm-cache-bench-") as tmp:
            story = Path(tmp) / "story.yaml"
            story.write_text(yaml.safe_dump(story_doc(args.shots), sort_keys=False))
            log(f"rendering {args.shots} shots into {store_url} on moto at {endpoint} ...")
            first_s, (code, _) = timed(lambda: invoke(
                "render", str(story), "--store", store_url, "--out", f"{tmp}/out0", "--quiet"))
            if code != 0:
                raise SystemExit(f"the first render exited {code}")
            first = json.loads((Path(tmp) / "out0" / "report.json").read_text())
            tasks = first["totals"]["unique"]
            clips = [t["clip"] for t in first["tasks"]]
            keys = [open_store(store_url).key_for(blob_path(d)) for d in clips]

            lookup_requests = count_lookup_requests(story_doc(args.shots), store_url)
            log(f"lookup requests: {lookup_requests}")
            plan_s, noop_s, head_s = [], [], []
            doc: dict[str, Any] = {}
            for i in range(args.repeat):
                log(f"round {i + 1}/{args.repeat}: plan, no-op render, {tasks} sequential HEADs")
                t, (code, out) = timed(lambda: invoke("plan", str(story), "--store", store_url,
                                                      "--json"))
                doc = json.loads(out)
                assert code == 0 and doc["tasks"]["to_render"] == 0, doc["tasks"]
                plan_s.append(t)
                t, (code, _) = timed(lambda i=i: invoke(
                    "render", str(story), "--store", store_url, "--out", f"{tmp}/out{i + 1}",
                    "--quiet"))
                report = json.loads((Path(tmp) / f"out{i + 1}" / "report.json").read_text())
                assert code == 0 and report["totals"]["rendered"] == 0
                assert report["totals"]["masters_assembled"] == 0
                noop_s.append(t)
                t0 = time.perf_counter()
                for k in keys:
                    client.head_object(Bucket="bench", Key=k)
                head_s.append(time.perf_counter() - t0)
    finally:
        ray.shutdown()
        server.terminate()
        server.wait(timeout=30)

    med = statistics.median
    result = {
        "benchmark": "cache",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "server": "moto server (own process) on 127.0.0.1, same machine",
        "story": {"shots": args.shots, "unique_tasks": tasks, "masters": len(doc["branches"])},
        "first_render_s": round(first_s, 3),
        "plan_s": round(med(plan_s), 3),
        "noop_render_s": round(med(noop_s), 3),
        "sequential_head_s": round(med(head_s), 3),
        "sequential_head_ms_per_request": round(1000 * med(head_s) / tasks, 3),
        "ratio": {
            "sequential_head_over_plan": round(med(head_s) / med(plan_s), 2),
            "sequential_head_over_noop_render": round(med(head_s) / med(noop_s), 2),
        },
        "lookup_requests": lookup_requests,
        "samples": {"plan_s": [round(x, 3) for x in plan_s],
                    "noop_render_s": [round(x, 3) for x in noop_s],
                    "sequential_head_s": [round(x, 3) for x in head_s]},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
