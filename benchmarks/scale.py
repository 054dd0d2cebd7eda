"""Studio-scale benchmarks: the planner, a no-op render on S3, and masters by stream copy.

All figures go into one JSON document, each beside a baseline measured in the same run:

* ``planner``: ``load_manifest`` + ``expand`` (every render key) + the critical path, on
  generated stories of about 1,000, 10,000 and 50,000 unique tasks (``storybuild.diamond_story``:
  a chain of hubs, each a choice between one-shot options that all lead to the next hub, every
  hub shot continuing from the option before it; the number of paths is a number of hundreds of
  digits). Each size runs in its own process: seconds (wall and CPU), microseconds per task,
  peak RSS (``ru_maxrss`` after the first plan, beside the process's RSS before it), and the
  ratio to parsing the same file with libyaml alone (``yaml.load(..., CSafeLoader)``, which
  builds plain Python data and checks nothing). The ffmpeg version probe the keys name runs once
  per process, before the clock. The 50,000-task plan is above ``plan``'s default task limit
  (10,000) and is planned with the limit raised;
* ``noop_render``: ``reelfarm render`` of a fully cached story of about 10,000 unique tasks in an
  S3 store on moto's server (its own process, 127.0.0.1): seconds, CPU seconds of the render
  and of the S3 server (on a shared machine the steadier figure), S3 requests (every attempt
  the render's store sends), and the same render as its own ``reelfarm`` process with its peak
  RSS, beside what reading every action record one by one costs (one GET per task, sent
  sequentially with a plain boto3 client). The cache is filled through the store's own API:
  one shot is rendered for real by ``ShotRenderer`` (previz) and its record is stored again
  under every other task's key (the same clip, last frame and frame count: every shot is
  0.5 s at 8 fps); a first render then assembles and publishes the one master;
* ``assembly``: one master joined by ``actors.assemble.concat_clips`` (ffmpeg's concat demuxer,
  stream copy, with its probes of every clip) beside a plain file copy of the same clips' bytes
  into one file (``shutil.copyfileobj``): throughput in MB/s of master bytes, and the ratio; for
  a master of about 9 MB (100 clips) and, beside it (``large_master``), one of about 100 MB.

Planner and no-op figures carry wall and CPU seconds: on a machine shared with other work the
wall time is mostly the other work's.

    python benchmarks/scale.py                       # everything (about 10 minutes)
    python benchmarks/scale.py --only planner --sizes 1000,10000

Prints one JSON document on stdout; progress goes to stderr. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402
from storybuild import diamond_story, write_compact  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- planner --------------------------------------------------------------------------------------


def plan_child(path: str, repeat: int) -> dict[str, Any]:
    """In its own process: plan ``path`` ``repeat`` times and parse it with libyaml as often."""
    from orchestrator.plan.expand import _encoder, expand
    from orchestrator.spec.loading import load_manifest

    encoder = _encoder()  # ffmpeg's version, probed once per process
    rss_before = rss_mb()
    text = Path(path).read_text()

    def plan_once() -> tuple[float, float, Any]:
        w0, c0 = time.perf_counter(), time.process_time()
        m = load_manifest(path)
        p = expand(m.story, max_tasks=1_000_000, encoder=encoder)
        p.critical_path_seconds  # noqa: B018 - part of what plan computes
        return time.perf_counter() - w0, time.process_time() - c0, p

    wall, cpu = [], []
    t_w, t_c, p = plan_once()
    wall.append(t_w)
    cpu.append(t_c)
    rss_plan = rss_mb()
    shape = {"unique_tasks": len(p.tasks), "naive_tasks_digits": len(str(p.naive_tasks)),
             "segments": len({t.segment for t in p.tasks}), "masters": len(p.branches),
             "bytes": len(text.encode())}
    del p
    for _ in range(repeat - 1):
        t_w, t_c, _p = plan_once()
        wall.append(t_w)
        cpu.append(t_c)
    pwall, pcpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 - CSafeLoader is the safe loader
        pwall.append(time.perf_counter() - w0)
        pcpu.append(time.process_time() - c0)
    return {**shape, "plan_s": wall, "plan_cpu_s": cpu, "parse_s": pwall, "parse_cpu_s": pcpu,
            "rss_before_mb": rss_before, "peak_rss_mb": rss_plan}


def bench_planner(sizes: list[int], repeat: int, tmp: Path) -> dict[str, Any]:
    rows = []
    for n in sizes:
        path = write_compact(tmp / f"plan-{n}.yaml", diamond_story(n))
        log(f"planner: {n} tasks ({path.stat().st_size} bytes), {repeat} rounds ...")
        out = subprocess.run([sys.executable, __file__, "--plan-child", str(path),
                              "--repeat", str(repeat)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        r = json.loads(out.stdout)
        tasks = r["unique_tasks"]
        rows.append({
            "target_tasks": n,
            **{k: r[k] for k in ("unique_tasks", "naive_tasks_digits", "segments", "masters",
                                 "bytes")},
            "plan_s": med(r["plan_s"]),
            "plan_cpu_s": med(r["plan_cpu_s"]),
            "us_per_task": round(1e6 * statistics.median(r["plan_s"]) / tasks, 1),
            "cpu_us_per_task": round(1e6 * statistics.median(r["plan_cpu_s"]) / tasks, 1),
            "libyaml_parse_s": med(r["parse_s"]),
            "libyaml_parse_cpu_s": med(r["parse_cpu_s"]),
            "ratio_to_libyaml_parse": round(statistics.median(r["plan_cpu_s"])
                                            / statistics.median(r["parse_cpu_s"]), 2),
            "rss_before_plan_mb": r["rss_before_mb"],
            "peak_rss_mb": r["peak_rss_mb"],
            "samples": {k: [round(x, 4) for x in r[k]]
                        for k in ("plan_s", "plan_cpu_s", "parse_s", "parse_cpu_s")},
        })
    first, last = rows[0], rows[-1]
    return {
        "what": "load_manifest + expand (every render key) + critical path; medians",
        "rows": rows,
        "linearity_cpu_us_per_task_last_over_first": round(
            last["cpu_us_per_task"] / first["cpu_us_per_task"], 2),
    }


# -- no-op render on S3 ---------------------------------------------------------------------------


def fill_cache(store_url: str, doc: dict[str, Any]) -> tuple[int, str]:
    """Every task of ``doc`` cached in the store: one shot rendered for real, its record stored
    again under every other key (see the module's docstring). Returns (tasks, first key)."""
    from concurrent.futures import ThreadPoolExecutor

    from actors.backends import get_backend
    from actors.renderer import ShotRenderer
    from orchestrator.run.render import plan_story
    from orchestrator.spec.manifest import Story
    from orchestrator.store import open_store

    store = open_store(store_url)
    plan = plan_story(Story.model_validate(doc), store)
    assert len({t.frames for t in plan.tasks}) == 1, "every shot must have the same frames"
    first = plan.tasks[0]
    record = ShotRenderer(store_url, None, get_backend("previz")).render(first, None)
    rest = [t.key for t in plan.tasks[1:]]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put_action(record.model_copy(update={"key": k})), rest))
    return len(plan.tasks), first.key


