"""``reelfarm validate``, ``plan``, ``render`` and ``schema``: one story, manifest to masters."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..plan.expand import PlanError
from ..run.driver import SchedulerOptions
from ..run.render import (
    EXIT_INVALID,
    RenderOptions,
    UnknownShots,
    check_force,
    dumps,
    plan_story,
    render_story,
)
from ..spec.urls import canonical_location, printable
from ..store import StoreMissing, open_store
from .common import (
    _fail,
    _guard,
    _load,
    _plan_problems,
    _print_problems,
    _read,
    _store_options,
    check_out,
    open_writable_store,
)
from .options import (
    SECONDS,
    capacity_timeout_option,
    farm_options,
    resolve_locations,
    resolve_s3_endpoint,
)

# -- validate ------------------------------------------------------------------------------


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--s3-endpoint", metavar="URL",
              help="Endpoint of an S3-compatible server, for s3:// manifests "
                   "[default: $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL].")
@_guard
def validate(files: tuple[str, ...], s3_endpoint: str | None) -> None:
    """Check story manifests (paths or s3:// URLs); one line per problem with FILE:LINE:COL.

    \b
    Exit 0 when every file is valid, 2 otherwise.
    Example:
      reelfarm validate manifests/*.yaml
    """
    from ..plan.expand import SHAPE_ONLY, expand

    s3_endpoint = resolve_s3_endpoint(s3_endpoint, *files)
    bad = False
    for f in files:
        m, problems = _read(f, s3_endpoint)
        if m is not None:
            try:
                plan = expand(m.story, encoder=SHAPE_ONLY)  # no keys: no ffmpeg needed
            except PlanError as e:
                problems = _plan_problems(m, e)
        if problems:
            _print_problems(problems)
            bad = True
            continue
        s = m.story.spec
        shots = sum(len(seg.shots) for seg in s.segments)
        click.echo(
            f"{f}: ok ({len(s.segments)} segments, {shots} shots, {len(plan.branches)} masters, "
            f"{len(plan.tasks)} render tasks)"
        )
    sys.exit(EXIT_INVALID if bad else 0)


# -- plan ----------------------------------------------------------------------------------


@click.command()
@click.argument("file")
@_store_options
@click.option("--force", "force", multiple=True, metavar="SHOT_ID",
              help="Treat this shot as not cached (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON document instead.")
@_guard
def plan(file: str, store_url: str | None, s3_endpoint: str | None, force: tuple[str, ...],
         as_json: bool) -> None:
    """Show what a render would do: branches, unique vs naive tasks, cached vs to render.

    \b
    Nothing is rendered. Every render key is computed up front, so the plan says exactly
    which shots are cached in the store and why the others must render.
    Examples:
      reelfarm plan manifests/heist.yaml
      reelfarm plan manifests/heist.yaml --store s3://studio-renders/reelfarm --json
    """
    from ..plan.expand import expand
    from ..run.driver import Scheduler
    from ..run.why import explain
    from ..store.lookup import NEW_KEY

    store_url, s3_endpoint = resolve_locations(store_url, s3_endpoint, file)
    m = _load(file, s3_endpoint)
    try:  # plan only reads: a store that does not exist is not created
        store = open_store(store_url, s3_endpoint=s3_endpoint, create=False)
    except StoreMissing as e:
        store = None
        click.echo(f"note: {e}: every task is planned as uncached (render creates it)",
                   err=True)
    try:
        p = plan_story(m.story, store) if store is not None else expand(m.story, salt="")
    except PlanError as e:
        _print_problems(_plan_problems(m, e))
        sys.exit(EXIT_INVALID)
    try:
        check_force(p, force)
    except UnknownShots as e:
        _fail(str(e))
    sched = Scheduler(p, store, store_url=store_url)  # type: ignore[arg-type]
    if store is not None:
        sched.lookup(set(force))
    else:
        for run in sched.runs.values():
            forced = run.task.shot in force or run.task.id in force
            run.reason = "forced" if forced else NEW_KEY  # no store: nothing was rendered
    explain(p, sched.runs, store, story_seed=m.story.spec.seed, force=set(force))
    doc = plan_document(sched)
    if as_json:
        click.echo(dumps(doc), nl=False)
        return
    _print_plan(sched, doc)


def plan_document(sched) -> dict[str, Any]:
    p = sched.plan
    cached = sum(1 for r in sched.runs.values() if r.status == "cached")
    return {
        "story": p.story,
        "branches": [
            {"name": b.name, "segments": b.segments, "choices": b.choices, "shots": b.shots,
             "tasks": b.tasks}
            for b in p.branches
        ],
        "tasks": {
            "unique": len(p.tasks),
            "naive": p.naive_tasks,
            "cached": cached,
            "to_render": len(p.tasks) - cached,
        },
        "critical_path_seconds": round(p.critical_path_seconds, 3),
        "encoder": p.encoder,
        "notes": [f"{t.id}: {t.note}" for t in p.tasks if t.note],
        "task_list": [
            {"id": t.id, "shot": t.shot, "segment": t.segment, "key": t.key,
             "upstream": t.upstream, "frames": t.frames, "backend": t.backend,
             "status": "cached" if sched.runs[t.id].status == "cached" else "to_render",
             "reason": sched.runs[t.id].reason, "est_seconds": round(t.est_seconds, 3)}
            for t in p.tasks
        ],
    }


def _print_plan(sched, doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..run.progress import fmt_duration

    def text(value: Any) -> str:  # user text: no control characters, no rich markup
        return escape(printable(value))

    console = Console()
    p = sched.plan
    t = doc["tasks"]
    console.print(f"[bold]{text(p.story)}[/bold] {text(p.title)}".rstrip())
    console.print(
        f"{len(p.branches)} masters · {t['unique']} unique render tasks "
        f"(naive per-branch count {t['naive']}) · {t['cached']} cached · "
        f"{t['to_render']} to render · critical path ≈ {fmt_duration(p.critical_path_seconds)}"
    )
    if p.encoder:
        e = p.encoder
        console.print(f"encoder: ffmpeg {e['ffmpeg']}, x264 {e['x264']} ({e['source']})",
                      markup=False, highlight=False)
    for note in doc["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)
    bt = Table(title="branches", title_justify="left", box=None, header_style="bold")
    for col in ("master", "path", "choices", "shots"):
        bt.add_column(col)
    for b in p.branches:
        bt.add_row(text(b.name), text(" → ".join(b.segments)), text(" / ".join(b.choices)) or "-",
                   str(len(b.shots)))
    console.print(bt)
    tt = Table(title="tasks", title_justify="left", box=None, header_style="bold")
    for col in ("task", "segment", "frames", "conditioned on", "key", "status", "why"):
        tt.add_column(col)
    for task in p.tasks:
        r = sched.runs[task.id]
        status = "[green]cached[/green]" if r.status == "cached" else "[yellow]render[/yellow]"
        tt.add_row(text(task.id), text(task.segment), str(task.frames),
                   text(task.upstream or "-"), task.key[:12], status,
                   "" if r.reason == "cached" else text(r.reason))
    console.print(tt)


# -- render --------------------------------------------------------------------------------


def _check_run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..store.base import run_path

    if value is not None:
        try:
            run_path("story", value)
        except ValueError:
            raise click.BadParameter("letters, digits, '.', '_' and '-' only") from None
    return value


@click.command()
@click.argument("file")
@_store_options
@click.option("--out", "out", metavar="DIR|s3://...",
              help="Where masters, branches.json and report.json go [default: ./renders/<story>/].")
@click.option("--address", envvar="RAY_ADDRESS", metavar="HOST:PORT",
              help="Ray cluster to join: the head's GCS address (HEAD:6379), ray://HEAD:10001 "
              "or auto, never the dashboard's http:// URL [default: $RAY_ADDRESS; without "
              "either, start a local Ray].")
@click.option("--force", multiple=True, metavar="SHOT_ID", help="Re-render this shot (repeatable).")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0, 20),
              help="Retries of a failing task before it is marked failed.")
@click.option("--max-workers", type=click.IntRange(1), help="Cap on renderer actors.")
@click.option("--task-timeout", type=SECONDS, metavar="SECONDS",
              help="Kill and replace an actor whose render runs longer than this. Default: 20 "
                   "times the shot's estimate, and at least 15 minutes.")
@capacity_timeout_option
@click.option("--preview-first", is_flag=True,
              help="First render the opening segment and each branch's first segment of its own, "
              "so every choice's outcome can be previewed early.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the summary.")
@click.option("--plain", is_flag=True, help="One log line per event (the default without a TTY).")
@click.option("--run-id", callback=_check_run_id,
              help="Id of the run record (runs/<story>/<id>.json) [default: UTC time + random].")
@click.option("--package", "package_", is_flag=True,
              help="Then package the story for interactive playback into --out "
              "(see `reelfarm package`).")
@farm_options
@_guard
def render(file: str, store_url: str | None, s3_endpoint: str | None, out: str | None,
           address: str | None, force: tuple[str, ...], retries: int, max_workers: int | None,
           task_timeout: float | None, capacity_timeout: float, preview_first: bool,
           quiet: bool, plain: bool, run_id: str | None, package_: bool, priority: int,
           idle_timeout: float) -> None:
    """Render what is missing and assemble one master per branch.

    \b
    Shots already in the store are not rendered again; a branch whose clips did not change is
    not re-assembled. Renders on a cluster share its farm of warm renderer actors with every
    other job (see `reelfarm farm`), by --priority. Exit 0 when every master is written, 1
    when some shots failed (every other branch is still finished), 2 for invalid input, 130
    when interrupted (143 on SIGTERM).
    Examples:
      reelfarm render manifests/heist.yaml
      reelfarm render manifests/heist.yaml --out renders/heist --force mara-closeup
      reelfarm render manifests/heist.yaml --priority 90
      RAY_ADDRESS=ray-head:6379 reelfarm render s3://studio/stories/heist.yaml \\
          --store s3://studio-renders/reelfarm --out s3://studio-renders/out/heist
    """
    store_url, s3_endpoint = resolve_locations(store_url, s3_endpoint, file, out or "")
    m = _load(file, s3_endpoint)
    # Resolved once, here on the driver: actors and assembly tasks on other nodes or in
    # another working directory get the same absolute locations.
    out = canonical_location(out or f"./renders/{m.story.metadata.name}")
    check_out(out, s3_endpoint)
    open_writable_store(store_url, s3_endpoint).close()
    opts = RenderOptions(
        store=store_url,
        s3_endpoint=s3_endpoint,
        out=out,
        address=address,
        force=frozenset(force),
        scheduler=SchedulerOptions(retries=retries, max_workers=max_workers,
                                   task_timeout=task_timeout, preview_first=preview_first,
                                   capacity_timeout=capacity_timeout, priority=priority,
                                   idle_timeout=idle_timeout),
        progress="quiet" if quiet else ("plain" if plain else "auto"),
        run_id=run_id,
    )
    try:
        result = render_story(m.story, opts)
    except PlanError as e:
        _print_problems(_plan_problems(m, e))
        sys.exit(EXIT_INVALID)
    except UnknownShots as e:
        _fail(str(e))
    if result.report["status"] == "interrupted":
        import signal

        # Stopping: a further Ctrl-C or SIGTERM while the summary prints and Ray disconnects
        # changes nothing and prints no traceback.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    _print_summary(result)
    if package_:
        from .delivery import package_after_render

        package_after_render(m, store_url, s3_endpoint, result)
    sys.exit(result.exit_code)


def _print_summary(result) -> None:
    r = result.report
    t = r["totals"]
    idle = t["rendered"] == 0 and t["failed"] == 0 and t["blocked"] == 0 and (
        t["cached"] == t["unique"])
    if idle and r["status"] != "interrupted":
        what = f"nothing to render: all {t['unique']} tasks cached"
    else:
        what = f"rendered {t['rendered']}, cached {t['cached']}"
        if t["failed"] or t["blocked"]:
            what += f", failed {t['failed']}, blocked {t['blocked']}"
    masters = f"masters {t['masters']}/{len(r['branches'])} ({t['masters_assembled']} assembled)"
    click.echo(f"{r['story']}: {r['status']}: {what}; {masters} in {r['seconds']:.1f}s", err=True)
    for f in r["failures"]:
        click.echo(printable(f"  failed {f['id']} on {f['node']}: {f['error']}"), err=True)
    if r["failures"]:
        click.echo(printable(f"  a failed shot's log and traceback: reelfarm logs {r['run_id']} "
                             f"--shot SHOT --store {r['store']}"), err=True)
    for e in r.get("errors") or []:
        click.echo(printable(f"  error: {e}"), err=True)
    for rel in r.get("removed") or []:
        click.echo(f"  removed {rel}: no finished branch of this run has that master", err=True)
    for b in result.branches:
        if b["master"]:
            click.echo(f"{result.out.rstrip('/')}/{b['master']['path']}")


# -- schema --------------------------------------------------------------------------------


@click.command()
def schema() -> None:
    """Print the JSON Schema of the story manifest (reelfarm/v1).

    \b
    Example:
      reelfarm schema > story.schema.json
    """
    from ..spec.schema import story_json_schema

    click.echo(json.dumps(story_json_schema(), indent=2, sort_keys=True))


COMMANDS = [validate, plan, render, schema]
