"""Options and values shared by the ``reelfarm`` commands (no command is defined here)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from ..run.farm import DEFAULT_IDLE_TIMEOUT_S
from ..run.lease import DEFAULT_PRIORITY
from ..spec.urls import canonical_location, s3_endpoint
from ..store import DEFAULT_STORE

STORE_HELP = f"Store URL: a directory, file:///dir or s3://bucket/prefix [default: {DEFAULT_STORE}]"

S3_ENDPOINT_HELP = ("Endpoint of an S3-compatible server (MinIO, Ceph RGW, ...) "
                    "[default: $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL].")


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--store`` and ``--s3-endpoint``. The endpoint's environment variables are read by
    :func:`resolve_s3_endpoint` in botocore's order (``AWS_ENDPOINT_URL_S3`` first), never by
    click as if ``AWS_ENDPOINT_URL`` were the flag."""
    fn = click.option("--s3-endpoint", metavar="URL", help=S3_ENDPOINT_HELP)(fn)
    fn = click.option("--store", "store_url", envvar="REELFARM_STORE", help=STORE_HELP)(fn)
    return fn


def resolve_s3_endpoint(flag: str | None, *locations: str) -> str | None:
    """The S3 endpoint when one of ``locations`` is in S3 (flag, then ``AWS_ENDPOINT_URL_S3``,
    then ``AWS_ENDPOINT_URL``), resolved here so that every actor uses the driver's; ``None``
    when nothing is in S3 (a stray variable then breaks nothing)."""
    if not any(loc.startswith("s3://") for loc in locations):
        return None
    return s3_endpoint(flag)


def resolve_locations(store_url: str | None, s3_endpoint: str | None,
                      *others: str) -> tuple[str, str | None]:
    """``--store`` as a canonical URL (an absolute path, or the s3:// URL), resolved here on
    the driver, and the S3 endpoint for it and ``others`` (manifests, outputs)."""
    store = canonical_location(store_url or DEFAULT_STORE)
    return store, resolve_s3_endpoint(s3_endpoint, store, *others)


class Seconds(click.ParamType):
    """A finite, positive number of seconds (``nan``, ``inf`` and negatives are refused)."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float) and math.isfinite(value) and value > 0:
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(f) or f <= 0:
            self.fail(f"{value!r} is not a positive, finite number of seconds", param, ctx)
        return f


SECONDS = Seconds()

CAPACITY_TIMEOUT_HELP = (
    "How long ready shots may wait for nodes from the cluster's autoscaler (a cluster that "
    "scales from zero) before the run fails (exit 1).")


def capacity_timeout_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--capacity-timeout SECONDS`` (default 15 minutes)."""
    return click.option("--capacity-timeout", type=SECONDS, default=900.0, show_default=True,
                        metavar="SECONDS", help=CAPACITY_TIMEOUT_HELP)(fn)


def farm_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--priority`` and ``--idle-timeout``: how a job queues on the cluster's farm."""
    fn = click.option(
        "--idle-timeout", type=SECONDS, default=DEFAULT_IDLE_TIMEOUT_S, show_default=True,
        metavar="SECONDS",
        help="A renderer actor of the farm that no job has used for this long exits (so an "
             "autoscaler can scale down); until then it stays warm for the next job.")(fn)
    fn = click.option(
        "--priority", type=click.IntRange(0, 100), default=DEFAULT_PRIORITY, show_default=True,
        help="0-100: on a farm shared with other jobs, a higher-priority job's ready shots go "
             "first; equal priorities share the workers; a waiting job gains priority with "
             "time.")(fn)
    return fn