def bench_noop_render(tasks: int, repeat: int, tmp: Path) -> dict[str, Any]:
    import ray
    from cache import bench_bucket, start_moto
    from click.testing import CliRunner

    import orchestrator.run.render as render_mod
    from orchestrator.cli import main as cli

    doc = diamond_story(tasks, hub=4, ways=16, name="noop-bench")
    story = write_compact(tmp / "noop.yaml", doc)
    server, endpoint = start_moto()
    client = bench_bucket(endpoint)
    store_url = "s3://bench/store"
    stores: list[Any] = []
    opened = render_mod.open_store

    def counting_open_store(*a: Any, **kw: Any) -> Any:
        s = opened(*a, **kw)
        stores.append(s)
        return s

    runner = CliRunner()

    cpu: dict[str, list[float]] = {"client": [], "server": []}

    def render(out: str) -> tuple[float, int, dict[str, Any]]:
        stores.clear()
        t0, c0, s0 = time.perf_counter(), time.process_time(), proc_cpu_s(server.pid)
        r = runner.invoke(cli, ["render", str(story), "--store", store_url, "--out", out,
                                "--quiet"], catch_exceptions=False)
        secs = time.perf_counter() - t0
        cpu["client"].append(time.process_time() - c0)
        cpu["server"].append(proc_cpu_s(server.pid) - s0)
        if r.exit_code != 0:
            raise SystemExit(f"render exited {r.exit_code}: {r.output[-2000:]}")
        report = json.loads((Path(out) / "report.json").read_text())
        return secs, sum(s.requests for s in stores), report

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    render_mod.open_store = counting_open_store
    try:
        log(f"noop_render: filling the cache of {tasks} tasks on moto at {endpoint} ...")
        t0 = time.perf_counter()
        n, _ = fill_cache(store_url, doc)
        fill_s = time.perf_counter() - t0
        log(f"noop_render: {n} tasks cached in {fill_s:.1f} s; first render (the master) ...")
        first_s, first_requests, first = render(str(tmp / "out0"))
        assert first["totals"]["rendered"] == 0, first["totals"]
        cpu = {"client": [], "server": []}
        secs, reqs = [], []
        for i in range(repeat):
            log(f"noop_render: round {i + 1}/{repeat}")
            s, q, report = render(str(tmp / f"out{i + 1}"))
            t = report["totals"]
            assert t["rendered"] == 0 and t["masters_assembled"] == 0, t
            secs.append(s)
            reqs.append(q)
        log("noop_render: the same render as its own process, for its peak RSS ...")
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "render", str(story), "--store",
             store_url, "--out", str(tmp / "out-proc"), "--quiet"],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
        w0, s0 = time.perf_counter(), proc_cpu_s(server.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc_s = time.perf_counter() - w0
        proc_server_cpu = proc_cpu_s(server.pid) - s0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"reelfarm render exited {proc.returncode}")
        from orchestrator.store import open_store
        from orchestrator.store.base import action_path

        at = open_store(store_url)
        keys = [at.key_for(action_path(t["key"])) for t in report["tasks"]]
        log(f"noop_render: {len(keys)} sequential GETs of the action records ...")
        t0 = time.perf_counter()
        for k in keys:
            client.get_object(Bucket="bench", Key=k)["Body"].read()
        get_s = time.perf_counter() - t0
    finally:
        render_mod.open_store = opened
        ray.shutdown()
        server.terminate()
        server.wait(timeout=30)
    return {
        "story": {"unique_tasks": n, "masters": report["totals"].get("masters")},
        "fill_cache_s": round(fill_s, 1),
        "first_render_s": round(first_s, 2),
        "first_render_requests": first_requests,
        "noop_render_s": med(secs),
        "noop_render_requests": int(statistics.median(reqs)),
        "noop_render_cpu_s": med(cpu["client"]),
        "noop_render_s3_server_cpu_s": med(cpu["server"]),
        "noop_render_own_process_s": round(proc_s, 2),
        "noop_render_own_process_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "noop_render_own_process_s3_server_cpu_s": round(proc_server_cpu, 2),
        "noop_render_own_process_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "sequential_record_gets": len(keys),
        "sequential_record_gets_s": round(get_s, 2),
        "ratio": {
            "requests_over_tasks": round(statistics.median(reqs) / n, 4),
            "sequential_gets_s_over_noop_render_s": round(get_s / statistics.median(secs), 2),
        },
        "samples": {"noop_render_s": [round(x, 3) for x in secs], "requests": reqs,
                    "cpu_s": [round(x, 3) for x in cpu["client"]],
                    "server_cpu_s": [round(x, 3) for x in cpu["server"]]},
    }


