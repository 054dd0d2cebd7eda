"""Command-line input and write failures as a user meets them: paths, stores, endpoints, odd
files, values, interrupts and full or read-only disks. Every case is one clear line, the
documented exit code, nothing created that was not asked for, and no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from storybuild import shot, story_dict

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent
HEIST = ROOT / "manifests" / "heist.yaml"


def cli(*args: object, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def run(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m"):
    """A tmpfs mounted at ``path`` (root can write anywhere, so read-only and full disks are
    made for real: ``remount,ro`` and a filled tmpfs). Unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_ro(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path) -> None:
    """Fill the file system holding ``path`` to the last byte."""
    with open(path / "filler", "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    with open(path / "filler", "ab", buffering=0) as f:  # the last partial page
        try:
            while f.write(b"\0"):
                pass
        except OSError:
            pass


# -- S3 endpoint precedence and user info --------------------------------------------------

DEAD = "http://127.0.0.1:9"  # discard port: nothing listens


@pytest.fixture
def s3_manifest(s3_url, s3_client, monkeypatch):
    from orchestrator.store.s3 import parse_s3_url

    bucket, prefix = parse_s3_url(s3_url)
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}heist.yaml", Body=HEIST.read_bytes())
    monkeypatch.setenv("REELFARM_S3_MAX_ATTEMPTS", "1")  # a wrong endpoint fails at once
    return f"s3://{bucket}/{prefix}heist.yaml"


@pytest.mark.parametrize("cmd", ["validate", "plan", "cache-stats"])
def test_s3_endpoint_precedence_is_flag_then_s3_variable_then_generic(
        cmd, s3_manifest, s3_url, s3_endpoint, tmp_path):
    def call(*extra: str, env: dict[str, str | None]):
        if cmd == "validate":
            return cli("validate", s3_manifest, *extra, env=env)
        if cmd == "plan":
            return cli("plan", s3_manifest, "--store", tmp_path / "s", "--json", *extra, env=env)
        return cli("cache", "stats", "--store", s3_url, *extra, env=env)

    # AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL (it used to be the other way round)
    r = call(env={"AWS_ENDPOINT_URL": DEAD, "AWS_ENDPOINT_URL_S3": s3_endpoint})
    assert r.exit_code == 0, r.stderr
    # the flag beats both
    r = call("--s3-endpoint", s3_endpoint,
             env={"AWS_ENDPOINT_URL": DEAD, "AWS_ENDPOINT_URL_S3": DEAD})
    assert r.exit_code == 0, r.stderr
    # AWS_ENDPOINT_URL alone still works
    r = call(env={"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ENDPOINT_URL_S3": None})
    assert r.exit_code == 0, r.stderr
    # and the dead one is really used when it has precedence (the test can fail)
    r = call(env={"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ENDPOINT_URL_S3": DEAD})
    assert r.exit_code != 0
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [
    ["validate", "s3://bucket/story.yaml"],
    ["plan", HEIST, "--store", "s3://bucket/store"],
    ["cache", "stats", "--store", "s3://bucket/store"],
    ["render", HEIST, "--store", "s3://bucket/store"],
], ids=["validate", "plan", "cache", "render"])
def test_an_endpoint_without_scheme_is_refused_without_its_user_info(args):
    r = cli(*args, "--s3-endpoint", "admin:s3cr3t-pw@minio.internal:9000")
    assert r.exit_code == 2
    line = one_error_line(r.stderr)
    assert "s3cr3t-pw" not in r.output and "admin" not in r.output
    assert "minio.internal:9000" in line  # says which endpoint


def test_redact_url_hides_user_info_with_or_without_scheme():
    from orchestrator.spec.urls import redact_url

    assert redact_url("http://u:pw@h:9000/p?q") == "http://***@h:9000/p?q"
    assert redact_url("u:pw@h:9000") == "***@h:9000"
    assert redact_url("http://h:9000/a@b") == "http://h:9000/a@b"
    assert redact_url("ray://admin:secret@head:10001") == "ray://***@head:10001"
    assert redact_url("https://admin@head") == "https://***@head"
    assert redact_url("head:6379") == "head:6379"


# -- read-only commands create nothing -----------------------------------------------------


def test_plan_on_a_missing_store_creates_nothing_and_plans_everything(tmp_path):
    store = tmp_path / "typo" / "store"
    r = cli("plan", HEIST, "--store", store, "--json")
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / "typo").exists()
    assert "does not exist" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["tasks"]["cached"] == 0 and doc["tasks"]["to_render"] == doc["tasks"]["unique"]
    assert {t["status"] for t in doc["task_list"]} == {"to_render"}


@pytest.mark.parametrize("args", [["stats"], ["verify"], ["gc", "--keep-runs", "1"],
                                  ["salt"], ["salt", "new-salt", "--yes"]])
def test_cache_commands_on_a_missing_store_are_an_error_with_a_hint(args, tmp_path):
    store = tmp_path / "typo"
    r = cli("cache", *args, "--store", store)
    assert r.exit_code == 2
    line = one_error_line(r.stderr)
    assert str(store) in line and "does not exist" in line and "--store" in line
    assert not store.exists()


def test_cache_salt_shows_what_it_would_disown_and_needs_yes(tmp_path):
    from orchestrator.store import open_store

    store = tmp_path / "store"
    open_store(str(store)).put_doc("runs/heist/r1.json", b"{}")
    r = cli("cache", "salt", "batch-2", "--store", store)
    assert r.exit_code == 1
    assert "--yes" in r.stderr and "heist" in r.stderr and "would disown" in r.stderr
    assert cli("cache", "salt", "--store", store).stdout.strip() == ""  # unchanged
    r = cli("cache", "salt", "batch-2", "--store", store, "--yes")
    assert r.exit_code == 0, r.stderr
    assert cli("cache", "salt", "--store", store).stdout.strip() == "batch-2"


