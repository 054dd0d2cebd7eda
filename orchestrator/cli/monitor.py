"""``reelfarm ui`` and ``reelfarm reviews``: watch a store's runs in a browser, and list the
reviews made there."""

from __future__ import annotations

import getpass
import os
import sys

import click

from ..run.render import dumps
from ..store import open_store
from .common import _fail, _guard, _store_options
from .options import resolve_locations

TOKEN_ENV = "REELFARM_UI_TOKEN"
MIN_TOKEN = 16


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.command()
@_store_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to bind. Any but a loopback address needs ${TOKEN_ENV}.")
@click.option("--port", type=click.IntRange(0, 65535), default=8790, show_default=True,
              help="Port (0: any free port).")
@_guard
def ui(store_url: str | None, s3_endpoint: str | None, host: str, port: int) -> None:
    """Watch the farm in a browser: runs, the story graph, shots, logs, masters, reviews.

    \b
    Serves the store's run records read-only; the only thing it writes is a review
    (reviews/<story>/<shot>.json in the store). Media is streamed by this server: the browser
    never gets a store URL or credential. With REELFARM_UI_TOKEN set, every request must carry
    the token (open the printed URL with ?token=... once); binding anything but a loopback
    address requires it. Stop with Ctrl-C.
    Examples:
      reelfarm ui
      reelfarm ui --store s3://studio/reelfarm --port 8790
    """
    from ..monitor import is_loopback, make_app, serve

    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN:
        _fail(f"{TOKEN_ENV} must be at least {MIN_TOKEN} characters")
    if not is_loopback(host) and token is None:
        _fail(f"--host {host} is not a loopback address: set {TOKEN_ENV} (a long random "
              "string) so that the server refuses requests without it")
    store_url, s3_endpoint = resolve_locations(store_url, s3_endpoint)
    store = open_store(store_url, s3_endpoint=s3_endpoint, create=False)
    store.list_stories()  # an unreachable bucket or a refused credential: one line, now
    app = make_app(store, token=token, user=_user())

    def started(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()  # the URL is for whoever reads this pipe now, not at exit
        click.echo(f"serving {store.url} until Ctrl-C"
                   + (f" (requests need the token in {TOKEN_ENV})" if token else ""), err=True)

    try:
        serve(app, host, port, started)
    except OSError as e:
        _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


@click.command()
@click.argument("story")
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_guard
def reviews(story: str, store_url: str | None, s3_endpoint: str | None, as_json: bool) -> None:
    """List a story's shot reviews (made in `reelfarm ui`): the latest per shot.

    \b
    "older take" means the shot was rendered again, under another key, after the review.
    Example:
      reelfarm reviews lighthouse
    """
    from ..monitor import ids
    from ..monitor.reviews import story_reviews, summary

    try:
        ids.story_id(story)
    except ids.BadId as e:
        _fail(f"{story!r}: {e}")
    store_url, s3_endpoint = resolve_locations(store_url, s3_endpoint)
    store = open_store(store_url, s3_endpoint=s3_endpoint, create=False)
    latest = None
    for rid in reversed(store.list_runs(story)):
        latest = store.get_run(story, rid)
        if latest is not None:
            break
    rows = sorted(summary(story_reviews(store, story), latest).values(),
                  key=lambda r: r["shot"])
    if as_json:
        click.echo(dumps({"story": story, "reviews": rows}), nl=False)
        return
    if not rows:
        click.echo(f"{story}: no reviews", err=True)
        return
    for r in rows:
        take = {True: "current take", False: "older take", None: "not in the latest run"}[
            r["current"]]
        verdict = "approved" if r["verdict"] == "approved" else "needs changes"
        note = f"  {r['note']}" if r["note"] else ""
        click.echo(f"{r['shot']:<24} {verdict:<14} {r['who']:<16} {r['when'][:19]}Z  "
                   f"{r['key'][:12]}  {take}{note}")


COMMANDS = [ui, reviews]
