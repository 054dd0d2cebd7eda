"""Interactive delivery benchmark: package bytes and time against masters, and the player's
choice points in Chromium.

Generates a story of ``--levels`` choice points, each between two one-shot segments that
reconverge into a hub segment (whose first shot continues whichever way it was entered), so
there are ``2 ** levels`` branches (masters: all), renders it with the previz backend on a
local Ray, then measures:

* ``bytes``: the package (init + media segments, each once) against the sum of the masters'
  bytes and against the unique shots' clips (``package_vs_unique`` target: <= 1.1);
* ``seconds``: packaging every shot (cold: nothing packaged yet) against assembling every
  master, both by stream copy, both with ``--workers`` threads, clips already on local disk;
  each repeated ``--repeat`` times (median and samples);
* ``player``: ``--plays`` plays in headless Chromium (Debian's /usr/bin/chromium, Playwright),
  each clicking a random option at every choice point: the gap at each choice point on the
  video's buffered media timeline (target < 150 ms), the wait from the click to the chosen
  segment's first media segment being in the buffer (target p95 < 250 ms, local server), and
  how often the video stalled (``waiting`` events after playback started).

    python benchmarks/delivery.py                  # 6 levels: 64 branches
    python benchmarks/delivery.py --levels 4 --plays 2

Prints one JSON document on stdout; progress goes to stderr. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def log(msg: str) -> None:
    print(f"[delivery] {msg}", file=sys.stderr, flush=True)


def story_doc(levels: int, fps: int, width: int, height: int) -> dict[str, Any]:
    segments: list[dict[str, Any]] = [{
        "id": "intro",
        "shots": [{"id": "intro-1", "prompt": "Opening wide shot", "duration": 3.0},
                  {"id": "intro-2", "prompt": "Hero close-up", "duration": 2.0}],
    }]
    prev = "intro"
    for k in range(1, levels + 1):
        a, b, hub = f"a{k}", f"b{k}", f"hub{k}"
        segments[-1]["choice"] = {
            "prompt": f"Choice {k}", "default": 0,
            "options": [{"label": f"Left {k}", "next": a}, {"label": f"Right {k}", "next": b}],
        }
        segments.append({"id": a, "shots": [{"id": f"{a}-s", "prompt": f"left {k}",
                                             "duration": 2.0}], "next": hub})
        segments.append({"id": b, "shots": [{"id": f"{b}-s", "prompt": f"right {k}",
                                             "duration": 2.0}], "next": hub})
        segments.append({"id": hub, "shots": [
            {"id": f"{hub}-1", "prompt": f"hub {k}", "duration": 2.0, "continuity": "previous"},
            {"id": f"{hub}-2", "prompt": f"hub {k} wide", "duration": 1.5},
        ]})
        prev = hub
    del prev
    return {
        "apiVersion": "reelfarm/v1", "kind": "Story",
        "metadata": {"name": "delivery-bench", "title": "Delivery benchmark"},
        "spec": {"profile": {"width": width, "height": height, "fps": fps},
                 "renderer": {"backend": "previz"}, "seed": 3, "start": "intro",
                 "masters": "all", "segments": segments},
    }


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {}
    p95 = xs[min(len(xs) - 1, max(0, round(0.95 * len(xs) + 0.5) - 1))]
    return {"n": len(xs), "median": round(statistics.median(xs), 3), "p95": round(p95, 3),
            "max": round(xs[-1], 3)}


def measure_packaging(story, pristine: Path, work: Path, workers: int, repeat: int
                      ) -> tuple[list[float], list[float], Any]:
    from actors.assemble import concat_clips
    from orchestrator.delivery import _package, package_story
    from orchestrator.plan.expand import expand
    from orchestrator.store import open_store
    from orchestrator.store.base import blob_path

    pack_s, asm_s, result = [], [], None
    for i in range(repeat):
        store_dir = work / f"store-{i}"
        shutil.copytree(pristine, store_dir)
        store = open_store(str(store_dir))
        plan = expand(story, salt=store.salt)
        clips = _package.clip_refs(plan, store)
        # assembling every master, stream copy, clips read in place from the local store
        t0 = time.perf_counter()
        jobs = [([store_dir / blob_path(clips[t].sha256) for t in b.tasks],
                 work / f"masters-{i}" / f"{b.name}.mp4") for b in plan.branches]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda job: concat_clips(job[0], job[1], story.spec.profile), jobs))
        asm_s.append(time.perf_counter() - t0)
        # packaging every shot (nothing packaged yet) and publishing the site
        t0 = time.perf_counter()
        result = package_story(story, store, str(work / f"site-{i}"), workers=workers)
        pack_s.append(time.perf_counter() - t0)
        assert result.packaged == result.packages, "packaging was not cold"
        log(f"repeat {i}: assemble {asm_s[-1]:.2f}s, package {pack_s[-1]:.2f}s")
    return pack_s, asm_s, result


def measure_player(site: Path, plays: int, seed: int) -> dict[str, Any]:
    from fixtures_delivery import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    from orchestrator.delivery import serve_package

    server, url = serve_package(site, "127.0.0.1", 0)
    rng = random.Random(seed)
    gaps, waits, stalls, paths = [], [], [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for n in range(plays):
                page = browser.new_page()
                page.add_init_script("""
                  window.__stalls = 0;
                  document.addEventListener('DOMContentLoaded', () => {
                    const v = document.getElementById('video');
                    v.addEventListener('waiting',
                                       () => { if (v.currentTime > 0) window.__stalls++; });
                  });""")
                page.goto(url)
                taken = []
                while True:
                    page.wait_for_function(
                        "['ended','error'].includes(reelfarmPlayer.state) || "
                        "!document.getElementById('choice').hidden", timeout=120_000)
                    state = page.evaluate("reelfarmPlayer.state")
                    if state in ("ended", "error"):
                        break
                    opt = rng.randrange(2)
                    page.locator(f"#choice-options button[data-option='{opt}']").click()
                    taken.append(opt)
                    page.wait_for_selector("#choice", state="hidden")
                doc = page.evaluate("({m: reelfarmPlayer.metrics, s: reelfarmPlayer.state, "
                                    "e: reelfarmPlayer.error, stalls: window.__stalls})")
                if doc["s"] != "ended":
                    raise RuntimeError(f"play {n} did not end: {doc['e']}")
                gaps += [g["gap"] * 1000 for g in doc["m"]["gaps"]]
                waits += [w["ms"] for w in doc["m"]["waits"] if w["via"] == "pointer"]
                stalls.append(doc["stalls"])
                paths.append(taken)
                log(f"play {n}: options {taken}, waits "
                    f"{[round(w['ms'], 1) for w in doc['m']['waits']]} ms")
                page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"plays": plays, "paths": paths, "choice_gap_ms": summary(gaps),
            "click_to_play_ms": summary(waits), "stalls_per_play": stalls,
            "timed_out_choices": sum(len(p) for p in paths) - len(waits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--size", default="320x176")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plays", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from orchestrator.run.render import RenderOptions, render_story
    from orchestrator.spec.manifest import Story

    width, height = (int(x) for x in args.size.split("x"))
    doc = story_doc(args.levels, args.fps, width, height)
    story = Story.model_validate(doc)
    with tempfile.TemporaryDirectory(prefix="reelfarm-delivery-bench-") as tmp:
        work = Path(tmp)
        pristine = work / "store"
        log(f"rendering {2 ** args.levels} branches with previz on a local Ray")
        t0 = time.perf_counter()
        stdout = os.dup(1)
        os.dup2(2, 1)  # Ray's own warnings go to stderr: stdout carries only the JSON
        try:
            res = render_story(story, RenderOptions(store=str(pristine),
                                                    out=str(work / "render"), progress="quiet"))
            import ray

            ray.shutdown()
        finally:
            sys.stdout.flush()
            os.dup2(stdout, 1)
            os.close(stdout)
        if res.exit_code != 0:
            raise SystemExit(f"render failed: {res.report['status']}")
        render_s = time.perf_counter() - t0
        log(f"rendered in {render_s:.1f}s; packaging vs assembling, {args.repeat} times")
        pack_s, asm_s, result = measure_packaging(story, pristine, work, args.workers,
                                                  args.repeat)
        player = measure_player(work / f"site-{args.repeat - 1}", args.plays, args.seed)
        d = result.document()
        b = d["bytes"]
        out = {
            "story": {"levels": args.levels, "branches": 2 ** args.levels,
                      "unique_tasks": d["shots"], "shot_packages": d["packages"],
                      "naive_shots": res.report["totals"]["naive"],
                      "profile": f"{width}x{height}@{args.fps}"},
            "bytes": {**b,
                      "package_vs_unique": round(b["package"] / b["unique_shots"], 4),
                      "package_vs_masters": round(b["package"] / b["masters"], 4)},
            "seconds": {
                "package": {**summary(pack_s), "samples": [round(x, 3) for x in pack_s]},
                "assemble_masters": {**summary(asm_s), "samples": [round(x, 3) for x in asm_s]},
                "workers": args.workers,
                "render": round(render_s, 1),
            },
            "player": player,
            "targets": {},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
        }
        out["targets"] = {
            "package_le_1.1x_unique_shots": out["bytes"]["package_vs_unique"] <= 1.1,
            "packaging_faster_than_assembling": statistics.median(pack_s)
            < statistics.median(asm_s),
            "choice_gap_lt_150ms": player["choice_gap_ms"].get("max", 1e9) < 150,
            "click_to_play_p95_lt_250ms": player["click_to_play_ms"].get("p95", 1e9) < 250,
        }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
