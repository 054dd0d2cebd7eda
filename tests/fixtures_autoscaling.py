"""A Ray cluster that scales from zero with Ray's real autoscaler, for the autoscale tests.

``autoscaling_cluster`` runs ``tests/autoscaling_head.py`` (``ray.cluster_utils.
AutoscalingCluster``: the v1 autoscaler with the fake multi-node provider, which starts real
raylets on this machine as nodes) as the first process of a new PID and network namespace
(``unshare --pid --fork --net --mount-proc``; the tests run as root):

* its ``start()`` and ``shutdown()`` run ``ray stop --force``, which kills every Ray process it
  can see: in its own PID namespace (with its own ``/proc``) that is only this cluster's;
* in its own network namespace, the head takes Ray's default ports (6379, 8265, 10001 ...)
  without meeting any other cluster on the machine. Clients (``reelfarm render --address
  127.0.0.1:6379``) run in that network namespace through ``nsenter --net``.

Tearing down ends the helper, PID 1 of the namespace: the kernel then ends every process left
in it, and nothing outside it is touched. Token authentication is on, with a token of its own.

The cluster (the v1 autoscaler, or v2 as KubeRay runs it): a head with 0 CPUs; node types
``cpu`` ({CPU: 2}, 0–2 nodes), ``gpu`` ({CPU: 1, GPU: 1}, 0–2 nodes: a fake GPU), and ``big``
({CPU: 1, big: 1}, 0–1 node), which only the capacity-timeout test asks for, with the
autoscaler frozen.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HELPER = TESTS / "autoscaling_head.py"
STORE_MB = 80 * 1024 * 1024  # each node's object store: small, this machine runs several

NODE_TYPES = {
    "cpu": {"resources": {"CPU": 2, "object_store_memory": STORE_MB}, "node_config": {},
            "min_workers": 0, "max_workers": 2},
    "gpu": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": STORE_MB},
            "node_config": {}, "min_workers": 0, "max_workers": 2},
    "big": {"resources": {"CPU": 1, "big": 1, "object_store_memory": STORE_MB},
            "node_config": {}, "min_workers": 0, "max_workers": 1},
}
HEAD = {"CPU": 0, "object_store_memory": STORE_MB}
_CLIENT_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR")


@dataclass
class AutoscalingRay:
    address: str  # the head's GCS address, inside the cluster's network namespace
    pid: int  # the unshare process (in the cluster's namespaces)
    proc: subprocess.Popen = field(repr=False)
    env: dict[str, str] = field(repr=False)  # a client's environment: token, PYTHONPATH
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ask(self, command: str) -> dict:
        """One command to the helper, its one-line JSON answer."""
        with self.lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the autoscaling cluster's helper ended (asked {command!r})")
        return json.loads(line)

    def status(self) -> dict:
        return self.ask("status")

    def run(self, argv: list[str], *, timeout: float = 420,
            **env: str) -> subprocess.CompletedProcess:
        """``argv`` in the cluster's network namespace, with the client environment."""
        return subprocess.run(
            ["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv],
            env={**self.env, **env}, capture_output=True, text=True, timeout=timeout)


    def popen(self, argv: list[str], **env: str) -> subprocess.Popen:
        """``argv`` started in the cluster's network namespace (stderr piped, as text)."""
        return subprocess.Popen(
            ["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv], env={**self.env, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _config(path: Path, v2: bool) -> Path:
    path.write_text(json.dumps({"head": HEAD, "worker_node_types": NODE_TYPES,
                                "config": {"idle_timeout_minutes": 0.1}, "autoscaler_v2": v2}))
    return path


@pytest.fixture(scope="session")
def autoscaling_cluster():
    """The v1 autoscaler (``ray start --head --autoscaling-config``, ``ray up``)."""
    with _cluster(v2=False) as c:
        yield c


@pytest.fixture(scope="session")
def autoscaling_cluster_v2():
    """Ray's autoscaler v2, the one KubeRay runs (``k8s/``)."""
    with _cluster(v2=True) as c:
        yield c


@contextlib.contextmanager
def _cluster(v2: bool):
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.fail("the autoscaling tests need unshare and nsenter (util-linux)")
    # A short path: Ray's Unix sockets live under it (at most 107 bytes).
    tmp = Path(tempfile.mkdtemp(prefix="rfas-", dir="/tmp"))
    bindir = os.path.dirname(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
    env.update({
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_TMPDIR": str(tmp),
        "RAY_USAGE_STATS_ENABLED": "0",
    })
    log = open(tmp / "helper.log", "w")  # noqa: SIM115 - open for the fixture's life
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "--net", "--mount-proc",
         sys.executable, str(HELPER), str(_config(tmp / "cluster.json", v2))],
        env=env, cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        text=True, start_new_session=True)
    try:
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout=240)
        if not ready or not ready[0].startswith("READY "):
            log.flush()
            raise RuntimeError("the autoscaling cluster did not start:\n"
                               + (tmp / "helper.log").read_text()[-4000:])
        yield AutoscalingRay(address=ready[0].split()[1], pid=proc.pid, proc=proc, env=env)
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.write("stop\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()  # --kill-child: its PID 1 goes, and with it the whole namespace
            proc.wait(timeout=30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
