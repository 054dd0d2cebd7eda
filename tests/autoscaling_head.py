"""An autoscaling Ray cluster (``ray.cluster_utils.AutoscalingCluster``) in namespaces of its own.

Run as the first process of a new PID and network namespace::

    unshare --pid --fork --net --mount-proc python tests/autoscaling_head.py CONFIG.json

``AutoscalingCluster`` runs the real autoscaler (the v1 monitor, or v2) with the fake
multi-node provider, which starts real raylets on this machine as the cluster's "nodes" when
there is demand. The provider's defaults file, which the wheel lacks, is given to it in this
namespace only (:func:`_provide_example_yaml`). Its ``start()`` and ``shutdown()`` run
``ray stop --force``, which kills every Ray process it can see: in a PID namespace of its own
it sees only its own. The network namespace gives the head Ray's default ports (6379, 8265, ...)
without colliding with any other cluster on the machine; clients join it with
``nsenter --net=/proc/PID/ns/net`` (see ``fixtures_autoscaling.py``). When this process (PID 1
of the namespace) ends, the kernel ends every process left in the namespace.

CONFIG.json: ``{"head": {...head resources...}, "worker_node_types": {...}, "config": {...},
"autoscaler_v2": false}`` (``true``: Ray's autoscaler v2, as KubeRay runs it).
Protocol: one line ``READY <gcs address>`` on stdout once the head is up; then one command per
line on stdin, each answered by one JSON line on stdout:

* ``status``: ``{"nodes": [{"id", "alive", "resources"}], "requests": [bundles],
  "active_by_type": {...}, "node_types": {...}}``: every node the GCS knows (dead ones too),
  the resource request the autoscaler holds (what ``request_resources`` last asked), and the
  autoscaler's last count of live nodes by type;
* ``freeze`` / ``thaw``: stop and continue the autoscaler's monitor process (a cloud with no
  capacity left: no node is added while frozen);
* ``stop`` (or end of input): shut the cluster down and exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

#: The wheel's missing ``fake_multi_node/example.yaml``: a fake multi-node provider with no
#: updaters, no setup commands and the default head type.
BASE_CONFIG = {
    "cluster_name": "reelfarm-autoscaling-test",
    "max_workers": 8,
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 0.1,
    "provider": {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    },
    "auth": {},
    "docker": {},
    "head_node_type": "ray.head.default",
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}


def _provide_example_yaml(scratch: str) -> None:
    """Give the fake provider its defaults file, ``fake_multi_node/example.yaml``, which the
    wheel does not ship: ``AutoscalingCluster`` builds its config from it, and the v2
    autoscaler reads it as the provider's defaults. Ray's installation is shared and stays as
    it is: a copy of the package's folder, with the file, is bind-mounted over the original in
    this process's mount namespace only (``unshare --mount-proc`` made it private)."""
    import ray.autoscaler._private.fake_multi_node as fake

    folder = os.path.dirname(fake.__file__)
    if os.path.exists(os.path.join(folder, "example.yaml")):
        return
    overlay = os.path.join(scratch, "fake_multi_node")
    shutil.copytree(folder, overlay, ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(overlay, "example.yaml"), "w") as f:
        json.dump({**BASE_CONFIG, "available_node_types": {}}, f)  # JSON is YAML
    subprocess.run(["mount", "--bind", overlay, folder], check=True)


def _status(address: str, node_types: dict, v2: bool) -> dict:
    import ray
    from ray._private import ray_constants
    from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    nodes = [{"id": n["NodeID"], "alive": bool(n["Alive"]), "resources": n["Resources"]}
             for n in ray.nodes()]
    if v2:  # the cluster resource constraint the v2 autoscaler holds, from the GCS
        from ray.autoscaler.v2.sdk import get_cluster_status

        demands = get_cluster_status(address).resource_demands.cluster_constraint_demand
        requests = [dict(r.bundle) for d in demands for r in d.bundles_by_count
                    for _ in range(r.count)]
    else:  # what request_resources wrote for the v1 monitor
        raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
        requests = json.loads(raw) if raw else []
    report = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    launched: dict[str, int] = {}
    if report:
        summary = json.loads(report).get("autoscaler_report") or {}
        launched = summary.get("active_nodes") or {}
    return {"address": address, "nodes": nodes, "requests": requests,
            "active_by_type": launched, "node_types": node_types}


def _monitors():
    import psutil

    return [p for p in psutil.process_iter(["cmdline"])
            if any(a.endswith(("autoscaler/_private/monitor.py", "autoscaler/v2/monitor.py"))
                   for a in p.info["cmdline"] or [])]


def _signal_monitor(sig: int) -> dict:
    found = _monitors()
    for p in found:
        p.send_signal(sig)
    return {"monitors": len(found)}


def _reap_orphans() -> None:
    """PID 1 of a namespace inherits every orphan (the daemons ``ray start`` leaves behind):
    reap them as they exit, so that ``ray stop`` sees them gone."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.5)


def main(config_path: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    threading.Thread(target=_reap_orphans, daemon=True).start()
    with open(config_path) as f:
        spec = json.load(f)
    _provide_example_yaml(os.path.dirname(os.path.abspath(config_path)))
    from ray.cluster_utils import AutoscalingCluster

    v2 = bool(spec.get("autoscaler_v2"))
    cluster = AutoscalingCluster(head_resources=dict(spec["head"]),
                                 worker_node_types=spec["worker_node_types"], autoscaler_v2=v2,
                                 **spec.get("config", {}))
    # The protocol gets the real stdout; everything else printed here or by `ray start`/`ray stop`
    # (which inherit file descriptor 1) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    cluster.start()
    import ray

    address = "127.0.0.1:6379"
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    print(f"READY {address}", file=proto)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "status":
                print(json.dumps(_status(address, spec["worker_node_types"], v2)), file=proto)
            elif cmd == "freeze":  # the autoscaler stops acting: no node is added or removed
                print(json.dumps(_signal_monitor(signal.SIGSTOP)), file=proto)
            elif cmd == "thaw":
                print(json.dumps(_signal_monitor(signal.SIGCONT)), file=proto)
            elif cmd == "stop":
                break
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), file=proto)
    finally:
        _signal_monitor(signal.SIGCONT)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
