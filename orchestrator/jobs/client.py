"""Submit renders to a running Ray cluster through the Ray Jobs API, and follow them.

The verbs a pipeline needs, with the same names as the CLI (``reelfarm submit``, ``jobs``,
``status``, ``logs``, ``cancel``)::

    from orchestrator import submit, job_status, wait_job

    job = submit("shots/heist.yaml", address="http://ray-head:8265",
                 store="s3://studio-renders/store", out="s3://studio-renders/out/heist/")
    print(job.job_id, "already submitted" if job.existing else "submitted")
    st = wait_job(job.job_id, address="http://ray-head:8265")
    print(st.state, st.totals)

The cluster is the Ray dashboard's HTTP address (``http://HEAD:8265``), found as Ray's job CLI
finds it: ``address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS`` when it is an
``http(s)://`` URL (a ``HEAD:6379`` ``RAY_ADDRESS`` is the address ``render`` joins, and is
refused here with a line saying so). User info in the address is never shown.

The manifest is validated here, then shipped with the job: the job's ``working_dir`` is a
temporary folder holding only the manifest, and the job runs
``reelfarm render <story>.yaml --store ... --out ...`` with every argument shell-quoted.

**Submission ids are derived from what is rendered**: ``reelfarm-<story>-<12 hex>``, the hex
being a hash of the manifest's bytes and the render options (store, out, S3 endpoint, extra
arguments). Submitting the same thing twice reports the job that exists instead of starting a
second render; a job that failed or was stopped is only run again with ``resubmit=True``.

**Token authentication** (Ray 2.60 clusters require it): the token comes from ``RAY_AUTH_TOKEN``,
else the file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (unless
``RAY_AUTH_MODE=disabled``), and is sent as a bearer token. A refusal becomes one
:class:`JobAuthError` line saying what is missing; the token itself is never shown.

Errors a user can cause are :class:`JobError` subclasses (the CLI exits 2 on them);
an invalid manifest raises :class:`~orchestrator.errors.ManifestInvalid`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shlex
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ..run.render import new_run_id
from ..spec.errors import ManifestInvalid, Problem
from ..spec.urls import BadLocation, redact_url, without_userinfo
from ..spec.urls import s3_endpoint as resolve_s3_endpoint

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

    from ..spec.manifest import Story

__all__ = [
    "TERMINAL_STATES",
    "JobAuthError",
    "JobError",
    "JobExists",
    "JobInfo",
    "JobNotFound",
    "JobStatus",
    "JobUnreachable",
    "cancel",
    "job_logs",
    "job_status",
    "list_jobs",
    "submission_id",
    "submit",
    "wait_job",
]

#: Ray job states after which nothing changes.
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_ACTIVE_STATES = frozenset({"PENDING", "RUNNING"})

#: Part of every submission id's hash: bump when the entrypoint's meaning changes.
_SUBMIT_SCHEMA = "reelfarm-submit/1"
#: Render options that ``submit`` sets itself and ``extra_args`` may not repeat.
_OWN_OPTIONS = ("--store", "--out", "--s3-endpoint", "--address", "--run-id", "--priority",
                "--idle-timeout")
_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_META = "reelfarm."  # prefix of the metadata keys reelfarm puts on its jobs


# -- errors --------------------------------------------------------------------------------


class JobError(Exception):
    """Something about a submission a user can fix; one line, never a credential."""


class JobAuthError(JobError):
    """The cluster refused the request: no token, or not its token."""


class JobUnreachable(JobError):
    """No Ray dashboard answered at the address."""


class JobNotFound(JobError):
    """The cluster has no job with this id."""


class JobExists(JobError):
    """The same submission already ran and failed or was stopped (pass ``resubmit=True``)."""

    def __init__(self, message: str, job: JobInfo) -> None:
        super().__init__(message)
        self.job = job


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """A job as Ray knows it, with what reelfarm recorded when submitting it.

    ``state`` is Ray's job state: PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED. ``existing``
    is true when :func:`submit` found the same submission already on the cluster.
    ``submitted`` and ``ended`` are UTC times (``2026-01-31T12:00:00Z``) or ``None``.
    """

    job_id: str
    state: str
    story: str | None = None
    message: str = ""
    submitted: str | None = None
    ended: str | None = None
    store: str | None = None
    out: str | None = None
    entrypoint: str = ""
    driver_exit_code: int | None = None
    existing: bool = False
    address: str = ""

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class JobStatus(JobInfo):
    """A job's Ray state plus the run record its render wrote in the store.

    ``run_id``/``run_status``/``totals`` come from ``runs/<story>/<run id>.json`` (the report):
    ``totals`` holds ``unique``, ``cached``, ``rendered``, ``failed``, ``blocked``, ``masters``,
    ... They are ``None`` until the render has written its record, or when the store cannot be
    read from here; ``run_note`` then says why.
    """

    run_id: str | None = None
    run_status: str | None = None
    totals: dict[str, Any] | None = None
    run_note: str = ""
    running: list[dict[str, Any]] | None = None  # [{task, shot, node, since}] while it runs
    eta_seconds: float | None = None
    updated: str | None = None  # when the run record was last written (UTC)


@dataclass(frozen=True)
class _Meta:
    story: str
    store: str
    out: str
    s3_endpoint: str = ""
    manifest_sha256: str = ""
    plan: str = ""
    source: str = ""
    run_id: str = ""
    priority: str = ""

    def to_metadata(self) -> dict[str, str]:
        md = {_META + k: v for k, v in asdict(self).items()}
        md[_META + "s3_endpoint"] = without_userinfo(self.s3_endpoint)  # never a credential
        return md

    @classmethod
    def from_metadata(cls, md: dict[str, str] | None) -> _Meta | None:
        md = md or {}
        if _META + "story" not in md:
            return None
        names = cls.__dataclass_fields__
        return cls(**{k: md.get(_META + k, "") for k in names})


# -- connection and auth -------------------------------------------------------------------


_ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_ADDRESS_EXAMPLE = "http://HEAD:8265"


def _address(address: str | None) -> str:
    """The Jobs API's URL, as Ray's own job CLI finds it: the argument, else
    ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS`` when it is an ``http(s)://`` URL.

    A scheme-less or ``ray://`` ``RAY_ADDRESS`` is the cluster address ``render`` joins
    (``HEAD:6379``), not the dashboard's: that is one clear error naming the variable to set,
    never a request to the wrong port. A scheme-less argument or ``RAY_API_SERVER_ADDRESS``
    means ``http://``.
    """
    if address and address.strip():
        addr, origin = address.strip(), "--address"
    elif os.environ.get("RAY_API_SERVER_ADDRESS", "").strip():
        addr, origin = os.environ["RAY_API_SERVER_ADDRESS"].strip(), "RAY_API_SERVER_ADDRESS"
    elif os.environ.get("RAY_ADDRESS", "").strip():
        addr, origin = os.environ["RAY_ADDRESS"].strip(), "RAY_ADDRESS"
        if not addr.lower().startswith(("http://", "https://")):
            raise JobError(
                f"RAY_ADDRESS={redact_url(addr)} is the cluster address `reelfarm render` joins; "
                "the jobs commands need the dashboard's HTTP address: set "
                f"RAY_API_SERVER_ADDRESS={_ADDRESS_EXAMPLE} or pass --address {_ADDRESS_EXAMPLE}"
            )
    else:
        raise JobError(
            "no Ray cluster given: pass --address or set RAY_API_SERVER_ADDRESS to the "
            f"dashboard's HTTP address, e.g. {_ADDRESS_EXAMPLE}"
        )
    if "://" not in addr:
        addr = "http://" + addr
    scheme = addr.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise JobError(
            f"{origin} {redact_url(addr)}: the Jobs API needs the dashboard's HTTP address "
            f"({_ADDRESS_EXAMPLE}), not a {scheme}:// address"
        )
    return addr.rstrip("/")


def _token() -> tuple[str | None, str]:
    """The cluster token and where it came from (a name to show, never the token)."""
    tok = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if tok:
        return tok, "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if path:
        try:
            tok = Path(path).expanduser().read_text().strip()
        except OSError as e:
            raise JobAuthError(
                f"cannot read the token file named by RAY_AUTH_TOKEN_PATH: {e.strerror or e}"
            ) from None
        return (tok or None), "the file named by RAY_AUTH_TOKEN_PATH"
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "disabled":
        default = Path("~/.ray/auth_token").expanduser()
        try:
            tok = default.read_text().strip()
        except OSError:
            tok = ""
        if tok:
            return tok, "~/.ray/auth_token"
    return None, ""


def _auth_message(address: str, source: str) -> str:
    """What happened, in reelfarm's words: a request sent without a token, or with the token
    from ``source``, was refused as unauthenticated."""
    if source:
        return (
            f"the Ray cluster at {address} refused the token from {source}: it is not this "
            "cluster's token; set RAY_AUTH_TOKEN to the cluster's token"
        )
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    missing = [] if mode == "token" else ["RAY_AUTH_MODE=token"]
    missing.append("RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, a file holding it)")
    return (
        f"the Ray cluster at {address} refused a request sent without a token: it requires "
        f"token authentication; set {' and '.join(missing)}"
    )


class _Client:
    """A ``JobSubmissionClient`` whose failures become :class:`JobError` lines.

    ``url`` is what requests go to; ``address`` is the same without user info, the only form
    ever shown or returned.
    """

    def __init__(self, address: str | None) -> None:
        self.url = _address(address)
        self.address = redact_url(self.url)
        self._token, self._source = _token()
        self.raw: JobSubmissionClient = self._call(self._connect)

    def _connect(self) -> JobSubmissionClient:
        from ray.job_submission import JobSubmissionClient

        for name in ("ray.dashboard.modules.job.sdk", "ray.dashboard.modules.dashboard_sdk"):
            logging.getLogger(name).setLevel(logging.WARNING)  # no per-request INFO lines
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        # Ray lets RAY_API_SERVER_ADDRESS and RAY_ADDRESS override the address it is given;
        # here the address was already chosen by _address, in the same order.
        saved = {k: os.environ.pop(k) for k in _ADDRESS_VARS if k in os.environ}
        try:
            return JobSubmissionClient(self.url, headers=headers)
        finally:
            os.environ.update(saved)

    def _call(self, fn: Any, *args: Any, job_id: str | None = None, **kwargs: Any) -> Any:
        from ray.exceptions import AuthenticationError

        try:
            return fn(*args, **kwargs)
        except AuthenticationError:
            raise JobAuthError(_auth_message(self.address, self._source)) from None
        except ConnectionError as e:
            raise JobUnreachable(_unreachable(self.address, e, self.url)) from None
        except RuntimeError as e:
            text = redact_url_in(str(e), self.url)
            if job_id is not None and ("404" in text or "does not exist" in text):
                raise JobNotFound(f"no job {job_id!r} on the Ray cluster at {self.address}") \
                    from None
            if "status code 401" in text or "status code 403" in text:
                raise JobAuthError(_auth_message(self.address, self._source)) from None
            raise JobError(f"the Ray cluster at {self.address}: {_one_line(text)}") from None

    def info(self, job_id: str) -> JobDetails:
        return self._call(self.raw.get_job_info, _check_job_id(job_id), job_id=job_id)

    def find(self, job_id: str) -> JobDetails | None:
        try:
            return self.info(job_id)
        except JobNotFound:
            return None


def _unreachable(address: str, err: Exception, url: str = "") -> str:
    return (
        f"cannot reach the Ray dashboard at {address}: is the cluster up, and is this its "
        f"dashboard address ({_ADDRESS_EXAMPLE})? ({_one_line(redact_url_in(str(err), url))})"
    )


def redact_url_in(text: str, url: str) -> str:
    """``text`` with ``url`` (which may hold user info) replaced by its redacted form."""
    return text.replace(url, redact_url(url)) if url else text


def _one_line(text: str, limit: int = 2000) -> str:
    """A message on one line: every line of it, joined; a very long one says how much of it
    is left out (a dashboard's HTML error page, say)."""
    text = " ".join(text.split()) or "unknown error"
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def _check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id):
        raise JobError(f"{job_id!r} is not a job id (e.g. reelfarm-heist-0123456789ab)")
    return job_id


