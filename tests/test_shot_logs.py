"""Shot logs and posters: what a render prints is kept in the store as the shot's log, and
read back with ``reelfarm logs ID --shot SHOT`` after the Ray cluster that rendered is gone.

The renderer is exercised twice: in this process (no Ray: the capture of file descriptors,
warnings, logging and tracebacks, the poster), and in a ``reelfarm render`` subprocess that
starts a Ray of its own and shuts it down when it exits, before the CLI reads the logs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from backends_for_tests import NoisyBackend, use
from cachetools import ENTRY, run_cli
from PIL import Image
from storybuild import shot, story, story_dict, write_story

from actors.renderer import ShotFailed, ShotRenderer
from orchestrator.plan.expand import expand
from orchestrator.store import open_store
from orchestrator.store.base import blob_path
from orchestrator.store.cache import apply_gc, plan_gc

SECRET = "s3cr3t-" + secrets.token_hex(8)


def _noisy_plan(name: str):
    s = story([{"id": "reel", "shots": [shot("good"), shot("bad")]}], name="noisy",
              renderer={"backend": name}, profile={"width": 640, "height": 352, "fps": 8})
    return {t.shot: t for t in expand(s).tasks}


def test_a_render_keeps_everything_it_printed_and_a_poster(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("REELFARM_TEST_API_TOKEN", SECRET)
    backend = use(NoisyBackend("noisy-local", secret_var="REELFARM_TEST_API_TOKEN"))
    tasks = _noisy_plan("noisy-local")
    store = open_store(str(tmp_path / "store"))
    actor = ShotRenderer(store.url, None, backend)

    rec = actor.render(tasks["good"], None)
    log = store.get_bytes(rec.outputs["log"].sha256).decode()
    assert f"task {tasks['good'].id} (shot good" in log  # the header
    for line in ("python print from good", "fd 1 write from good", "fd 2 write from good",
                 "child process of good", "UserWarning: a warning from good",
                 "a log record from good"):
        assert line in log, line
    # the backend printed a credential: the log masks it
    assert SECRET not in log and "token is ***" in log
    # the process's own descriptors are back: nothing of the render leaked out, later
    # output is not captured
    os.write(1, b"after the render\n")
    out, err = capfd.readouterr()
    assert "after the render" in out and "fd 1 write from good" not in out + err

    # the poster: a JPEG of the middle frame, 320 wide, the clip's aspect ratio
    img = Image.open(io.BytesIO(store.get_bytes(rec.outputs["poster"].sha256)))
    assert img.format == "JPEG" and img.size == (320, 176)
    want = np.frombuffer(hashlib.sha256(tasks["good"].key.encode()).digest()[:3], np.uint8)
    got = np.asarray(img.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert np.abs(got - want).max() < 12  # the frame's colour, through JPEG

    # a second render in the same process shows its warning again
    again = actor.render(tasks["good"], None)
    assert "a warning from good" in store.get_bytes(again.outputs["log"].sha256).decode()


def test_a_failed_render_stores_its_log_and_raises_with_its_traceback(tmp_path, monkeypatch):
    backend = use(NoisyBackend("noisy-fail", fail_shots=frozenset({"bad"})))
    tasks = _noisy_plan("noisy-fail")
    store = open_store(str(tmp_path / "store"))
    actor = ShotRenderer(store.url, None, backend)
    with pytest.raises(ShotFailed) as caught:
        actor.render(tasks["bad"], None)
    e = caught.value
    assert e.summary == "ValueError: the noisy backend refuses bad"
    assert "Traceback (most recent call last)" in e.traceback and "_fail_deep" in e.traceback
    log = store.get_bytes(e.log).decode()
    assert "python print from bad" in log and "child process of bad" in log
    assert e.traceback in log
    assert store.get_action(tasks["bad"].key) is None  # no record for a failure
    # it crosses Ray as a pickle
    import pickle

    back = pickle.loads(pickle.dumps(e))
    assert (back.summary, back.log, back.traceback) == (e.summary, e.log, e.traceback)


# -- a render with a Ray of its own, then the CLI once that Ray is gone ----------------------


@pytest.fixture(scope="module")
def failed_render(tmp_path_factory):
    """``reelfarm render`` of a story whose shot ``bad`` fails in the backend, in a process
    that starts a local Ray and shuts it down when it exits."""
    tmp = tmp_path_factory.mktemp("logs")
    doc = story_dict([{"id": "reel", "shots": [
        shot("good"), shot("bad"), shot("after", continuity="previous")]}],
        name="logreel", renderer={"backend": "noisy"})
    path = write_story(tmp / "logreel.yaml", doc)
    store, out = tmp / "store", tmp / "out"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "REELFARM_STORE")}
    token = secrets.token_hex(32)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, REELFARM_TEST_FAIL_SHOTS="bad",
               REELFARM_TEST_SECRET_VAR="RAY_AUTH_TOKEN", PYTHONUNBUFFERED="1")
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    r = subprocess.run([sys.executable, str(ENTRY), "render", str(path), "--store", str(store),
                        "--out", str(out), "--plain", "--retries", "1", "--run-id", "logrun-1"],
                       env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # a shot failed; the others are done
    return {"store": store, "out": out, "stderr": r.stderr, "token": token,
            "report": json.loads((out / "report.json").read_text())}


def _pid_of(log: str) -> int:
    header = log.splitlines()[0]
    return int(header.split(" pid ", 1)[1].split(",", 1)[0])


def test_logs_of_a_failed_shot_outlive_the_ray_that_rendered_it(failed_render):
    store = str(failed_render["store"])
    assert "reelfarm logs logrun-1 --shot SHOT" in failed_render["stderr"]
    code, text, err = run_cli("logs", "logrun-1", "--shot", "bad", "--store", store)
    assert code == 0, err
    assert "Traceback (most recent call last)" in text
    assert "ValueError: the noisy backend refuses bad" in text
    assert "python print from bad" in text and "fd 2 write from bad" in text
    assert "child process of bad" in text and "a log record from bad" in text
    assert failed_render["token"] not in text  # printed by the backend, masked in the log
    # the renderer that wrote it was a process of the Ray the render started: gone now
    deadline = time.monotonic() + 60
    while psutil.pid_exists(_pid_of(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(_pid_of(text))

    code, text, err = run_cli("logs", "logrun-1", "--shot", "good", "--store", store)
    assert code == 0 and "python print from good" in text and "Traceback" not in text
    # a blocked shot never ran: no log, said in one line, exit 1
    code, text, err = run_cli("logs", "logrun-1", "--shot", "after", "--store", store)
    assert code == 1 and text == ""
    assert err.startswith("error: no log for after") and "never ran" in err
    code, _, err = run_cli("logs", "logrun-1", "--shot", "nope", "--store", store)
    assert code == 2 and "has no shot or task 'nope'" in err
    code, _, err = run_cli("logs", "no-such-run", "--shot", "bad", "--store", store)
    assert code == 2 and "no run or job 'no-such-run'" in err
    code, _, err = run_cli("logs", "../../etc", "--shot", "bad", "--store", store)
    assert code == 2 and "is not a run id or a job id" in err


def test_the_report_and_run_record_keep_the_full_traceback_and_log(failed_render):
    report = failed_render["report"]
    failure, = report["failures"]
    assert failure["id"] == "bad" and failure["retries"] == 1
    assert failure["error"] == "ValueError: the noisy backend refuses bad"
    assert "Traceback (most recent call last)" in failure["traceback"]
    assert "_fail_deep" in failure["traceback"]
    tasks = {t["id"]: t for t in report["tasks"]}
    assert failure["log"] == tasks["bad"]["log"]
    assert tasks["after"]["log"] is None and tasks["after"]["status"] == "blocked"
    store = open_store(str(failed_render["store"]))
    record = store.get_run("logreel", "logrun-1")
    assert record["failures"][0]["traceback"] == failure["traceback"]
    assert record["status"] == "failed" and record["running"] == []
    assert record["user"].endswith("@" + record["host"]) and record["priority"] == 50
    assert record["version"] and record["updated"] >= record["started"]
    # a rendered task's log is its record's: cached reruns point at the same log
    rec = store.get_action(tasks["good"]["key"])
    assert tasks["good"]["log"] == rec.outputs["log"].sha256
    assert set(rec.outputs) == {"clip", "last_frame", "poster", "log"}


def test_gc_keeps_the_logs_and_posters_of_kept_runs_only(failed_render, tmp_path):
    import shutil

    root = tmp_path / "store"
    shutil.copytree(failed_render["store"], root)
    store = open_store(str(root))
    doc = store.get_run("logreel", "logrun-1")
    tasks = {t["id"]: t for t in doc["tasks"]}
    rec = store.get_action(tasks["good"]["key"])
    kept = {tasks["bad"]["log"], rec.outputs["log"].sha256, rec.outputs["poster"].sha256}
    junk = store.put_bytes(b"nobody names this blob").sha256
    later = time.time() + 86400  # past the grace period of every object
    plan = plan_gc(store, keep_runs=1, grace_s=3600, now=later)
    doomed = {d.rel for d in plan.delete}
    assert blob_path(junk) in doomed
    assert not doomed & {blob_path(d) for d in kept}
    apply_gc(store, plan)
    for d in kept:
        assert store.get_bytes(d)  # still there, and sound
    code, text, _ = run_cli("logs", "logrun-1", "--shot", "bad", "--store", str(root))
    assert code == 0 and "the noisy backend refuses bad" in text

    # once a newer finished run replaces it, the old run's failed log goes with it
    store.put_run("logreel", "logrun-2", {"story": "logreel", "run_id": "logrun-2",
                                          "status": "succeeded", "tasks": [], "branches": []})
    plan = plan_gc(store, keep_runs=1, grace_s=3600, now=later + 1)
    assert blob_path(tasks["bad"]["log"]) in {d.rel for d in plan.delete}


def test_cache_stats_counts_logs_and_posters(failed_render):
    code, text, err = run_cli("cache", "stats", "--store", str(failed_render["store"]),
                              "--json")
    assert code == 0, err
    blobs = json.loads(text)["blobs"]
    # good rendered (clip, last frame, poster, log); the run names bad's last attempt's log
    assert blobs["posters"]["objects"] == 1
    assert blobs["logs"]["objects"] == 2


@pytest.mark.parametrize("command", ["status", "logs", "runs"])
def test_help_examples_of_the_store_commands_are_accepted(command):
    from click.testing import CliRunner

    from orchestrator.cli import main

    r = CliRunner().invoke(main, [command, "--help"])
    assert r.exit_code == 0
    examples = re.findall(r"^\s+(reelfarm [^\n]*?)(?:\\)?$", r.stdout, re.M)
    assert examples
    for line in examples:
        argv = shlex.split(line, comments=True)[1:]
        if argv[0] != command:
            continue
        assert CliRunner().invoke(main, [*argv, "--help"]).exit_code == 0, argv


def test_a_log_printed_on_a_terminal_carries_no_escape_sequences():
    from orchestrator.cli.jobs import for_terminal

    raw = "step 1/3\rstep 3/3\r\n\x1b[31mred\x1b[0m\tdone\x07\n"
    assert for_terminal(raw) == "step 1/3\nstep 3/3\n[31mred[0m    done\n"
