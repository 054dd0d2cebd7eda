"""``reelfarm submit``, ``jobs``, ``status``, ``logs`` and ``cancel``: renders as Ray jobs.

The logic is in :mod:`orchestrator.jobs.client` (the Python API with the same verbs). Exit
codes: 0 done; 1 a job ``submit --wait`` waited for failed or was stopped; 2 invalid input, an
unknown job, a cluster that cannot be reached or refuses the token.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from ..jobs import client as api
from ..run.render import EXIT_FAILED, EXIT_INVALID
from ..spec.errors import ManifestInvalid
from .common import _print_problems
from .options import farm_options

ADDRESS_HELP = ("The Ray dashboard's HTTP address, e.g. http://127.0.0.1:8265 [default: "
                "$RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS when it is an http:// URL].")


def _address_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    # No envvar here: the variables are read by the API, in Ray's order, so that
    # RAY_API_SERVER_ADDRESS is not hidden by a RAY_ADDRESS meant for `render`.
    return click.option("--address", metavar="URL", help=ADDRESS_HELP)(fn)


def _job_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A :class:`~orchestrator.jobs.JobError` is one ``error:`` line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ManifestInvalid as e:
            _print_problems(e.problems)
            sys.exit(EXIT_INVALID)
        except api.JobError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_INVALID)

    return wrapper


# -- submit --------------------------------------------------------------------------------


@click.command()
@click.argument("file")
@click.argument("render_args", nargs=-1, metavar="[-- RENDER_OPTION...]")
@_address_option
@click.option("--store", "store_url", envvar="REELFARM_STORE", metavar="URL",
              help="Shot cache the job renders into: s3://bucket/prefix, or a path the cluster "
                   "shares [default: $REELFARM_STORE].")
@click.option("--out", "out", metavar="DIR|s3://...",
              help="Where the job writes masters, branches.json and report.json "
                   "[default: $REELFARM_OUT/<story>/].")
@click.option("--s3-endpoint", metavar="URL",
              help="Endpoint of an S3-compatible server, passed to the job's render "
                   "[default: $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL].")
@click.option("--resubmit", is_flag=True,
              help="Run again a submission that failed, was stopped or succeeded.")
@click.option("--wait", "wait", is_flag=True,
              help="Stream the job's log to stderr until it ends; exit 0 when it succeeded, "
                   "1 when it failed or was stopped.")
@farm_options
@_job_errors
def submit(file: str, render_args: tuple[str, ...], address: str | None, store_url: str | None,
           out: str | None, s3_endpoint: str | None, resubmit: bool, wait: bool, priority: int,
           idle_timeout: float) -> None:
    """Submit a render of FILE (a path or s3:// URL) to a Ray cluster as a job.

    \b
    The manifest is validated here and shipped with the job, which runs
    `reelfarm render` on the cluster. The job id is derived from the story, the manifest's
    content and the render options (reelfarm-<story>-<12 hex>): submitting the same thing
    again reports the existing job instead of starting a second render. The job id is
    printed on stdout. Options after `--` go to `reelfarm render`.
    Examples:
      export RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token RAY_AUTH_TOKEN=...
      reelfarm submit manifests/heist.yaml --store s3://studio/store --out s3://studio/out/heist
      reelfarm submit s3://studio/stories/heist.yaml --wait -- --retries 4
      reelfarm submit manifests/heist.yaml --store s3://studio/store --out s3://studio/out/heist \\
          --priority 90
      reelfarm submit manifests/heist.yaml --store /mnt/farm/store --out /mnt/farm/heist \\
          --resubmit

    \b
    Token auth (Ray 2.60 clusters require it): set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN
    (or RAY_AUTH_TOKEN_PATH, a file holding the token); the token is never printed.
    """
    job = api.submit(file, address=address, store=store_url, out=out, s3_endpoint=s3_endpoint,
                     extra_args=render_args, resubmit=resubmit, priority=priority,
                     idle_timeout=idle_timeout)
    if job.existing:
        click.echo(f"{job.job_id}: already submitted ({job.state}); no second render started",
                   err=True)
    else:
        click.echo(f"submitted {job.job_id} (story {job.story}) to {job.address}", err=True)
    click.echo(job.job_id)
    if not wait:
        return
    try:
        for chunk in api.job_logs(job.job_id, address=address, follow=True):
            click.echo(chunk, nl=False, err=True)
    except api.JobError as e:  # the log stream broke: keep waiting on the state
        click.echo(f"warning: log stream ended early: {e}", err=True)
    st = api.wait_job(job.job_id, address=address)
    click.echo(f"{st.job_id}: {st.state}{_run_line(st)}", err=True)
    sys.exit(0 if st.state == "SUCCEEDED" else EXIT_FAILED)


# -- jobs ----------------------------------------------------------------------------------


@click.command("jobs")
@_address_option
@click.option("--all", "all_jobs", is_flag=True, help="Also list jobs reelfarm did not submit.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead.")
@_job_errors
def jobs_cmd(address: str | None, all_jobs: bool, as_json: bool) -> None:
    """List reelfarm's jobs on the cluster, oldest first.

    \b
    Examples:
      reelfarm jobs --address http://127.0.0.1:8265
      reelfarm jobs --json | jq -r '.[] | select(.state == "FAILED") | .job_id'
    """
    found = api.list_jobs(address, all_jobs=all_jobs)
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in found], indent=2))
        return
    if not found:
        click.echo("no reelfarm jobs on this cluster", err=True)
        return
    width = max(len(j.job_id) for j in found)
    click.echo(f"{'JOB ID':<{width}}  {'STATE':<9}  {'STORY':<20}  SUBMITTED")
    for j in found:
        click.echo(f"{j.job_id:<{width}}  {j.state:<9}  {(j.story or '-'):<20}  "
                   f"{j.submitted or '-'}")


# -- status --------------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@_address_option
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON document instead.")
@_job_errors
def status(job_id: str, address: str | None, as_json: bool) -> None:
    """Show a job's state and its render's task counts (from the run record in the store).

    \b
    Examples:
      reelfarm status reelfarm-heist-0123456789ab
      reelfarm status reelfarm-heist-0123456789ab --json | jq .totals
    """
    st = api.job_status(job_id, address)
    if as_json:
        click.echo(json.dumps(st.to_dict(), indent=2))
        return
    click.echo(f"{st.job_id}: {st.state}")
    rows = [
        ("story", st.story or "-"),
        ("submitted", st.submitted or "-"),
        ("ended", st.ended or "-"),
        ("message", st.message or "-"),
    ]
    if st.totals is not None:
        t = st.totals
        rows += [
            ("run", f"{st.run_id} {st.run_status}"),
            ("tasks", f"{t.get('unique', 0)} unique: {t.get('rendered', 0)} rendered, "
                      f"{t.get('cached', 0)} cached, {t.get('failed', 0)} failed, "
                      f"{t.get('blocked', 0)} blocked"),
            ("masters", f"{t.get('masters', 0)} done ({t.get('masters_assembled', 0)} assembled)"),
        ]
    else:
        rows.append(("run", st.run_note or "-"))
    rows += [("store", st.store or "-"), ("out", st.out or "-")]
    for k, v in rows:
        click.echo(f"  {k:<10} {v}")


def _run_line(st: api.JobStatus) -> str:
    if st.totals is None:
        return ""
    t = st.totals
    return (f"; run {st.run_id} {st.run_status}: rendered {t.get('rendered', 0)}, "
            f"cached {t.get('cached', 0)}, failed {t.get('failed', 0)}, "
            f"masters {t.get('masters', 0)}")


# -- logs ----------------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@_address_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@_job_errors
def logs(job_id: str, address: str | None, follow: bool) -> None:
    """Print a job's output (the render's progress lines and summary).

    \b
    Examples:
      reelfarm logs reelfarm-heist-0123456789ab
      reelfarm logs reelfarm-heist-0123456789ab --follow
    """
    if follow:
        for chunk in api.job_logs(job_id, address, follow=True):
            click.echo(chunk, nl=False)
        return
    click.echo(api.job_logs(job_id, address), nl=False)


# -- cancel --------------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@_address_option
@_job_errors
def cancel(job_id: str, address: str | None) -> None:
    """Stop a pending or running job (shots already rendered stay in the store).

    \b
    Examples:
      reelfarm cancel reelfarm-heist-0123456789ab
    """
    if api.cancel(job_id, address):
        click.echo(f"{job_id}: stop requested")
    else:
        st = api.job_status(job_id, address)
        click.echo(f"{job_id}: already ended ({st.state}); nothing to stop")


COMMANDS = [submit, jobs_cmd, status, logs, cancel]