def _utc(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _info(d: JobDetails, address: str, *, existing: bool = False) -> JobInfo:
    meta = _Meta.from_metadata(d.metadata)
    return JobInfo(
        job_id=d.submission_id or d.job_id or "",
        state=str(getattr(d.status, "value", d.status)),
        story=meta.story if meta else None,
        message=d.message or "",
        submitted=_utc(d.start_time),
        ended=_utc(d.end_time),
        store=meta.store if meta else None,
        out=meta.out if meta else None,
        entrypoint=d.entrypoint or "",
        driver_exit_code=d.driver_exit_code,
        existing=existing,
        address=address,
    )


# -- submit --------------------------------------------------------------------------------


def _location(url: str | None, what: str) -> str:
    """A store or output location as the cluster will read it: URLs kept, paths absolute."""
    if not url:
        raise JobError(
            f"submit needs --{what}: the render runs on the cluster, so give a location it "
            f"can write and you can read (s3://bucket/prefix, or a path shared with the cluster)"
        )
    if url.startswith(("s3://", "file://")):
        return url
    if "://" in url:
        raise JobError(f"unsupported --{what} {url!r}: use a directory, file:// or s3://")
    return os.path.abspath(os.path.expanduser(url))


def submission_id(story: str, manifest: bytes, *, store: str, out: str,
                  s3_endpoint: str | None = None, extra_args: Sequence[str] = ()) -> str:
    """The id of a submission: ``reelfarm-<story>-<12 hex>`` from the content and options."""
    doc = {
        "schema": _SUBMIT_SCHEMA,
        "manifest": hashlib.sha256(manifest).hexdigest(),
        "store": store,
        "out": out,
        "s3_endpoint": s3_endpoint or "",
        "extra_args": list(extra_args),
    }
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"reelfarm-{story}-{hashlib.sha256(canon.encode()).hexdigest()[:12]}"


def _read_manifest(source: str, s3_endpoint: str | None) -> tuple[bytes, Story]:
    from ..plan.expand import PlanError, expand
    from ..spec.loading import MAX_MANIFEST_BYTES, load_manifest
    from ..store import StoreError
    from ..store.sources import read_source

    try:
        data = read_source(source, s3_endpoint=s3_endpoint)
        if data is None:
            with open(source, "rb") as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise ManifestInvalid([Problem(source, None, None, "", f"cannot read: {e.strerror or e}")]
                              ) from None
    except StoreError as e:
        raise ManifestInvalid([Problem(source, None, None, "", str(e))]) from None
    m = load_manifest(source, data)
    try:
        expand(m.story)
    except PlanError as e:
        raise ManifestInvalid([m.problem(path, msg) for path, msg in e.problems]) from None
    return data, m.story


def _plan_digest(story: Story, store_url: str, s3_endpoint: str | None) -> str:
    """A digest of the render keys the job will use, to find its run record later.

    Best effort: ``""`` when the store cannot be read from here (the job still runs; status
    then matches the run record by time alone).
    """
    from ..run.render import plan_story
    from ..store import open_store

    if not store_url.startswith(("s3://", "file://")) and not os.path.isdir(store_url):
        from ..plan.expand import expand

        # A store that does not exist yet has no salt; do not create it from here.
        return _keys_digest(t.key for t in expand(story, salt="").tasks)
    try:
        store = open_store(store_url, s3_endpoint=s3_endpoint)
        try:
            return _keys_digest(t.key for t in plan_story(story, store).tasks)
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - optional: any store failure only loses the digest
        return ""


def _keys_digest(keys: Any) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def _entrypoint(filename: str, store: str, out: str, s3_endpoint: str | None,
                extra_args: Sequence[str], run_id: str, priority: int | None = None,
                idle_timeout: float | None = None) -> str:
    argv = ["reelfarm", "render", filename, "--store", store, "--out", out, "--plain",
            "--run-id", run_id]
    if priority is not None:
        argv += ["--priority", str(priority)]
    if idle_timeout is not None:
        argv += ["--idle-timeout", repr(float(idle_timeout))]
    if s3_endpoint:
        argv += ["--s3-endpoint", s3_endpoint]
    argv += list(extra_args)
    return " ".join(shlex.quote(a) for a in argv)


def _check_extra(extra_args: Sequence[str]) -> tuple[str, ...]:
    extra = tuple(str(a) for a in extra_args)
    for a in extra:
        if a.split("=", 1)[0] in _OWN_OPTIONS:
            raise JobError(f"extra render argument {a!r}: submit sets {a.split('=', 1)[0]} "
                           "itself; use its own option")
    return extra


def _s3_endpoint(flag: str | None, *locations: str) -> str | None:
    """Flag, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, without user info; ``None`` when no
    location is in S3."""
    if not any(loc.startswith("s3://") for loc in locations):
        return None
    try:
        return resolve_s3_endpoint(flag)
    except BadLocation as e:
        raise JobError(str(e)) from None


def submit(manifest_path_or_url: str, *, address: str | None = None, store: str | None = None,
           out: str | None = None, s3_endpoint: str | None = None,
           extra_args: Sequence[str] = (), resubmit: bool = False,
           priority: int | None = None, idle_timeout: float | None = None) -> JobInfo:
    """Submit a render of a story manifest (a path or ``s3://`` URL) as a Ray job.

    ``store`` defaults to ``REELFARM_STORE``; ``out`` to ``REELFARM_OUT`` + ``<story>/``. Both
    are read and written by the cluster: use ``s3://`` URLs, or paths the cluster shares.
    ``s3_endpoint`` (default ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``; user info
    dropped) reads an ``s3://`` manifest and is passed to the job when the store or out is in
    S3. ``extra_args`` are more ``reelfarm render`` options
    (``["--retries", "4"]``), each passed as one quoted argument.

    Returns the new job, or the existing one (``existing=True``) when the same submission is
    pending, running or succeeded. Raises :class:`JobExists` when it failed or was stopped,
    unless ``resubmit`` (then the old job record is replaced by a new run).

    ``priority`` (0-100, default 50) orders the job among the jobs sharing the cluster's farm
    and ``idle_timeout`` sets how long the farm keeps an unused actor; neither is part of the
    submission id (the same render at another priority is the same job).
    """
    if priority is not None and not (isinstance(priority, int) and 0 <= priority <= 100):
        raise JobError(f"priority {priority!r} is not a whole number from 0 to 100")
    if idle_timeout is not None and not (isinstance(idle_timeout, (int, float))
                                         and 0 < idle_timeout < float("inf")):
        raise JobError(f"idle timeout {idle_timeout!r} is not a positive number of seconds")
    flag = s3_endpoint
    extra = _check_extra(extra_args)
    data, story = _read_manifest(manifest_path_or_url,
                                 _s3_endpoint(flag, manifest_path_or_url))
    name = story.metadata.name
    store_url = _location(store or os.environ.get("REELFARM_STORE"), "store")
    if not out and os.environ.get("REELFARM_OUT"):
        out = os.environ["REELFARM_OUT"].rstrip("/") + f"/{name}/"
    out_url = _location(out, "out")
    # the job gets an endpoint only when its store or out is in S3
    s3_endpoint = _s3_endpoint(flag, store_url, out_url)
    job_id = submission_id(name, data, store=store_url, out=out_url, s3_endpoint=s3_endpoint,
                           extra_args=extra)
    client = _Client(address)

    old = client.find(job_id)
    if old is not None:
        info = _info(old, client.address, existing=True)
        if info.state in _ACTIVE_STATES or (info.state == "SUCCEEDED" and not resubmit):
            return info
        if not resubmit:
            raise JobExists(
                f"{job_id} was already submitted and {info.state} (its output: reelfarm logs "
                f"{job_id}); pass --resubmit (resubmit=True) to run it again", info)
        client._call(client.raw.delete_job, job_id, job_id=job_id)

    meta = _Meta(story=name, store=store_url, out=out_url, s3_endpoint=s3_endpoint or "",
                 manifest_sha256=hashlib.sha256(data).hexdigest(),
                 plan=_plan_digest(story, store_url, s3_endpoint),
                 source=manifest_path_or_url[:500], run_id=new_run_id(),
                 priority="" if priority is None else str(priority))
    filename = f"{name}.yaml"
    entry = _entrypoint(filename, store_url, out_url, s3_endpoint, extra, meta.run_id,
                        priority, idle_timeout)
    with tempfile.TemporaryDirectory(prefix="reelfarm-submit-") as tmp:
        Path(tmp, filename).write_bytes(data)
        try:
            client._call(client.raw.submit_job, entrypoint=entry, submission_id=job_id,
                         runtime_env={"working_dir": tmp}, metadata=meta.to_metadata())
        except JobError as e:
            if "already" not in str(e).lower():
                raise
            # Someone submitted the same thing at the same moment: that job is this one.
            return _info(client.info(job_id), client.address, existing=True)
    return _info(client.info(job_id), client.address)


# -- list, status, logs, cancel, wait ------------------------------------------------------


def list_jobs(address: str | None = None, *, all_jobs: bool = False) -> list[JobInfo]:
    """reelfarm's jobs on the cluster (every job with ``all_jobs``), oldest first."""
    client = _Client(address)
    jobs = client._call(client.raw.list_jobs)
    out = []
    for d in sorted(jobs, key=lambda j: j.start_time or 0):
        info = _info(d, client.address)
        if all_jobs or info.story is not None:
            out.append(info)
    return out


def job_status(job_id: str, address: str | None = None) -> JobStatus:
    """The job's Ray state, and the task counts of its run record in the store."""
    client = _Client(address)
    d = client.info(job_id)
    return _status(d, client.address)


def _status(d: JobDetails, address: str) -> JobStatus:
    info = _info(d, address)
    st = JobStatus(**asdict(info))
    meta = _Meta.from_metadata(d.metadata)
    if meta is None:
        return replace(st, run_note="not a reelfarm job: no run record")
    try:
        run = _find_run(meta, d.start_time, d.end_time)
    except Exception as e:  # noqa: BLE001 - the Ray state is still worth reporting
        return replace(st, run_note=f"cannot read the run record from {meta.store}: "
                                    f"{_one_line(str(e))}")
    if run is None:
        note = ("no run record yet" if st.state in _ACTIVE_STATES
                else "the job wrote no run record")
        return replace(st, run_note=note)
    running = run.get("running")
    eta = run.get("eta_seconds")
    return replace(st, run_id=run.get("run_id"), run_status=run.get("status"),
                   totals=run.get("totals"),
                   running=running if isinstance(running, list) else None,
                   eta_seconds=eta if isinstance(eta, (int, float)) else None,
                   updated=run.get("updated") if isinstance(run.get("updated"), str) else None)


def _find_run(meta: _Meta, start_ms: int | None, end_ms: int | None) -> dict[str, Any] | None:
    """The run record this job's render wrote: the run id it was given; for jobs submitted
    without one, the run of the same story started while the job ran (same render keys)."""
    from ..store import open_store

    url = meta.store
    if not url.startswith(("s3://", "file://")) and not os.path.isdir(url):
        return None
    store = open_store(url, s3_endpoint=meta.s3_endpoint or None)
    try:
        if meta.run_id:  # the job was told which run id to write
            return store.get_run(meta.story, meta.run_id)
        lo = (start_ms or 0) / 1000 - 2
        hi = (end_ms / 1000 + 2) if end_ms else float("inf")
        found: list[dict[str, Any]] = []
        for run_id in store.list_runs(meta.story):
            try:
                t = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(
                    tzinfo=timezone.utc).timestamp()
            except ValueError:
                continue
            if lo <= t <= hi:
                run = store.get_run(meta.story, run_id)
                if run is not None:
                    found.append(run)
        if meta.plan:
            same = [r for r in found
                    if _keys_digest(x.get("key", "") for x in r.get("tasks", [])) == meta.plan]
            found = same or found
        return found[-1] if found else None
    finally:
        store.close()


@overload
def job_logs(job_id: str, address: str | None = ..., follow: Literal[False] = ...) -> str: ...
@overload
def job_logs(job_id: str, address: str | None = ..., *, follow: Literal[True]) -> Iterator[str]:
    ...
def job_logs(job_id: str, address: str | None = None, follow: bool = False) -> Any:  # noqa: E301
    """The job's output so far as one string; with ``follow``, an iterator of chunks that ends
    when the job does."""
    client = _Client(address)
    client.info(job_id)  # a clear error for an unknown id, before any streaming
    if not follow:
        return client._call(client.raw.get_job_logs, job_id, job_id=job_id)
    return _follow(client, job_id)


def _follow(client: _Client, job_id: str) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    agen = client.raw.tail_job_logs(job_id)
    try:
        while True:
            try:
                chunk = client._call(loop.run_until_complete, agen.__anext__(), job_id=job_id)
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        loop.run_until_complete(agen.aclose())
        loop.close()


def cancel(job_id: str, address: str | None = None) -> bool:
    """Stop a job. True when a stop was requested, False when it had already ended."""
    client = _Client(address)
    client.info(job_id)
    return bool(client._call(client.raw.stop_job, job_id, job_id=job_id))


def wait_job(job_id: str, address: str | None = None, *, timeout: float | None = None,
             poll: float = 1.0) -> JobStatus:
    """Block until the job ends (or ``timeout`` seconds pass: :class:`TimeoutError`)."""
    client = _Client(address)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        d = client.info(job_id)
        if str(getattr(d.status, "value", d.status)) in TERMINAL_STATES:
            return _status(d, client.address)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{job_id} still {d.status} after {timeout:g}s")
        time.sleep(poll)

