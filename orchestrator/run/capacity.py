"""Capacity from Ray's autoscaler: which node types it can launch, whether a pool's need fits
one of them, and the resources a run asks it for.

A cluster that scales from zero (a head with no CPUs, worker groups at 0 replicas) offers no
node for renderer actors until the autoscaler adds one, and the autoscaler adds one only when
something asks: :class:`Demand` asks with ``ray.autoscaler.sdk.request_resources``, one bundle
per actor the work wants (shaped like its pool), and withdraws the request when the work is
done so the cluster scales back to zero.

The pure parts (:class:`NodeType`, :func:`type_fits`, :func:`launchable_for`,
:func:`bundles`, :func:`shape_text`, :func:`awaited_text`) need no Ray. :func:`discover`
reads, from the connected cluster, whether an autoscaler runs and which node types it can
launch:

1. the cluster config an autoscaler reports to the GCS (Ray's ``ClusterConfig``: node groups
   with their resources and maximum counts), when one is reported;
2. otherwise, when the autoscaler's status in the GCS says it runs, the ``available_node_types``
   of the config file its monitor process was started with (``--autoscaling-config``), read by
   a zero-CPU task on the head node, where ``ray up`` and ``ray start --head
   --autoscaling-config`` run it;
3. an autoscaler whose node types cannot be read (KubeRay runs it in a container of its own) is
   still an autoscaler: nothing is refused up front, and the wait for its nodes is bounded by
   ``--capacity-timeout``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Resources a node type's config need not declare: Ray sizes them from the machine it starts.
MACHINE_SIZED = frozenset({"memory", "object_store_memory"})

#: Seconds to wait for the head node to say which autoscaling config its monitor runs with.
HEAD_QUERY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can launch."""

    name: str
    resources: Mapping[str, float] = field(default_factory=dict)
    max_workers: int | None = None  # None: no bound of its own is known

    def text(self) -> str:
        bound = "" if self.max_workers is None else f", up to {self.max_workers}"
        shown = {k: v for k, v in self.resources.items() if k not in MACHINE_SIZED}
        return f"{self.name} {shape_text(shown)}{bound}"


@dataclass(frozen=True)
class Autoscaler:
    """What is known of the cluster's autoscaler."""

    node_types: tuple[NodeType, ...] | None  # None: it runs, but its node types are unknown
    source: str  # where the node types were read from, for messages


# -- pure ----------------------------------------------------------------------------------
def type_fits(need: Mapping[str, float], node_type: NodeType) -> bool:
    """Whether one node of ``node_type`` could hold one actor needing ``need``."""
    if node_type.max_workers == 0:
        return False
    for k, v in need.items():
        if v <= 0:
            continue
        have = node_type.resources.get(k)
        if have is None:
            if k in MACHINE_SIZED:
                continue
            return False
        if have < v:
            return False
    return True


def launchable_for(need: Mapping[str, float], types: Iterable[NodeType]) -> list[NodeType]:
    """The node types one of which could hold an actor needing ``need``."""
    return [t for t in types if type_fits(need, t)]


def bundles(wants: Sequence[tuple[Mapping[str, float], int]],
            cap: int | None = None) -> list[dict[str, float]]:
    """One resource bundle per actor wanted: ``wants`` is ``(need, count)`` per pool; at most
    ``cap`` bundles in all, shared round-robin between the pools so that none is left out."""
    left = [[dict(need), n] for need, n in wants if n > 0 and need]
    limit = sum(n for _, n in left) if cap is None else max(0, cap)
    out: list[dict[str, float]] = []
    while left and len(out) < limit:
        for item in list(left):
            if len(out) >= limit:
                break
            out.append(dict(item[0]))
            item[1] -= 1
            if item[1] == 0:
                left.remove(item)
    return out


def shape_text(res: Mapping[str, float]) -> str:
    """``{CPU: 1, GPU: 1}``; memory in GiB."""
    parts = []
    for k, v in sorted(res.items()):
        if k in MACHINE_SIZED:
            parts.append(f"{k}: {v / 1024**3:g}GiB")
        else:
            parts.append(f"{k}: {v:g}")
    return "{" + ", ".join(parts) + "}"


def awaited_text(wanted: Sequence[Mapping[str, float]]) -> str:
    """``4 × {GPU: 1} and 2 × {CPU: 1}``: bundles grouped by shape, in order of first sight."""
    counts: dict[str, int] = {}
    for b in wanted:
        s = shape_text(b)
        counts[s] = counts.get(s, 0) + 1
    return " and ".join(f"{n} × {s}" for s, n in counts.items())


def node_types_from_config(config: Mapping[str, Any]) -> tuple[NodeType, ...]:
    """The worker node types of an autoscaling config (``available_node_types``); the head's
    type is left out (its node is live or never launched). A global ``max_workers: 0`` means
    nothing can be launched."""
    types = config.get("available_node_types")
    if not isinstance(types, Mapping):
        return ()
    head = config.get("head_node_type")
    overall = config.get("max_workers")
    out = []
    for name, t in types.items():
        if name == head or not isinstance(t, Mapping):
            continue
        res = {}
        for k, v in (t.get("resources") or {}).items():
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                res[str(k)] = f
        bound = t.get("max_workers")
        bound = int(bound) if isinstance(bound, (int, float)) else None
        if isinstance(overall, (int, float)) and overall == 0:
            bound = 0
        out.append(NodeType(str(name), res, bound))
    return tuple(out)


