"""``reelfarm submit``/``jobs``/``status``/``logs``/``cancel`` against a real Ray head.

The head (``ray_head``, tests/fixtures_rayhead.py) is started with ``ray start --head`` and keeps
token authentication on; every CLI call here is a separate ``reelfarm`` process with the client
environment a TD would have (``RAY_ADDRESS``, ``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), and
no output of any of them may contain the token.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

import orchestrator
from orchestrator.cli import main
from orchestrator.jobs.client import submission_id
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parent.parent
HEIST = ROOT / "manifests" / "heist.yaml"
REELFARM = str(Path(sys.executable).with_name("reelfarm"))
JOB_ID = re.compile(r"reelfarm-heist-[0-9a-f]{12}")


def reelfarm(head, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run([REELFARM, *map(str, args)], env=env or head.env, capture_output=True,
                       text=True, timeout=timeout, cwd=head.temp_dir)
    assert head.token not in r.stdout and head.token not in r.stderr, "the token was printed"
    assert "Traceback" not in r.stderr, r.stderr
    return r


def wait_for(cond, what: str, timeout: float = 180, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    d = tmp_path_factory.mktemp("farm")
    # The job runs its entrypoint through a shell: this out path would run `touch pwned` (and
    # break the command) if an argument were not quoted.
    out = d / "out dir;$(touch pwned)'q" / "heist"
    return {"store": d / "store", "out": out, "root": d}


@pytest.fixture(scope="module")
def heist(ray_head, farm):
    """heist.yaml submitted with ``reelfarm submit --wait``: the finished job."""
    r = reelfarm(ray_head, "submit", HEIST, "--store", farm["store"], "--out", farm["out"],
                 "--wait")
    return r


@pytest.fixture
def api_env(ray_head, monkeypatch):
    from ray._private.authentication_test_utils import reset_auth_token_state

    for k, v in ray_head.env.items():
        if k.startswith("RAY_"):
            monkeypatch.setenv(k, v)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    yield ray_head
    monkeypatch.undo()
    # Ray caches the auth mode and token per process: forget this head's, so a Ray cluster
    # started later in this test session does not inherit them.
    reset_auth_token_state()


def test_submit_renders_the_story_to_masters_through_a_job(heist, farm):
    assert heist.returncode == 0, heist.stderr
    job_id = heist.stdout.strip()
    assert JOB_ID.fullmatch(job_id), heist.stdout
    assert f"submitted {job_id} (story heist)" in heist.stderr
    # --wait streamed the job's log and ended with its state
    assert "heist: succeeded: rendered 6, cached 0; masters 2/2" in heist.stderr
    assert f"{job_id}: SUCCEEDED; run " in heist.stderr
    masters = sorted(p.name for p in (farm["out"] / "masters").iterdir())
    assert masters == ["escape~safe.mp4", "walk-away.mp4"]
    branches = json.loads((farm["out"] / "branches.json").read_text())
    assert {b["name"] for b in branches} == {"escape~safe", "walk-away"}
    assert all(b["master"]["frames"] > 0 for b in branches)


def test_status_shows_the_state_and_the_task_counts_of_the_run_record(ray_head, heist, farm):
    job_id = heist.stdout.strip()
    report = json.loads((farm["out"] / "report.json").read_text())
    r = reelfarm(ray_head, "status", job_id, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["job_id"] == job_id and doc["state"] == "SUCCEEDED" and doc["story"] == "heist"
    assert doc["run_id"] == report["run_id"] and doc["run_status"] == "succeeded"
    assert doc["totals"] == report["totals"]
    assert doc["totals"]["unique"] == 6 and doc["totals"]["rendered"] == 6
    assert doc["store"] == str(farm["store"]) and doc["out"] == str(farm["out"])
    assert shlex.split(doc["entrypoint"]) == [
        "reelfarm", "render", "heist.yaml", "--store", str(farm["store"]),
        "--out", str(farm["out"]), "--plain", "--run-id", report["run_id"],
        "--priority", "50", "--idle-timeout", "300.0"]
    assert report["priority"] == 50
    assert not list(farm["root"].rglob("pwned")) and not list(ray_head.temp_dir.rglob("pwned"))
    # the record the job wrote is in the store
    assert report["run_id"] in open_store(str(farm["store"])).list_runs("heist")

    text = reelfarm(ray_head, "status", job_id)
    assert text.returncode == 0
    assert text.stdout.startswith(f"{job_id}: SUCCEEDED\n")
    assert "6 unique: 6 rendered, 0 cached, 0 failed, 0 blocked" in text.stdout
    assert "masters    2 done (2 assembled)" in text.stdout


def test_logs_hold_the_render_summary(ray_head, heist, farm):
    job_id = heist.stdout.strip()
    r = reelfarm(ray_head, "logs", job_id)
    assert r.returncode == 0, r.stderr
    assert "heist: succeeded: rendered 6, cached 0; masters 2/2 (2 assembled)" in r.stdout
    assert f"{farm['out']}/masters/escape~safe.mp4" in r.stdout
    followed = reelfarm(ray_head, "logs", job_id, "--follow")  # ends: the job is over
    assert followed.returncode == 0
    assert "heist: succeeded: rendered 6" in followed.stdout


def test_status_and_shot_logs_of_a_job_read_the_store_once_the_cluster_is_gone(
        ray_head, heist, farm):
    job_id = heist.stdout.strip()
    report = json.loads((farm["out"] / "report.json").read_text())
    record = open_store(str(farm["store"])).get_run("heist", report["run_id"])
    assert record["job_id"] == job_id  # the render knew the job it ran as
    # with the cluster: the job names its store and run, the log is read from there
    r = reelfarm(ray_head, "logs", job_id, "--shot", "vault-exterior")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("reelfarm ") and "task vault-exterior (shot vault-exterior" in \
        r.stdout
    # an address where no cluster answers any more
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    gone = ray_head.client_env(RAY_ADDRESS=None, RAY_API_SERVER_ADDRESS=dead)
    st = reelfarm(ray_head, "status", job_id, "--store", farm["store"], "--json", env=gone)
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["run_id"] == report["run_id"] and doc["job_id"] == job_id
    assert doc["status"] == "succeeded" and doc["totals"]["rendered"] == 6
    # and no cluster given at all: the store alone
    bare = ray_head.client_env(RAY_ADDRESS=None)
    lg = reelfarm(ray_head, "logs", job_id, "--shot", "vault-exterior", "--store", farm["store"],
                  env=bare)
    assert lg.returncode == 0, lg.stderr
    assert lg.stdout == r.stdout
    st = reelfarm(ray_head, "status", report["run_id"], "--store", farm["store"], env=bare)
    assert st.returncode == 0, st.stderr
    assert st.stdout.startswith(f"{report['run_id']}: succeeded\n")
    assert f"job        {job_id}" in st.stdout


def test_a_duplicate_submission_reports_the_existing_job(ray_head, heist, farm):
    job_id = heist.stdout.strip()
    runs_before = open_store(str(farm["store"])).list_runs("heist")
    again = reelfarm(ray_head, "submit", HEIST, "--store", farm["store"], "--out", farm["out"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == job_id
    assert f"{job_id}: already submitted (SUCCEEDED); no second render started" in again.stderr
    listed = json.loads(reelfarm(ray_head, "jobs", "--json").stdout)
    assert [j["job_id"] for j in listed].count(job_id) == 1
    assert open_store(str(farm["store"])).list_runs("heist") == runs_before
    table = reelfarm(ray_head, "jobs")
    assert re.search(rf"^{job_id}\s+SUCCEEDED\s+heist\s", table.stdout, re.M), table.stdout


def test_the_id_depends_on_the_content_not_on_where_the_manifest_is_read(
        ray_head, heist, farm, s3_client, s3_url):
    from urllib.parse import urlparse

    job_id = heist.stdout.strip()
    u = urlparse(s3_url)
    key = u.path.strip("/") + "/stories/heist.yaml"
    s3_client.put_object(Bucket=u.netloc, Key=key, Body=HEIST.read_bytes())
    env = dict(ray_head.env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    r = reelfarm(ray_head, "submit", f"s3://{u.netloc}/{key}", "--store", farm["store"],
                 "--out", farm["out"], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == job_id
    assert "already submitted (SUCCEEDED)" in r.stderr


def test_the_python_api_sees_the_same_job(api_env, heist, farm):
    job_id = heist.stdout.strip()
    job = orchestrator.submit(str(HEIST), store=str(farm["store"]), out=str(farm["out"]))
    assert job.job_id == job_id and job.existing and job.state == "SUCCEEDED"
    st = orchestrator.job_status(job_id)
    assert isinstance(st, orchestrator.JobStatus)
    assert st.state == "SUCCEEDED" and st.totals["rendered"] == 6 and st.run_status == "succeeded"
    assert job_id in [j.job_id for j in orchestrator.list_jobs()]
    assert "heist: succeeded" in orchestrator.job_logs(job_id)
    assert "heist: succeeded" in "".join(orchestrator.job_logs(job_id, follow=True))
    assert orchestrator.cancel(job_id) is False  # already over: nothing to stop
    with pytest.raises(orchestrator.JobNotFound, match="no job 'reelfarm-heist-000000000000'"):
        orchestrator.job_status("reelfarm-heist-000000000000")


def test_the_submission_id_follows_content_and_options():
    data = HEIST.read_bytes()
    base = submission_id("heist", data, store="/s", out="/o")
    assert base == submission_id("heist", data, store="/s", out="/o")
    assert JOB_ID.fullmatch(base)
    changed = {
        submission_id("heist", data + b"\n# edited\n", store="/s", out="/o"),
        submission_id("heist", data, store="/s2", out="/o"),
        submission_id("heist", data, store="/s", out="/o2"),
        submission_id("heist", data, store="/s", out="/o", extra_args=["--retries", "4"]),
        submission_id("heist", data, store="/s", out="/o", s3_endpoint="http://minio:9000"),
    }
    assert base not in changed and len(changed) == 5


def test_a_failed_job_is_run_again_only_with_resubmit(ray_head, farm):
    blocker = farm["root"] / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    args = ["submit", HEIST, "--store", blocker / "store", "--out", farm["root"] / "failed"]
    first = reelfarm(ray_head, *args, "--wait")
    assert first.returncode == 1, first.stderr  # the render on the cluster exits 2
    job_id = first.stdout.strip()
    assert f"{job_id}: FAILED" in first.stderr
    st = json.loads(reelfarm(ray_head, "status", job_id, "--json").stdout)
    assert st["state"] == "FAILED" and st["totals"] is None
    assert st["run_note"] == "the job wrote no run record"

    again = reelfarm(ray_head, *args)
    assert again.returncode == 2 and again.stdout == ""
    assert f"{job_id} was already submitted and FAILED" in again.stderr
    assert "--resubmit" in again.stderr

    rerun = reelfarm(ray_head, *args, "--resubmit", "--wait")
    assert rerun.returncode == 1
    assert rerun.stdout.strip() == job_id
    assert f"submitted {job_id}" in rerun.stderr  # a new job under the same id
    listed = json.loads(reelfarm(ray_head, "jobs", "--json").stdout)
    assert [j["job_id"] for j in listed].count(job_id) == 1


def test_cancel_stops_a_running_render(ray_head, farm, api_env, tmp_path):
    import psutil

    # Shots of the `gate` test backend render only once the gate opens, and this test never
    # opens it: the render is under way, and cannot finish, whatever the machine's speed.
    doc = story_dict([{"id": "reel", "shots": [shot(f"s{i:02d}") for i in range(4)]}],
                     name="gatedreel", renderer={"backend": "gate"})
    path = write_story(tmp_path / "gatedreel.yaml", doc)
    out = farm["root"] / "gatedreel"
    r = reelfarm(ray_head, "submit", path, "--store", farm["store"], "--out", out)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()

    def rendering():
        st = orchestrator.job_status(job_id)
        assert st.state in ("PENDING", "RUNNING"), st
        return st.run_status == "running" and list(ray_head.gate_dir.glob("*.started"))

    started = wait_for(rendering, "a render to start")
    pids = [int(p.read_text()) for p in started]
    c = reelfarm(ray_head, "cancel", job_id)
    assert c.returncode == 0, c.stderr
    assert c.stdout.strip() == f"{job_id}: stop requested"
    st = orchestrator.wait_job(job_id, timeout=120)
    assert st.state == "STOPPED"
    # stop_job sends SIGTERM: the driver stops its tasks and finalises the record
    assert st.run_status == "interrupted"
    assert st.totals["rendered"] == 0
    assert not (out / "masters").exists()
    # the processes that were rendering are gone (a bound against a hang, not a measurement)
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), "the renderers to exit",
             timeout=60)
    c2 = reelfarm(ray_head, "cancel", job_id)
    assert c2.returncode == 0
    assert "already ended (STOPPED)" in c2.stdout


def test_without_the_token_the_cluster_refuses_with_one_clear_line(ray_head, farm, tmp_path):
    # no token anywhere: not in the environment, and an empty HOME (no ~/.ray/auth_token)
    bare = ray_head.client_env(RAY_AUTH_TOKEN=None, RAY_AUTH_MODE=None, HOME=str(tmp_path))
    for args in (["jobs"], ["status", "reelfarm-heist-000000000000"],
                 ["submit", HEIST, "--store", farm["store"], "--out", farm["out"]]):
        r = reelfarm(ray_head, *args, env=bare)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stdout == ""
        assert r.stderr.splitlines() == [
            f"error: the Ray cluster at {ray_head.address} refused a request sent without a "
            "token: it requires token authentication; set RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, a file holding it)"
        ]
        assert "401" not in r.stderr
    wrong_token = "0" * 64
    wrong = ray_head.client_env(RAY_AUTH_TOKEN=wrong_token, HOME=str(tmp_path))
    r = reelfarm(ray_head, "jobs", env=wrong)
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: the Ray cluster at {ray_head.address} refused the "
                               "token from RAY_AUTH_TOKEN: it is not this cluster's token")
    assert wrong_token not in r.stderr and len(r.stderr.splitlines()) == 1
    # the token from a file works as well as from the environment
    token_file = tmp_path / "token"
    token_file.write_text(ray_head.token + "\n")
    from_file = ray_head.client_env(RAY_AUTH_TOKEN=None, RAY_AUTH_TOKEN_PATH=str(token_file),
                                    HOME=str(tmp_path))
    assert reelfarm(ray_head, "jobs", env=from_file).returncode == 0


def test_bad_input_and_an_unreachable_cluster_exit_2(ray_head, farm, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = reelfarm(ray_head, "jobs", "--address", f"http://127.0.0.1:{closed}")
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: cannot reach the Ray dashboard at http://127.0.0.1:{closed}")
    r = reelfarm(ray_head, "status", "reelfarm-heist-000000000000")
    assert r.returncode == 2
    assert "no job 'reelfarm-heist-000000000000'" in r.stderr
    r = reelfarm(ray_head, "logs", "../api/version")
    assert r.returncode == 2 and "is not a job id" in r.stderr
    bad = ROOT / "manifests" / "invalid" / "dangling-next.yaml"
    r = reelfarm(ray_head, "submit", bad, "--store", farm["store"], "--out", farm["out"])
    assert r.returncode == 2 and r.stderr.startswith(f"{bad}:")
    no_store = ray_head.client_env(REELFARM_STORE=None)
    r = reelfarm(ray_head, "submit", HEIST, "--out", farm["out"], env=no_store)
    assert r.returncode == 2 and "submit needs --store" in r.stderr
    r = reelfarm(ray_head, "submit", HEIST, "--store", farm["store"], "--out", farm["out"],
                 "--", "--store", "/elsewhere")
    assert r.returncode == 2 and "submit sets --store itself" in r.stderr
    r = reelfarm(ray_head, "jobs", "--address", "ray://head:10001")
    assert r.returncode == 2 and "needs the dashboard's HTTP address" in r.stderr


@pytest.mark.parametrize("gcs_form", ["127.0.0.1:6379", "ray://127.0.0.1:10001"])
def test_ray_address_for_render_and_api_server_address_for_jobs(ray_head, api_env, monkeypatch,
                                                               gcs_form):
    """Ray's conventions: RAY_ADDRESS is the cluster (GCS) address `render` joins; the jobs
    commands use RAY_API_SERVER_ADDRESS, else RAY_ADDRESS when it is an http:// URL."""
    import orchestrator.jobs.client as api

    both = ray_head.client_env(RAY_ADDRESS=gcs_form, RAY_API_SERVER_ADDRESS=ray_head.address)
    for args in (["jobs", "--json"], ["status", "reelfarm-heist-000000000000"]):
        r = reelfarm(ray_head, *args, env=both)
        assert "cannot reach" not in r.stderr and "RAY_ADDRESS" not in r.stderr, r.stderr
        assert r.returncode == (0 if args[0] == "jobs" else 2), r.stderr
    assert "no job 'reelfarm-heist-000000000000'" in r.stderr  # the head answered
    # the Python API reads the same variables in the same order
    monkeypatch.setenv("RAY_ADDRESS", gcs_form)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", ray_head.address)
    assert isinstance(orchestrator.list_jobs(), list)
    # a GCS address alone is not the dashboard's: one line saying which variable to set
    only_gcs = ray_head.client_env(RAY_ADDRESS=gcs_form)
    r = reelfarm(ray_head, "jobs", env=only_gcs)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"error: RAY_ADDRESS={gcs_form} is the cluster address")
    assert "RAY_API_SERVER_ADDRESS=http://HEAD:8265" in r.stderr
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS")
    with pytest.raises(api.JobError, match="RAY_API_SERVER_ADDRESS"):
        orchestrator.list_jobs()


