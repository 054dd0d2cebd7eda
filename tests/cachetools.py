"""Helpers for the cache, integrity and resume tests: stories, CLI calls, store inspection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

from actors.media import probe
from orchestrator.cli import main
from orchestrator.store import sha256_file

TESTS = Path(__file__).resolve().parent
ENTRY = TESTS / "render_entry.py"


def run_cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def fork_story(name: str, backend: str = "previz", *, b_prompt: str = "the back door",
               extra_a: int = 0) -> dict:
    """intro (2 shots, the 2nd continuing the 1st) -> choice -> a | b: two branches."""
    return story_dict(
        [
            {"id": "intro", "shots": [shot("hall"), shot("stairs", continuity="previous")],
             "choice": {"prompt": "Which way?", "options": [
                 {"label": "left", "next": "a"}, {"label": "right", "next": "b"}]}},
            {"id": "a", "shots": [shot("lamp"), *[shot(f"a{i}") for i in range(extra_a)]]},
            {"id": "b", "shots": [shot("door", b_prompt), shot("yard", continuity="previous")]},
        ],
        name=name, renderer={"backend": backend},
    )


def save(tmp: Path, doc: dict, fname: str = "story.yaml") -> str:
    return str(write_story(tmp / fname, doc))


def plan_json(story: str, store: str) -> dict[str, Any]:
    code, stdout, stderr = run_cli("plan", story, "--store", store, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def render(story: str, store: str, out: Path, *extra: str) -> dict[str, Any]:
    code, _, stderr = run_cli("render", story, "--store", store, "--out", str(out), "--quiet",
                              *extra)
    assert code == 0, stderr
    return json.loads((out / "report.json").read_text())


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in report["tasks"]}


def masters(out: Path) -> dict[str, str]:
    return {b["name"]: b["master"]["sha256"]
            for b in json.loads((out / "branches.json").read_text())}


def check_masters(out: Path, plan: dict[str, Any]) -> None:
    """Every master file: frames = the sum of its tasks' frames, bytes = its digest."""
    frames = {t["id"]: t["frames"] for t in plan["task_list"]}
    branches = json.loads((out / "branches.json").read_text())
    assert len(branches) == len(plan["branches"])
    for b in branches:
        path = out / b["master"]["path"]
        assert probe(path).frames == sum(frames[t] for t in b["tasks"]) == b["master"]["frames"]
        assert sha256_file(path)[0] == b["master"]["sha256"]


def cli_process(args: list[str], *, address: str, per_frame_s: float, log: Path,
                ) -> subprocess.Popen:
    """The real CLI in a subprocess (with the sleep backend), joining the test cluster."""
    env = dict(os.environ, RAY_ADDRESS=address,
               REELFARM_TEST_SLEEP_PER_FRAME=str(per_frame_s), PYTHONUNBUFFERED="1")
    f = open(log, "wb")  # noqa: SIM115 - closed by the child's exit
    try:
        return subprocess.Popen([sys.executable, str(ENTRY), *args], stdout=f,
                                stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    finally:
        f.close()


def local_records(store: Path, keys: set[str]) -> set[str]:
    """The keys among ``keys`` that have an action record in a local store."""
    return {k for k in keys if (store / "ac" / f"{k}.json").exists()}


def wait_for(pred, timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def wait_actors_gone(timeout: float = 60.0) -> None:
    """Every CPU of the test cluster is free again: the renderer actors of a killed or
    interrupted driver are gone, and can no longer write to the store. The farm keeps idle
    actors warm for the next job: it is stopped first, and its actors with it."""
    import ray

    from orchestrator.run.farm import kill_farm

    kill_farm()

    def free() -> bool:
        return ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0)

    wait_for(free, timeout, "the cluster's CPUs to be free", every=0.2)