# -- assembly -------------------------------------------------------------------------------------


def bench_assembly(clips: int, uses: int, seconds: float, repeat: int, tmp: Path,
                   large_uses: int = 0) -> dict[str, Any]:
    """One master of ``clips`` distinct clips (``seconds`` each, 640x360 at 24 fps, moving noise
    so that the bytes are those of real footage, not of a flat frame), each joined ``uses``
    times in turn (a distinct clip is probed once, as assembly does for a clip that repeats);
    the plain copy copies the same files in the same order.

    With ``large_uses``, a second master of the same clips joined ``large_uses`` times each
    (``large_master``: about 100 MB at 48, as a feature's master would be, so that the fixed
    costs weigh less), measured the same way in the same run."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from actors.encode import ClipEncoder
    from orchestrator.spec.manifest import Profile

    profile = Profile(width=640, height=360, fps=24)
    frames = round(seconds * profile.fps)

    def encode(i: int) -> Path:
        rng = np.random.default_rng(i)
        base = rng.integers(0, 255, (profile.height // 8, profile.width // 8, 3), np.uint8)
        path = tmp / f"clip-{i:04d}.mp4"
        with ClipEncoder(path, profile) as enc:
            for f in range(frames):
                small = np.roll(base, f, axis=1)
                enc.write(np.repeat(np.repeat(small, 8, axis=0), 8, axis=1))
        return path

    log(f"assembly: encoding {clips} clips of {seconds} s ...")
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        distinct = list(pool.map(encode, range(clips)))
    result = _measure_assembly(distinct * uses, frames, profile, repeat, tmp)
    result = {"clips": clips * uses, "distinct_clips": clips, "clip_seconds": seconds,
              "profile": "640x360 at 24 fps", **result}
    if large_uses:
        log(f"assembly: large master, {clips} clips joined {large_uses} times each")
        large = _measure_assembly(distinct * large_uses, frames, profile, repeat, tmp)
        result["large_master"] = {"clips": clips * large_uses, "distinct_clips": clips,
                                  "clip_seconds": seconds, **large}
    return result


def _measure_assembly(paths: list[Path], frames: int, profile: Any, repeat: int, tmp: Path
                      ) -> dict[str, Any]:
    """``concat_clips(paths)`` beside a plain copy of the same files, ``repeat`` times each."""
    from actors.assemble import concat_clips

    clip_bytes = sum(p.stat().st_size for p in paths)
    asm, cp = [], []
    size = 0
    for i in range(repeat):
        log(f"assembly: round {i + 1}/{repeat} ({len(paths)} clips)")
        out = tmp / "master.mp4"
        t0 = time.perf_counter()
        info = concat_clips(paths, out, profile)
        asm.append(time.perf_counter() - t0)
        assert info.frames == len(paths) * frames, info
        size = out.stat().st_size
        out.unlink()
        t0 = time.perf_counter()
        with open(tmp / "copy.bin", "wb") as dst:
            for p in paths:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst)
        cp.append(time.perf_counter() - t0)
        (tmp / "copy.bin").unlink()
    asm_mbs = size / statistics.median(asm) / 1e6
    cp_mbs = clip_bytes / statistics.median(cp) / 1e6
    return {
        "clip_bytes": clip_bytes, "master_bytes": size,
        "stream_copy_s": med(asm), "plain_copy_s": med(cp),
        "stream_copy_mb_per_s": round(asm_mbs, 1), "plain_copy_mb_per_s": round(cp_mbs, 1),
        "ratio_stream_copy_to_plain_copy": round(asm_mbs / cp_mbs, 4),
        "samples": {"stream_copy_s": [round(x, 3) for x in asm],
                    "plain_copy_s": [round(x, 4) for x in cp]},
    }


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--noop-tasks", type=int, default=10_000)
    ap.add_argument("--assembly-clips", type=int, default=25, help="distinct clips")
    ap.add_argument("--assembly-uses", type=int, default=4, help="times each clip is joined")
    ap.add_argument("--assembly-seconds", type=float, default=4.0)
    ap.add_argument("--assembly-large-uses", type=int, default=48,
                    help="times each clip is joined in the large master (0: none)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["planner", "noop_render", "assembly"], action="append")
    ap.add_argument("--plan-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plan_child:
        print(json.dumps(plan_child(args.plan_child, args.repeat)))
        return
    only = set(args.only or ["planner", "noop_render", "assembly"])
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "benchmark": "scale",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE")
                                       * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
    }
    with tempfile.TemporaryDirectory(prefix="reelfarm-scale-") as t:
        tmp = Path(t)
        if "planner" in only:
            sizes = [int(s) for s in args.sizes.split(",")]
            result["planner"] = bench_planner(sizes, args.repeat, tmp)
        if "noop_render" in only:
            result["noop_render"] = bench_noop_render(args.noop_tasks, args.repeat, tmp)
        if "assembly" in only:
            result["assembly"] = bench_assembly(args.assembly_clips, args.assembly_uses,
                                                args.assembly_seconds, args.repeat, tmp,
                                                args.assembly_large_uses)
    result["machine"]["load_average_before_after"] = [
        [round(x, 2) for x in load_before], [round(x, 2) for x in os.getloadavg()]]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
