"""``reelfarm render`` joining a Ray cluster: which address, what happens without the token,
and one clear line (never a hang, never a credential) when the address is wrong.

Each call is a separate ``reelfarm`` process, as a user runs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from storybuild import shot, story_dict, write_story

REELFARM = str(Path(sys.executable).with_name("reelfarm"))
_RAY_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
             "RAY_AUTH_TOKEN_PATH")


def reelfarm(*args, env: dict[str, str], cwd: Path, timeout: float = 300):
    # `timeout` bounds a hang; no assertion here depends on how long a call takes
    r = subprocess.run([REELFARM, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def errors(r) -> list[str]:
    """stderr's lines less the note that `render` created the store it was given."""
    return [line for line in r.stderr.splitlines() if not line.startswith("created a new store")]


def bare_env(home: Path, **changes: str) -> dict[str, str]:
    """This environment without any Ray address or token (and a HOME with no ~/.ray)."""
    env = {k: v for k, v in os.environ.items() if k not in _RAY_VARS}
    env["HOME"] = str(home)
    env.update(changes)
    return env


@pytest.fixture
def tiny(tmp_path):
    doc = story_dict([{"id": "a", "shots": [shot("a1", duration=0.25)]}], name="tiny")
    return write_story(tmp_path / "tiny.yaml", doc)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.cluster
def test_the_cluster_refuses_a_client_without_its_token(ray_cluster, ray_auth_token, tiny,
                                                        tmp_path):
    """The shared multi-node cluster runs with token authentication on."""
    args = ["render", tiny, "--address", ray_cluster.address, "--store", tmp_path / "store",
            "--out", tmp_path / "out", "--plain"]
    r = reelfarm(*args, env=bare_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert errors(r) == [
        f"error: the Ray cluster at {ray_cluster.address} refused a connection without a token: "
        "it requires token authentication; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
        "RAY_AUTH_TOKEN_PATH, or the file ~/.ray/auth_token)"]
    wrong = reelfarm(*args, env=bare_env(tmp_path, RAY_AUTH_MODE="token",
                                         RAY_AUTH_TOKEN="0" * 64), cwd=tmp_path)
    assert wrong.returncode == 2
    assert wrong.stderr.splitlines() == [
        f"error: the Ray cluster at {ray_cluster.address} refused the token (from "
        "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token): it is not this cluster's "
        "token"]
    assert not (tmp_path / "out" / "masters").exists()
    # a bare Ray client is refused as well: the refusal is the cluster's, not reelfarm's
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, ray; ray.init(address=sys.argv[1]); "
         "ray.get(ray.put(1))", ray_cluster.address],
        env=bare_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert probe.returncode != 0
    # with the token, the same command renders on the cluster
    # (RAY_ADDRESS names the dashboard here: --address wins, and Ray is not let override it)
    ok = reelfarm(*args, env=bare_env(tmp_path, RAY_AUTH_MODE="token", RAY_ADDRESS=
                                      "http://127.0.0.1:8265", RAY_AUTH_TOKEN=ray_auth_token),
                  cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ray_auth_token not in ok.stdout + ok.stderr + r.stderr
    assert (tmp_path / "out" / "masters" / "a.mp4").exists()


@pytest.mark.parametrize("how", ["flag", "RAY_ADDRESS"])
def test_render_refuses_the_dashboard_url_saying_what_to_use(tiny, tmp_path, how):
    url = "http://admin:s3cr3tpw@127.0.0.1:8265"
    args = ["render", tiny, "--store", tmp_path / "store", "--out", tmp_path / "out"]
    if how == "flag":
        r = reelfarm(*args, "--address", url, env=bare_env(tmp_path), cwd=tmp_path)
    else:
        r = reelfarm(*args, env=bare_env(tmp_path, RAY_ADDRESS=url), cwd=tmp_path)
    assert r.returncode == 2
    lines = errors(r)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(
        "error: http://***@127.0.0.1:8265 is the Ray dashboard's HTTP address")
    assert "RAY_API_SERVER_ADDRESS" in lines[0] and "HEAD:6379" in lines[0]
    assert "s3cr3tpw" not in r.stderr and "admin" not in r.stderr
    assert not (tmp_path / "out" / "masters").exists()


def test_an_address_where_nothing_listens_fails_at_once_with_one_line(tiny, tmp_path):
    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        r = reelfarm("render", tiny, "--address", address, "--store", tmp_path / "store",
                     "--out", tmp_path / "out", env=bare_env(tmp_path), cwd=tmp_path,
                     timeout=120)
        assert r.returncode == 2
        assert errors(r) == [
            f"error: no Ray cluster answers at {address} (Connection refused): is the head up, "
            "and is this its GCS address (HEAD:6379)?"]


def test_an_address_that_is_not_a_gcs_fails_with_one_line(tiny, tmp_path):
    """A port that accepts connections and never answers (a dashboard's port given without
    http://, some other service) is one line, not minutes of Ray retrying."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        r = reelfarm("render", tiny, "--address", address, "--store", tmp_path / "store",
                     "--out", tmp_path / "out", env=bare_env(tmp_path), cwd=tmp_path,
                     timeout=120)
    assert r.returncode == 2
    lines = errors(r)
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {address} accepts connections but does not answer as a Ray cluster's GCS"), \
        r.stderr


def test_an_explicit_address_wins_over_ray_address(tiny, tmp_path):
    """``--address`` is the cluster to join even when RAY_ADDRESS names another (Ray itself
    would let the variable win)."""
    port = _closed_port()
    r = reelfarm("render", tiny, "--address", f"127.0.0.1:{port}", "--store", tmp_path / "s",
                 "--out", tmp_path / "o", env=bare_env(tmp_path, RAY_ADDRESS="http://h:8265"),
                 cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert errors(r)[0].startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}"), r.stderr