def test_user_info_in_an_address_is_never_printed(ray_head, farm):
    port = ray_head.address.rsplit(":", 1)[1]
    url = f"http://admin:s3cr3tpw@127.0.0.1:{port}"
    for args in (["jobs", "--address", url],
                 ["status", "reelfarm-heist-000000000000", "--address", url],
                 ["submit", HEIST, "--store", farm["store"], "--out", farm["out"],
                  "--address", url],
                 ["jobs", "--address", "http://admin:s3cr3tpw@127.0.0.1:1"]):
        r = reelfarm(ray_head, *args)
        assert "s3cr3tpw" not in r.stdout + r.stderr and "admin" not in r.stdout + r.stderr, \
            (args, r.stdout, r.stderr)
        assert r.returncode in (0, 2), (args, r.stderr)
    # the address is shown, without its user info
    assert "http://***@127.0.0.1:1" in r.stderr  # the address, its user info hidden


def test_help_has_examples_and_the_auth_setup():
    for cmd in ("submit", "jobs", "status", "logs", "cancel"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert r.exit_code == 0
        assert "Examples:" in r.output and f"reelfarm {cmd}" in r.output
    r = CliRunner().invoke(main, ["submit", "--help"])
    assert "RAY_AUTH_MODE=token" in r.output and "RAY_AUTH_TOKEN" in r.output