# -- bad paths and odd files ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "proc", "under-file", "other-host", "read-only"])
def test_render_refuses_an_out_it_cannot_write_before_rendering(where, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    out = {"file": str(a_file), "proc": "/proc/reelfarm-out", "under-file": f"{a_file}/out",
           "other-host": "file://render-host/srv/out", "read-only": tmp_path / "ro" / "out"}[where]
    store = tmp_path / "store"
    with contextlib.ExitStack() as stack:
        if where == "read-only":
            stack.enter_context(tmpfs(tmp_path / "ro"))
            remount_ro(tmp_path / "ro")
        r = run("render", HEIST, "--store", store, "--out", out, "--plain",
                env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"})  # never reached: no Ray
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert line.startswith("error: ")
    assert not (store / "runs").exists()  # nothing started: no run record
    assert a_file.read_text() == "not a directory"


def test_a_manifest_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "story.yaml"
    os.mkfifo(fifo)
    for cmd in (["validate", fifo], ["plan", fifo, "--store", tmp_path / "s"]):
        r = run(*cmd, timeout=60)  # the old code blocked here forever
        assert r.returncode == 2
        line = one_error_line(r.stderr)
        assert line.startswith(f"{fifo}:") and "not a regular file" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0", "-inf"])
def test_task_timeout_must_be_a_positive_finite_number(value, tmp_path):
    for cmd in (["render", HEIST], ["nightly", tmp_path, "--out", tmp_path / "o"]):
        r = cli(*cmd, "--store", tmp_path / "s", "--task-timeout", value)
        assert r.exit_code == 2
        assert "--task-timeout" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()


def test_plan_prints_no_control_characters_from_the_manifest(tmp_path):
    doc = story_dict(
        [{"id": "intro", "shots": [shot("hall")],
          "choice": {"prompt": "?", "options": [
              {"label": "left\x1b]0;owned\x07", "next": "a"},
              {"label": "[bold]right\x1b[2J", "next": "b"}]}},
         {"id": "a", "shots": [shot("lamp")]}, {"id": "b", "shots": [shot("door")]}],
        name="esc")
    doc["metadata"]["title"] = "Title\x1b[31m red\x9b1m\x1b[?1049h"
    f = tmp_path / "esc.json"
    f.write_text(json.dumps(doc))
    r = run("plan", f, "--store", tmp_path / "s", env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert not any(c in r.stdout for c in "\x1b\x07\x9b")
    assert "Title[31m red1m[?1049h" in r.stdout  # the text is kept, its controls are not
    assert "[bold]right" in r.stdout  # user text is not rich markup either


# -- interrupts ----------------------------------------------------------------------------


@pytest.fixture
def black_hole():
    """A TCP server that accepts connections and never answers: a command reading from it
    blocks until it is interrupted. ``accepted`` is set once a client is connected."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted = threading.Event()
    conns = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", accepted
    srv.close()
    for c in conns:
        c.close()


@pytest.mark.parametrize("cmd", ["validate", "plan", "cache"])
def test_ctrl_c_exits_130_without_a_traceback(cmd, black_hole, tmp_path):
    endpoint, accepted = black_hole
    args = {"validate": ["validate", "s3://bucket/story.yaml"],
            "plan": ["plan", "s3://bucket/story.yaml", "--store", tmp_path / "s"],
            "cache": ["cache", "stats", "--store", "s3://bucket/store"]}[cmd]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "REELFARM_S3_MAX_ATTEMPTS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *map(str, args),
                          "--s3-endpoint", endpoint],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert accepted.wait(60), "the command never reached the server"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "Aborted!" not in err
    assert err.strip().splitlines()[-1] == "interrupted"


# -- write errors --------------------------------------------------------------------------


def test_schema_to_a_full_device_is_one_line_and_exit_1():
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "schema"], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert line.startswith("error: cannot write standard output")


def test_cache_gc_apply_on_a_read_only_store_is_one_line(tmp_path):
    from orchestrator.store import open_store

    mnt = tmp_path / "mnt"
    with tmpfs(mnt):
        store = open_store(str(mnt / "store"))
        store.put_bytes(b"an unreferenced blob")
        remount_ro(mnt)
        r = cli("cache", "gc", "--keep-runs", "0", "--grace", "0s", "--apply", "--store",
                mnt / "store")
        assert r.exit_code == 1
        line = one_error_line(r.stderr)
        assert line.startswith("error: cannot write") and str(mnt / "store") in line


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    from orchestrator.store.outputs import open_output

    mnt = tmp_path / "mnt"
    with tmpfs(mnt, size="64k"):
        out = open_output(str(mnt / "out"))
        out.put_json("branches.json", [{"name": "before"}])
        fill(mnt)
        with pytest.raises(OSError) as e:
            out.put_json("branches.json", [{"name": "x" * 200_000}])
        assert e.value.filename == str(mnt / "out" / "branches.json")
        assert [p.name for p in (mnt / "out").iterdir()] == ["branches.json"]
        assert json.loads((mnt / "out" / "branches.json").read_text()) == [{"name": "before"}]


def test_store_and_output_files_honour_the_umask(tmp_path):
    from orchestrator.store import open_store
    from orchestrator.store.outputs import open_output

    old = os.umask(0o027)
    try:
        store = open_store(str(tmp_path / "store"))
        ref = store.put_bytes(b"clip bytes")
        store.put_run("heist", "r1", {"status": "running"})
        out = open_output(str(tmp_path / "out"))
        out.put_json("report.json", {})
        out.put_blob("masters/a.mp4", store, ref)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    files += [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) == 4
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o640, p
