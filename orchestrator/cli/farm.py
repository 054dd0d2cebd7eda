"""``reelfarm farm``: the cluster's farm of renderer actors, and the jobs queued on it."""

from __future__ import annotations

import json
from typing import Any

import click

from ..run.render import connect_ray
from ..spec.urls import printable
from .common import _fail, _guard

STATUS_TIMEOUT_S = 30.0


@click.command("farm")
@click.option("--address", envvar="RAY_ADDRESS", metavar="HOST:PORT",
              help="Ray cluster whose farm to show: the head's GCS address (HEAD:6379), "
                   "ray://HEAD:10001 or auto [default: $RAY_ADDRESS].")
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON document instead.")
@_guard
def farm(address: str | None, as_json: bool) -> None:
    """Show the cluster's farm: jobs in line (priority, leases, place), and every renderer
    actor with its node, warm model and job.

    \b
    Every render, submit and nightly on a cluster leases its renderer actors from one farm,
    which keeps models warm between jobs. This only reads: a cluster without a farm gets none.
    Examples:
      reelfarm farm --address ray-head:6379
      reelfarm farm --json | jq '.jobs[] | {job, priority, place, leases}'
    """
    import ray

    from ..run.farm import farm_name, get_farm

    if not (address or "").strip():
        _fail("no Ray cluster given: pass --address HEAD:6379 or set RAY_ADDRESS "
              "(`reelfarm farm` never starts a cluster of its own)")
    connect_ray(address)
    actor = get_farm(create=False)
    if actor is None:
        doc: dict[str, Any] = {"farm": None, "jobs": [], "workers": []}
    else:
        try:
            doc = ray.get(actor.status.remote(), timeout=STATUS_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - a farm that died under us: one line
            _fail(f"the farm {farm_name()} did not answer: {type(e).__name__}", code=1)
            return
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if doc["farm"] is None:
        click.echo(f"no farm on this cluster (no job has rendered since it started, or the "
                   f"farm {farm_name()} stopped)", err=True)
        return
    _print(doc)


def _print(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200, soft_wrap=True, highlight=False)
    workers = doc["workers"]
    console.print(f"farm {doc['farm']}: {len(doc['jobs'])} jobs, {len(workers)} renderer "
                  f"actors; idle actors exit after {doc['idle_timeout_s']:g}s", markup=False)
    jt = Table(title="jobs", title_justify="left", box=None, header_style="bold")
    for col in ("job", "story", "user", "priority", "effective", "place", "leases", "busy",
                "ready+running", "unfinished", "waited"):
        jt.add_column(col)
    for j in doc["jobs"]:
        jt.add_row(printable(j["job"]), printable(j["story"]), printable(j["user"]),
                   str(j["priority"]), f"{j['effective_priority']:g}",
                   str(j["place"]) if j["place"] else "-", str(j["leases"]), str(j["busy"]),
                   str(j["want"]), str(j["unfinished"]), f"{j['waiting_s']:g}s")
    console.print(jt, markup=False)
    wt = Table(title="renderer actors", title_justify="left", box=None, header_style="bold")
    for col in ("id", "pool", "node", "warm model", "state", "job"):
        wt.add_column(col)
    for w in workers:
        state = w["state"] + (f" {w['idle_s']:g}s" if w.get("idle_s") is not None else "")
        wt.add_row(str(w["id"]), printable(w["pool"]), printable(w["node"]),
                   printable(w["model"] or "-"), state, printable(w["job"] or "-"))
    console.print(wt, markup=False)


COMMANDS = [farm]
