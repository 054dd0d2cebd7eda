"""What every ``reelfarm`` command group shares: one-line errors, reading manifests, problems,
and the locations a render writes to (checked before anything runs)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from actors.media import MediaError

from ..plan.expand import PlanError
from ..run.driver import Unplaceable, WorkerStartError
from ..run.render import EXIT_INVALID, RayConnectError
from ..spec.errors import ManifestInvalid, Problem
from ..spec.urls import BadLocation, printable
from ..store import LocalStore, StoreError, open_store
from .options import store_options as _store_options

__all__ = ["_fail", "_guard", "_load", "_plan_problems", "_print_problems", "_read",
           "_store_options", "check_out", "open_writable_store"]


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
        click.echo(printable(p), err=True)


def _plan_problems(manifest, err: PlanError) -> list[Problem]:
    return [manifest.problem(path, msg) for path, msg in err.problems]


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (StoreError, BadLocation) as e:
            _fail(str(e))
        except RayConnectError as e:
            _fail(str(e))
        except Unplaceable as e:
            _fail(f"cannot place the plan on this cluster:\n{e}")
        except WorkerStartError as e:
            _fail(str(e), code=1)
        except MediaError as e:  # no usable ffmpeg: keys name the encoder, so plan needs one
            _fail(str(e))

    return wrapper


def open_writable_store(store_url: str, s3_endpoint: str | None):
    """The store a render writes to, created when missing (and said so); a local store that
    cannot be written is refused now, before anything is rendered."""
    store = open_store(store_url, s3_endpoint=s3_endpoint, create=True)
    if isinstance(store, LocalStore):
        if store.created:
            click.echo(f"created a new store at {store.url}", err=True)
        store.check_writable()
    return store


def check_out(out: str, s3_endpoint: str | None) -> None:
    """Refuse an output location that cannot be written (a file, /proc, a read-only mount)
    before anything is rendered for it."""
    from ..store.outputs import open_output

    open_output(out, s3_endpoint=s3_endpoint).check_writable()