# -- Ray -----------------------------------------------------------------------------------
def discover() -> Autoscaler | None:
    """The connected cluster's autoscaler, or ``None`` when none runs."""
    types = _types_from_cluster_config()
    if types:
        return Autoscaler(types, "the cluster config in the GCS")
    if not _autoscaler_runs():
        return None
    config = _monitor_config()
    if config is None:
        return Autoscaler(None, "unknown")
    return Autoscaler(node_types_from_config(config), "the autoscaler's config on the head")


def _types_from_cluster_config() -> tuple[NodeType, ...]:
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - a Ray without it: look elsewhere
        return ()
    if config is None:
        return ()
    return tuple(
        NodeType(g.name, {k: float(v) for k, v in g.resources.items()},
                 None if g.max_count < 0 else int(g.max_count))
        for g in config.node_group_configs)


def _autoscaler_runs() -> bool:
    """Autoscaler v2 says so in the GCS; the v1 monitor writes its status there, with an
    autoscaler report only when it has an autoscaling config."""
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        if is_autoscaler_v2(fetch_from_server=True):
            return True
    except Exception:  # noqa: BLE001 - then ask the v1 monitor
        pass
    try:
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    except Exception:  # noqa: BLE001 - no status: no autoscaler
        return False
    if not raw:
        return False
    try:
        return launches_nodes(json.loads(raw))
    except ValueError:
        return False


def launches_nodes(status: Any) -> bool:
    """Whether the v1 monitor's status (``DEBUG_AUTOSCALING_STATUS``) is that of an autoscaler
    that launches nodes. Every head runs a monitor; without an autoscaling config it uses
    Ray's read-only provider, which only reports the live nodes, each as a type of its own named
    ``node_<node id>``. An autoscaler with a real provider names its node types (``ray.head.
    default``, ``gpu``, a KubeRay group)."""
    if not isinstance(status, dict):
        return False
    report = status.get("autoscaler_report")
    mapping = report.get("node_type_mapping") if isinstance(report, dict) else None
    if not isinstance(mapping, dict):
        return False
    return any(t != f"node_{node}" for node, t in mapping.items())


def _read_monitor_config() -> dict[str, Any] | None:
    """On the head node: the autoscaling config the autoscaler's monitor process was started
    with, or ``None`` when no such process is visible here."""
    import psutil
    import yaml

    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if not any(part.endswith("monitor.py") for part in cmd):
            continue
        for i, arg in enumerate(cmd):
            path = None
            if arg.startswith("--autoscaling-config="):
                path = arg.split("=", 1)[1]
            elif arg == "--autoscaling-config" and i + 1 < len(cmd):
                path = cmd[i + 1]
            if path:
                try:
                    with open(path) as f:
                        doc = yaml.safe_load(f)
                except (OSError, yaml.YAMLError):
                    return None
                return doc if isinstance(doc, dict) else None
    return None


def _monitor_config() -> dict[str, Any] | None:
    import ray

    try:
        task = ray.remote(_read_monitor_config).options(
            num_cpus=0, max_retries=0, resources={"node:__internal_head__": 0.001})
        return ray.get(task.remote(), timeout=HEAD_QUERY_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - unknown node types, not an error
        return None


class Demand:
    """The resources this run asks the autoscaler for. ``request_resources`` replaces the
    cluster's previous request, so a request is only sent when it changes."""

    def __init__(self) -> None:
        self.sent: list[dict[str, float]] = []

    def request(self, wanted: list[dict[str, float]]) -> None:
        if wanted == self.sent:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=wanted)
        self.sent = wanted

    def withdraw(self) -> None:
        """Ask for nothing: idle nodes the request kept are scaled down."""
        if not self.sent:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[])
        self.sent = []


def slots(need: Mapping[str, float], nodes: Iterable[Mapping[str, float]]) -> int:
    """How many actors needing ``need`` the ``nodes`` (their total resources) hold."""
    want = {k: v for k, v in need.items() if v > 0}
    return sum(min((math.floor(n.get(k, 0.0) / v) for k, v in want.items()), default=1)
               for n in nodes)


def shortfall(wanted: Sequence[Mapping[str, float]],
              nodes: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """The bundles of ``wanted`` that the live ``nodes`` cannot hold (counted shape by shape)."""
    counts: dict[str, tuple[dict[str, float], int]] = {}
    for b in wanted:
        s = shape_text(b)
        counts[s] = (dict(b), counts.get(s, ({}, 0))[1] + 1)
    out: list[dict[str, float]] = []
    for shape, n in counts.values():
        out += [dict(shape) for _ in range(max(0, n - slots(shape, nodes)))]
    return out
