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
from .common import _fail, _guard, _print_problems, _store_options
from .options import CAPACITY_TIMEOUT_HELP, SECONDS, farm_options

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
@click.option("--capacity-timeout", type=SECONDS, metavar="SECONDS",
              help=CAPACITY_TIMEOUT_HELP + " Passed to the job's render [default: 900].")
@farm_options
@_job_errors
def submit(file: str, render_args: tuple[str, ...], address: str | None, store_url: str | None,
           out: str | None, s3_endpoint: str | None, resubmit: bool, wait: bool,
           capacity_timeout: float | None, priority: int, idle_timeout: float) -> None:
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
    if capacity_timeout is not None:
        render_args = ("--capacity-timeout", f"{capacity_timeout:g}", *render_args)
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


def _cluster_given(address: str | None) -> bool:
    """Whether a Jobs API address is given (flag or environment), so a job id is asked of
    the cluster first."""
    import os

    if address and address.strip():
        return True
    if os.environ.get("RAY_API_SERVER_ADDRESS", "").strip():
        return True
    return os.environ.get("RAY_ADDRESS", "").strip().lower().startswith(("http://", "https://"))


def _from_store(ident: str, store_url: str | None, s3_endpoint: str | None,
                cluster_said: str | None = None) -> dict[str, Any]:
    """The run record named by ``ident`` (a run id, else a job id) in the store. Without one,
    a :class:`~orchestrator.jobs.client.JobError` line that also says what the cluster said
    (``cluster_said``), or that no cluster was asked."""
    from ..store import StoreError, open_store
    from ..store.runs import check_id, find_job_run, find_run
    from .options import resolve_locations

    try:
        check_id(ident)
    except ValueError as e:
        raise api.JobError(str(e)) from None
    url, endpoint = resolve_locations(store_url, s3_endpoint)
    doc = None
    try:
        store = open_store(url, s3_endpoint=endpoint, create=False)
        try:
            doc = find_run(store, ident) or find_job_run(store, ident)
        finally:
            store.close()
        here = f"no run or job {ident!r} in the store {store.url}"
    except StoreError as e:
        here = str(e)
    if doc is not None:
        return doc
    if cluster_said:
        raise api.JobError(f"{cluster_said}; {here}")
    raise api.JobError(f"{here} (and no Ray cluster was given to ask for a job: --address or "
                       "RAY_API_SERVER_ADDRESS)")


def _job_or_run(ident: str, address: str | None, store_url: str | None,
                s3_endpoint: str | None) -> tuple[api.JobStatus | None, dict[str, Any] | None]:
    """A job's status from the cluster (when one is given and knows the id), else the run
    record from the store: ``(job status, None)`` or ``(None, run record)``."""
    said = None
    if _cluster_given(address):
        try:
            return api.job_status(ident, address), None
        except (api.JobNotFound, api.JobUnreachable) as e:
            said = str(e)
    return None, _from_store(ident, store_url, s3_endpoint, said)


@click.command()
@click.argument("job_id", metavar="ID")
@_address_option
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON document instead.")
@_job_errors
@_guard
def status(job_id: str, address: str | None, store_url: str | None, s3_endpoint: str | None,
           as_json: bool) -> None:
    """Show a render's live state: task counts, what is rendering where, and an ETA.

    \b
    ID is a job id (reelfarm submit) or a run id (reelfarm runs). A job id is asked of the
    cluster (--address) first; a run id, or a job whose cluster is gone, is read from the
    run record in the store (--store), which a render updates while it runs.
    Examples:
      reelfarm status reelfarm-heist-0123456789ab
      reelfarm status 20260131T120000Z-0a1b2c --store s3://studio/store --json | jq .running
    """
    st, doc = _job_or_run(job_id, address, store_url, s3_endpoint)
    if st is not None:
        _print_job_status(st, as_json)
        return
    assert doc is not None
    _print_run_status(doc, as_json)


def _print_job_status(st: api.JobStatus, as_json: bool) -> None:
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
            ("tasks", _tasks_line(t)),
            ("masters", f"{t.get('masters', 0)} done ({t.get('masters_assembled', 0)} assembled)"),
        ]
        if st.run_status == "running":
            rows += _live_rows(st.running or [], st.eta_seconds, st.updated)
    else:
        rows.append(("run", st.run_note or "-"))
    rows += [("store", st.store or "-"), ("out", st.out or "-")]
    for k, v in rows:
        click.echo(f"  {k:<10} {v}")


def _tasks_line(t: dict[str, Any]) -> str:
    line = (f"{t.get('unique', 0)} unique: {t.get('rendered', 0)} rendered, "
            f"{t.get('cached', 0)} cached, {t.get('failed', 0)} failed, "
            f"{t.get('blocked', 0)} blocked")
    if t.get("running") or t.get("pending"):
        line += f", {t.get('running', 0)} rendering, {t.get('pending', 0)} waiting"
    return line


def _live_rows(running: list[Any], eta: Any, updated: Any) -> list[tuple[str, str]]:
    from ..run.progress import fmt_duration

    rows = []
    if isinstance(eta, (int, float)):
        rows.append(("eta", fmt_duration(eta)))
    if updated:
        rows.append(("updated", str(updated)))
    for r in running:
        if isinstance(r, dict):
            rows.append(("rendering", f"{r.get('task')} on {r.get('node') or '?'} since "
                                      f"{r.get('since') or '?'}"))
    return rows


