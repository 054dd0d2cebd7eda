"""A real Ray head started with ``ray start --head``, token authentication on, for Jobs API tests.

``ray_head`` starts one head for the session: loopback dashboard on a free port, every other
port free too (so it never collides with ``ray_cluster`` or another test run), its own
``--temp-dir``, two CPUs. Token auth stays on: the head gets ``RAY_AUTH_MODE=token`` and a fresh
``RAY_AUTH_TOKEN`` (without one, ``ray start --head`` would generate a token into the user's
``~/.ray/auth_token``); clients use the same two variables. The head and its clients also have
the ``gate`` test backend (tests/backends_for_tests.py) installed as an entry point, for jobs
whose renders a test must hold still.

It is stopped without ``ray stop``, which kills every Ray process of the user on the machine
(the session's ``ray_cluster`` included). Instead, the processes of this head are found by
what only they share: the process group of ``ray start`` (GCS, raylet, dashboard, agents) and
an environment variable naming this head, which the workers inherit from the raylet (they run
in process groups of their own).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: The environment variable that marks the processes of one test head.
MARKER = "REELFARM_TEST_RAY_HEAD"
_CLIENT_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH")


@dataclass
class RayHead:
    address: str  # the dashboard's HTTP address, for the Jobs API
    token: str
    temp_dir: Path
    pgid: int
    env: dict[str, str] = field(repr=False)  # a client's environment: address and token
    gcs_address: str = ""  # HOST:PORT, what `ray.init` and `reelfarm render` join
    gate_dir: Path | None = None  # the `gate` test backend's directory (backends_for_tests)
    metrics_port: int = 0  # the head's Prometheus endpoint: http://127.0.0.1:PORT/metrics

    def client_env(self, **changes: str | None) -> dict[str, str]:
        """The client environment with some variables changed (``None`` removes one)."""
        env = dict(self.env)
        for k, v in changes.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_dashboard(url: str, token: str, timeout: float) -> None:
    """Until the Jobs API answers an authenticated request."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{url}/api/jobs/",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError) as e:
            last = e
        time.sleep(0.5)
    raise RuntimeError(f"the Ray dashboard at {url} did not come up: {last}")


def _head_processes(pgid: int, marker: str) -> list:
    import psutil

    found = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid():
                continue
            if os.getpgid(p.pid) == pgid or p.environ().get(MARKER) == marker:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def stop_head(pgid: int, marker: str) -> None:
    """SIGTERM the head's processes, SIGKILL what is left after a grace period."""
    import psutil

    procs = _head_processes(pgid, marker)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def _test_plugins(temp_dir: Path) -> str:
    """A folder for PYTHONPATH that installs the ``gate`` test backend as an entry point, so a
    job's ``reelfarm render`` finds it as it finds any backend a studio installs."""
    plugins = temp_dir / "plugins"
    info = plugins / "reelfarm_test_backends-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: reelfarm-test-backends\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[reelfarm.backends]\ngate = backends_for_tests:GateBackend\n")
    tests = str(Path(__file__).resolve().parent)
    return os.pathsep.join([str(plugins), tests])


@pytest.fixture(scope="session")
def ray_head():
    # A short path: Ray's Unix sockets live under it, and socket paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rfhead-", dir="/tmp"))
    token = secrets.token_hex(32)
    dashboard_port = _free_port()
    bindir = os.path.dirname(sys.executable)  # the venv: `ray` and `reelfarm` for the jobs
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
    gate_dir = temp_dir / "gate"
    gate_dir.mkdir()
    pythonpath = os.pathsep.join(filter(None, [_test_plugins(temp_dir),
                                               env.get("PYTHONPATH", "")]))
    env.update({
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": pythonpath,
        "REELFARM_TEST_GATE_DIR": str(gate_dir),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_TMPDIR": str(temp_dir),
        "RAY_USAGE_STATS_ENABLED": "0",
        MARKER: str(temp_dir),
    })
    ports = {
        "--port": _free_port(),
        "--dashboard-port": dashboard_port,
        "--ray-client-server-port": _free_port(),
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
    }
    cmd = [os.path.join(bindir, "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
           "--dashboard-host=127.0.0.1", "--num-cpus=2", "--disable-usage-stats",
           f"--temp-dir={temp_dir}"]
    cmd += [f"{k}={v}" for k, v in ports.items()]
    # A new session: the head's daemons share this process group, and no signal meant for
    # pytest reaches them.
    proc = subprocess.Popen(cmd, env=env, cwd=temp_dir, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgid = proc.pid
    marker = str(temp_dir)
    try:
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start --head failed ({proc.returncode}):\n{out[-3000:]}")
        url = f"http://127.0.0.1:{dashboard_port}"
        _wait_dashboard(url, token, timeout=120)
        client = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
        client.update({"RAY_ADDRESS": url, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                       "PATH": env["PATH"], "PYTHONPATH": pythonpath,
                       "REELFARM_TEST_GATE_DIR": str(gate_dir)})
        yield RayHead(address=url, token=token, temp_dir=temp_dir, pgid=pgid, env=client,
                      gcs_address=f"127.0.0.1:{ports['--port']}", gate_dir=gate_dir,
                      metrics_port=ports["--metrics-export-port"])
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_head(pgid, marker)
        shutil.rmtree(temp_dir, ignore_errors=True)
