"""``reelfarm runs``: the run history kept in a store (no cluster needed)."""

from __future__ import annotations

import json

import click

from ..store import open_store
from ..store.runs import history
from .common import _fail, _guard, _store_options
from .options import resolve_locations


@click.command("runs")
@click.argument("story", required=False)
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON list instead.")
@_guard
def runs_cmd(story: str | None, store_url: str | None, s3_endpoint: str | None,
             as_json: bool) -> None:
    """List the renders of STORY (of every story without it), oldest first.

    \b
    For each run: who started it (user@host), when, the reelfarm version, its priority,
    its status (running renders update their record as they go), task counts and duration.
    Examples:
      reelfarm runs heist
      reelfarm runs --store s3://studio/store --json | jq '.[] | select(.status == "failed")'
    """
    from ..run.progress import fmt_duration
    from ..store.base import run_path

    if story is not None:
        try:
            run_path(story, "x")
        except ValueError:
            _fail(f"{story!r} is not a story name")
    url, endpoint = resolve_locations(store_url, s3_endpoint)
    store = open_store(url, s3_endpoint=endpoint, create=False)
    try:
        found = history(store, story)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(f"no runs{f' of {story}' if story else ''} in {store.url}", err=True)
        return
    header = ("STORY", "RUN ID", "STATUS", "USER", "STARTED", "VERSION", "PRIO", "TASKS",
              "DURATION")
    rows = [header]
    for s in found:
        t = s["totals"]
        tasks = (f"{t.get('rendered', 0)}r {t.get('cached', 0)}c {t.get('failed', 0)}f"
                 f"/{t.get('unique', 0)}")
        status = s["status"] + ("?" if s["stale"] else "")
        rows.append((s["story"] or "-", s["run_id"] or "-", status, s["user"] or "-",
                     s["started"] or "-", s["version"] or "-",
                     "-" if s["priority"] is None else str(s["priority"]), tasks,
                     "-" if s["seconds"] is None else fmt_duration(s["seconds"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if any(s["stale"] for s in found):
        click.echo("?: still marked running, but not updated for minutes: its render died",
                   err=True)


COMMANDS = [runs_cmd]
