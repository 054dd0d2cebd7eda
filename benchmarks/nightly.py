"""Nightly benchmark: N stories as one combined job against the same stories one after another.

Starts moto's S3 server (its own process) on 127.0.0.1 and a local Ray, writes ``--stories``
story manifests to ``s3://bench/stories/``, each of ``--shots`` shots: an opening of
``--shared`` shots every story has (same prompts: the same render keys), its own shots, and a
choice between two endings (two masters a story). Then, in one run, against the same server:

* **first night** into an empty store: ``reelfarm nightly`` as one job (the default) into
  ``s3://bench/combined/``, and story by story (``NightlyOptions(combined=False)``, the night
  before stories were joined) into ``s3://bench/one-by-one/``;
* **no-op night**: the same night again over each store, now fully cached and published:
  nothing renders, nothing is assembled, nothing but the summary is written. Repeated
  ``--repeat`` times, alternating the two.

For each: seconds, renders (tasks rendered, summed over stories) and S3 requests made by the
driver (every attempt of every S3 client in this process, counted with botocore's
``before-send`` hook; renders write from the Ray workers, which are not counted), beside the
night's task count (what one request per task would cost), and the ratios one-by-one/combined.

    python benchmarks/nightly.py                                # 20 stories of 30 shots
    python benchmarks/nightly.py --stories 5 --shots 12 --repeat 1   # quicker

Prints one JSON document on stdout; progress goes to stderr. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402
from cache import SolidBackend, bench_bucket, log, start_moto  # noqa: E402

from actors.backends import register_backend  # noqa: E402


def story_doc(name: str, shots: int, shared: int) -> dict[str, Any]:
    """``shared`` opening shots every story has, its own body, a choice of two endings."""
    own = max(1, shots - shared - 2)
    segments: list[dict[str, Any]] = [
        {"id": "opening", "shots": [{"id": f"open-{j}", "prompt": f"the studio ident, part {j}",
                                     "duration": 0.125} for j in range(shared)],
         "next": "body"},
        {"id": "body", "shots": [{"id": f"shot-{j}", "prompt": f"{name}, shot {j}",
                                  "duration": 0.125} for j in range(own)],
         "choice": {"prompt": "?", "options": [{"label": "left", "next": "end-a"},
                                               {"label": "right", "next": "end-b"}]}},
        {"id": "end-a", "shots": [{"id": "a", "prompt": f"{name} ends left", "duration": 0.125}]},
        {"id": "end-b", "shots": [{"id": "b", "prompt": f"{name} ends right",
                                   "duration": 0.125}]},
    ]
    if shared == 0:
        segments = segments[1:]
    return {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": name, "title": f"{name}: {shots} shots"},
        "spec": {"profile": {"width": 64, "height": 64, "fps": 8},
                 "renderer": {"backend": "solid"}, "seed": 1, "start": segments[0]["id"],
                 "segments": segments},
    }


class Requests:
    """Every request (each attempt) sent by every S3 client made in this process."""

    def __init__(self) -> None:
        from orchestrator.store.s3 import S3Store

        self.n = 0
        self.lock = threading.Lock()
        init = S3Store.__init__

        def counted(store: Any, *a: Any, **kw: Any) -> None:
            init(store, *a, **kw)
            store.client.meta.events.register("before-send.s3", self._sent)

        S3Store.__init__ = counted  # type: ignore[method-assign]

    def _sent(self, **_: Any) -> None:
        with self.lock:
            self.n += 1


def night(prefix: str, opts: Any, requests: Requests) -> dict[str, Any]:
    from orchestrator.jobs.nightly import run_nightly

    n0 = requests.n
    t0 = time.perf_counter()
    result = run_nightly(prefix, opts)
    seconds = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"the night failed: {[(s.story, s.problems) for s in result.stories]}")
    return {
        "seconds": round(seconds, 3),
        "renders": sum(s.rendered for s in result.stories),
        "masters_assembled": sum(s.masters_assembled for s in result.stories),
        "requests": requests.n - n0,
        "statuses": sorted({s.status for s in result.stories}),
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=20)
    ap.add_argument("--shots", type=int, default=30, help="shots per story")
    ap.add_argument("--shared", type=int, default=5, help="opening shots every story shares")
    ap.add_argument("--repeat", type=int, default=3, help="no-op nights of each kind")
    args = ap.parse_args()

    import ray

    from orchestrator.jobs.nightly import NightlyOptions
    from orchestrator.run.driver import SchedulerOptions

    server, endpoint = start_moto()
    client = bench_bucket(endpoint)
    names = [f"story-{i:03d}" for i in range(args.stories)]
    for name in names:
        client.put_object(Bucket="bench", Key=f"stories/{name}.yaml", Body=yaml.safe_dump(
            story_doc(name, args.shots, args.shared), sort_keys=False).encode())
    register_backend(SolidBackend())
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    requests = Requests()

    def opts(where: str, combined: bool) -> Any:
        return NightlyOptions(store=f"s3://bench/{where}/store", out=f"s3://bench/{where}/out",
                              progress="quiet", combined=combined,
                              scheduler=SchedulerOptions(retries=0))

    kinds = {"combined": opts("combined", True), "one_by_one": opts("one-by-one", False)}
    first: dict[str, Any] = {}
    noop: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for kind in ("one_by_one", "combined"):
            log(f"first night, {kind}: {args.stories} stories of {args.shots} shots ...")
            first[kind] = night("s3://bench/stories", kinds[kind], requests)
            log(f"  {first[kind]}")
        for i in range(args.repeat):
            order = ("combined", "one_by_one") if i % 2 == 0 else ("one_by_one", "combined")
            for kind in order:
                got = night("s3://bench/stories", kinds[kind], requests)
                if got["renders"] or got["statuses"] != ["unchanged"]:
                    raise SystemExit(f"the no-op night ({kind}) was not one: {got}")
                noop[kind].append(got)
                log(f"no-op night {i + 1}/{args.repeat}, {kind}: {got}")
    finally:
        ray.shutdown()
        server.terminate()
        server.wait(timeout=30)

    med = statistics.median
    tasks = args.stories * args.shots
    unique = args.stories * (args.shots - args.shared) + args.shared
    no = {k: {"seconds": round(med(x["seconds"] for x in v), 3),
              "requests": int(med(x["requests"] for x in v)),
              "requests_per_story": round(med(x["requests"] for x in v) / args.stories, 2)}
          for k, v in noop.items()}
    result = {
        "benchmark": "nightly",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "server": "moto server (own process) on 127.0.0.1, same machine",
        "stories": args.stories,
        "shots_per_story": args.shots,
        "shared_shots": args.shared,
        "tasks": {"summed_over_stories": tasks, "unique": unique,
                  "masters": 2 * args.stories},
        "first_night": {
            **first,
            "ratio_one_by_one_over_combined": {
                "seconds": ratio(first["one_by_one"]["seconds"], first["combined"]["seconds"]),
                "requests": ratio(first["one_by_one"]["requests"],
                                  first["combined"]["requests"]),
            },
        },
        "noop_night": {
            **no,
            "one_request_per_task": tasks,
            "ratio_one_by_one_over_combined": {
                "seconds": ratio(no["one_by_one"]["seconds"], no["combined"]["seconds"]),
                "requests": ratio(no["one_by_one"]["requests"], no["combined"]["requests"]),
            },
            "ratio_per_task_over_combined_requests": ratio(tasks, no["combined"]["requests"]),
            "samples": {k: [{"seconds": x["seconds"], "requests": x["requests"]} for x in v]
                        for k, v in noop.items()},
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
