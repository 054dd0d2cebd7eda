"""``reelfarm nightly``: the batch entry point the Kubernetes schedulers run."""

from __future__ import annotations

import sys

import click

from ..jobs.nightly import (
    INVALID,
    SKIPPED,
    UNCHANGED,
    NightlyError,
    NightlyOptions,
    StoryOutcome,
    dry_run,
    run_nightly,
)
from ..run.driver import SchedulerOptions
from ..spec.urls import canonical_location, printable
from .common import _fail, _guard, _store_options, check_out, open_writable_store
from .options import SECONDS, capacity_timeout_option, farm_options, resolve_locations


@click.command()
@click.argument("prefix")
@_store_options
@click.option("--out", "out", required=True, envvar="REELFARM_OUT", metavar="DIR|s3://...",
              help="Where outputs go: each story's under <out>/<story name>/, and the run's "
                   "summary as <out>/nightly-<run id>.json.")
@click.option("--address", envvar="RAY_ADDRESS",
              help="Ray cluster to join (ray://, host:port or auto); default: start a local Ray.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0, 20),
              help="Retries of a failing task before it is marked failed.")
@click.option("--max-workers", type=click.IntRange(1), help="Cap on renderer actors.")
@click.option("--task-timeout", type=SECONDS, metavar="SECONDS",
              help="Kill and replace an actor whose render runs longer than this. Default: 20 "
                   "times the shot's estimate, and at least 15 minutes.")
@capacity_timeout_option
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files whose path under PREFIX matches (repeatable; * matches across /).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Leave out files whose path under PREFIX matches (repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Print the night's plan (stories, tasks to render, cached) and stop: "
                   "nothing renders, nothing is written, no store is created.")
@click.option("--quiet", "-q", is_flag=True, help="No render progress; only the summary.")
@click.option("--plain", is_flag=True, help="One log line per event (the default without a TTY).")
@farm_options
@_guard
def nightly(prefix: str, store_url: str | None, s3_endpoint: str | None, out: str,
            address: str | None, retries: int, max_workers: int | None,
            task_timeout: float | None, capacity_timeout: float, include: tuple[str, ...],
            exclude: tuple[str, ...], dry_run: bool, quiet: bool, plain: bool, priority: int,
            idle_timeout: float) -> None:
    """Render every story manifest under PREFIX, incrementally.

    \b
    PREFIX is an s3:// prefix or a local directory; every .yaml, .yml and .json file under it
    that says apiVersion: reelfarm/v1 and kind: Story is a story; other files (drafts,
    schemas) are skipped and listed. Each story renders into <out>/<story name>/. A story
    whose shots and masters are all cached and already published is left alone (nothing
    renders, nothing is written);
    a changed story renders only its new shots and re-assembles only the branches that hold
    them. The changed stories render as one job on one pool of renderers: a shot several
    stories share (the same render key) renders once. An invalid manifest or a failing story
    is reported and the others still render.
    A table of stories is printed, and the run's summary is written to
    <out>/nightly-<run id>.json.
    Exit 0 when every story is rendered or unchanged (or the file skipped), 1 when any failed
    or is invalid, 2 when PREFIX holds no manifests or the store cannot be used.
    Examples:
      reelfarm nightly s3://studio/stories --store s3://studio-renders/reelfarm \\
          --out s3://studio-renders/out
      reelfarm nightly stories/ --out renders/ --exclude 'drafts/*' --dry-run
    """
    store_url, s3_endpoint = resolve_locations(store_url, s3_endpoint, prefix, out)
    out = canonical_location(out)
    if not dry_run:  # a dry run writes nothing and creates no store
        check_out(out, s3_endpoint)
        open_writable_store(store_url, s3_endpoint).close()
    opts = NightlyOptions(
        store=store_url,
        out=out,
        s3_endpoint=s3_endpoint,
        address=address,
        scheduler=SchedulerOptions(retries=retries, max_workers=max_workers,
                                   task_timeout=task_timeout,
                                   capacity_timeout=capacity_timeout, priority=priority,
                                   idle_timeout=idle_timeout),
        progress="quiet" if quiet else ("plain" if plain else "auto"),
        include=include,
        exclude=exclude,
    )
    if dry_run:
        _dry_run(prefix, opts)
        return

    def on_story(s: StoryOutcome) -> None:
        click.echo(printable(f"{s.story or s.source}: {_what(s)}"), err=True)

    try:
        result = run_nightly(prefix, opts, on_story=on_story)
    except NightlyError as e:
        _fail(str(e))
        return
    _print_table(result.stories)
    for s in result.stories:
        for p in s.problems:
            click.echo(printable(f"{s.status} {s.story or s.source}: {p}"), err=True)
    doc = result.document()
    t = doc["totals"]
    click.echo(
        f"nightly {result.run_id}: {t['stories']} stories: {t['rendered']} rendered, "
        f"{t['unchanged']} unchanged, {t['failed']} failed, {t['invalid']} invalid, "
        f"{t['skipped']} files skipped; "
        f"summary {result.summary}",
        err=True,
    )
    sys.exit(result.exit_code)


def _dry_run(prefix: str, opts: NightlyOptions) -> None:
    from rich.console import Console
    from rich.table import Table

    try:
        plan = dry_run(prefix, opts)
    except NightlyError as e:
        _fail(str(e))
        return
    table = Table(box=None, header_style="bold")
    for col, just in (("story", "left"), ("status", "left"), ("tasks", "right"),
                      ("cached", "right"), ("to render", "right"), ("masters", "right"),
                      ("source", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in plan.stories:
        table.add_row(s.story or "-", s.status, str(s.tasks), str(s.cached), str(s.to_render),
                      str(s.masters), s.source)
    Console(width=200, soft_wrap=True, highlight=False).print(table, markup=False)
    for s in plan.stories:
        for p in s.problems:
            click.echo(f"{s.status} {s.story or s.source}: {p}", err=True)
    t = plan.document()["totals"]
    where = "" if plan.store_exists else " (the store does not exist yet: nothing is cached)"
    click.echo(
        f"dry run: {t['stories']} stories, {t['skipped']} skipped, {t['invalid']} invalid; "
        f"{t['tasks']} tasks: {t['cached']} cached, {t['to_render']} to render{where}; "
        "nothing rendered",
        err=True,
    )
    sys.exit(plan.exit_code)


def _what(s: StoryOutcome) -> str:
    if s.status == SKIPPED:
        return "skipped (not a reelfarm/v1 Story)"
    if s.status == UNCHANGED:
        return f"unchanged ({s.tasks} tasks cached, {s.masters} masters published)"
    if s.status == INVALID:
        return f"invalid ({len(s.problems)} problem{'s' if len(s.problems) != 1 else ''})"
    return (f"{s.status}: rendered {s.rendered}, cached {s.cached}, failed {s.failed}, "
            f"blocked {s.blocked}; {s.masters_assembled} masters assembled")


def _print_table(stories: list[StoryOutcome]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col, just in (("story", "left"), ("status", "left"), ("rendered", "right"),
                      ("cached", "right"), ("failed", "right"), ("masters", "right"),
                      ("assembled", "right"), ("seconds", "right"), ("source", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in stories:
        table.add_row(s.story or "-", s.status, str(s.rendered), str(s.cached),
                      str(s.failed + s.blocked), str(s.masters), str(s.masters_assembled),
                      f"{s.seconds:.1f}", escape(printable(s.source)))
    Console(width=200, soft_wrap=True).print(table)


COMMANDS = [nightly]