def _print_run_status(doc: dict[str, Any], as_json: bool) -> None:
    from ..run.progress import fmt_duration
    from ..store.runs import summary

    s = summary(doc)
    running = [r for r in doc.get("running") or [] if isinstance(r, dict)]
    failures = [{k: f.get(k) for k in ("id", "shot", "error", "log")}
                for f in doc.get("failures") or [] if isinstance(f, dict)]
    if as_json:
        click.echo(json.dumps({**s, "store": doc.get("store"), "running": running,
                               "failures": failures}, indent=2))
        return
    state = s["status"] + (" (stale: not updated for a while; its render died?)"
                           if s["stale"] else "")
    click.echo(f"{s['run_id']}: {state}")
    t = doc.get("totals") if isinstance(doc.get("totals"), dict) else {}
    rows = [
        ("story", s["story"] or "-"),
        ("user", s["user"] or "-"),
        ("version", s["version"] or "-"),
        ("priority", "-" if s["priority"] is None else str(s["priority"])),
        ("job", s["job_id"] or "-"),
        ("started", s["started"] or "-"),
        ("duration", "-" if s["seconds"] is None else fmt_duration(s["seconds"])),
        ("tasks", _tasks_line(t)),
        ("masters", f"{t.get('masters', 0)} done ({t.get('masters_assembled', 0)} assembled)"),
    ]
    if s["status"] == "running":
        rows += _live_rows(running, s["eta_seconds"], s["updated"])
    for f in failures:
        rows.append(("failed", f"{f['id']}: {f['error']}"))
    rows.append(("store", str(doc.get("store") or "-")))
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
@click.option("--shot", metavar="SHOT",
              help="Print this shot's render log (or a task id's) from the store instead.")
@_address_option
@_store_options
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@_job_errors
@_guard
def logs(job_id: str, shot: str | None, address: str | None, store_url: str | None,
         s3_endpoint: str | None, follow: bool) -> None:
    """Print a job's output, or with --shot a shot's render log from the store.

    \b
    A shot's log is what its render printed (the backend's output, warnings, log records)
    and, for a failure, the full traceback. It is kept in the store (--store), so it can be
    read after the cluster is gone. ID is a run id or a job id; a job id is resolved through
    the cluster when one is given (--address), else through the store.
    Examples:
      reelfarm logs reelfarm-heist-0123456789ab
      reelfarm logs reelfarm-heist-0123456789ab --follow
      reelfarm logs 20260131T120000Z-0a1b2c --shot vault-exterior --store s3://studio/store
    """
    if shot is None:
        if follow:
            for chunk in api.job_logs(job_id, address, follow=True):
                click.echo(chunk, nl=False)
            return
        click.echo(api.job_logs(job_id, address), nl=False)
        return
    if follow:
        raise api.JobError("--follow prints a job's output; a shot's log (--shot) is complete "
                           "once its render ended")
    _print_shot_log(job_id, shot, address, store_url, s3_endpoint)


def for_terminal(text: str) -> str:
    """A log for a terminal: carriage returns (progress bars) become line breaks, and other
    control characters (escape sequences) are dropped; line breaks and tabs stay."""
    from ..spec.urls import printable

    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(printable(line.replace("\t", "    ")) for line in lines)


def _print_shot_log(ident: str, shot: str, address: str | None, store_url: str | None,
                    s3_endpoint: str | None) -> None:
    from ..store import BlobMissing, CorruptBlob, open_store
    from ..store.runs import task_logs
    from .options import resolve_locations

    st, said = None, None
    if _cluster_given(address):  # a job knows its store and run id
        try:
            st = api.job_status(ident, address)
        except (api.JobNotFound, api.JobUnreachable) as e:
            said = str(e)  # a run id, or a job whose cluster is gone: the store
    if st is not None and st.store and st.run_id:
        store_url = st.store
        doc = _from_store(st.run_id, store_url, s3_endpoint)
    elif st is not None:
        raise api.JobError(f"job {ident} ({st.state}) has no run record to read logs from: "
                           f"{st.run_note or 'not a reelfarm job'}")
    else:
        doc = _from_store(ident, store_url, s3_endpoint, said)
    found = task_logs(doc, shot)
    run_id = doc.get("run_id")
    if not found:
        raise api.JobError(f"run {run_id} has no shot or task {shot!r}")
    url, endpoint = resolve_locations(store_url, s3_endpoint)
    store = open_store(url, s3_endpoint=endpoint, create=False)
    missing = []
    try:
        for t in found:
            if t["log"] is None:
                missing.append(t)
                continue
            try:
                text = store.get_bytes(t["log"]).decode("utf-8", "replace")
            except BlobMissing:
                missing.append(t)
                continue
            except CorruptBlob as e:
                _fail(f"the log of {t.get('id')} is corrupt in the store: {e}", code=1)
            if sys.stdout.isatty():  # a log is untrusted text: no escape sequences on a terminal
                text = for_terminal(text)
            if len(found) > 1:
                click.echo(f"==> {t.get('id')} ({t.get('status')}) <==")
            click.echo(text, nl=not text.endswith("\n"))
    finally:
        store.close()
    for t in missing:
        why = ("it never ran in this run" if t.get("status") in ("pending", "ready", "blocked")
               else "the store holds none (rendered before logs were kept, or collected)")
        click.echo(f"error: no log for {t.get('id')} ({t.get('status')}) in run {run_id}: "
                   f"{why}", err=True)
    if missing:
        sys.exit(EXIT_FAILED)


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
