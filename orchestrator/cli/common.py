"""What every ``reelfarm`` command group shares: store options, one-line errors, problems."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from ..plan.expand import PlanError
from ..run.driver import Unplaceable, WorkerStartError
from ..run.render import EXIT_INVALID, RayConnectError
from ..spec.errors import ManifestInvalid, Problem
from ..store import DEFAULT_STORE, StoreError

STORE_HELP = f"Store URL: a directory, file:///dir or s3://bucket/prefix [default: {DEFAULT_STORE}]"


def _fail(msg: str, code: int = EXIT_INVALID) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def _read(source: str, s3_endpoint: str | None = None):
    """Load and validate a manifest from a path or an s3:// URL: ``(manifest, problems)``."""
    from ..spec.loading import load_manifest
    from ..store.sources import read_source

    try:
        data = read_source(source, s3_endpoint=s3_endpoint)
    except (OSError, StoreError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        why = why.removeprefix(f"{source}: ")
        return None, [Problem(source, None, None, "", f"cannot read: {why}")]
    try:
        return load_manifest(source, data), []
    except ManifestInvalid as e:
        return None, e.problems


def _load(source: str, s3_endpoint: str | None = None):
    """Load and validate a manifest, or exit 2 with one line per problem."""
    m, problems = _read(source, s3_endpoint)
    if problems:
        _print_problems(problems)
        sys.exit(EXIT_INVALID)
    return m


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        click.echo(str(p), err=True)


def _plan_problems(manifest, err: PlanError) -> list[Problem]:
    return [manifest.problem(path, msg) for path, msg in err.problems]


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and exit 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreError as e:
            _fail(str(e))
        except RayConnectError as e:
            _fail(str(e))
        except Unplaceable as e:
            _fail(f"cannot place the plan on this cluster:\n{e}")
        except WorkerStartError as e:
            _fail(str(e), code=1)

    return wrapper


def _store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--s3-endpoint", envvar="AWS_ENDPOINT_URL",
                      help="Endpoint of an S3-compatible server (MinIO, Ceph RGW, ...).")(fn)
    fn = click.option("--store", "store_url", envvar="REELFARM_STORE", help=STORE_HELP)(fn)
    return fn


