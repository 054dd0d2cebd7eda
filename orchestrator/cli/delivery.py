"""``reelfarm package`` and ``reelfarm play``: interactive delivery (docs/delivery.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..delivery import DEFAULT_SEGMENT_SECONDS, NotRendered, PackageError, package_story
from ..plan.expand import PlanError
from ..run.render import EXIT_FAILED, EXIT_INVALID, dumps
from ..store import open_store
from .common import _fail, _guard, _load, _plan_problems, _print_problems, _store_options


def _default_out(story_name: str) -> str:
    return f"./renders/{story_name}"


def run_package(manifest, store_url: str | None, s3_endpoint: str | None, out: str | None,
                segment_seconds: float, as_json: bool = False) -> None:
    """Package ``manifest``'s story and print the summary; exits on failure."""
    store = open_store(store_url, s3_endpoint=s3_endpoint)
    dest = out or _default_out(manifest.story.name)
    try:
        result = package_story(manifest.story, store, dest, segment_seconds=segment_seconds,
                               s3_endpoint=s3_endpoint)
    except PlanError as e:
        _print_problems(_plan_problems(manifest, e))
        sys.exit(EXIT_INVALID)
    except NotRendered as e:
        _fail(str(e), code=EXIT_FAILED)
    except PackageError as e:
        _fail(str(e), code=EXIT_FAILED)
    except ValueError as e:
        _fail(str(e))
    doc = result.document()
    if as_json:
        click.echo(dumps(doc), nl=False)
        return
    b = doc["bytes"]
    ratio = b["package"] / b["unique_shots"] if b["unique_shots"] else 0.0
    masters = (f", {b['package'] / b['masters']:.2f}x the masters' {b['masters']:,}"
               if b["masters"] else "")
    click.echo(
        f"{doc['story']}: packaged {doc['packaged']}, reused {doc['reused']} of "
        f"{doc['packages']} shot packages; {b['package']:,} bytes ({ratio:.2f}x the unique "
        f"shots' {b['unique_shots']:,}{masters}) in {doc['seconds']:.1f}s",
        err=True,
    )
    click.echo(f"{result.out.rstrip('/')}/index.html")


@click.command()
@click.argument("file")
@_store_options
@click.option("--out", "out", metavar="DIR|s3://...",
              help="Where the package goes [default: ./renders/<story>/].")
@click.option("--segment-seconds", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_SEGMENT_SECONDS, show_default=True,
              help="Longest media segment, in seconds (whole keyframe intervals of 2 s).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead.")
@_guard
def package(file: str, store_url: str | None, s3_endpoint: str | None, out: str | None,
            segment_seconds: float, as_json: bool) -> None:
    """Package a rendered story for interactive playback: a static site.

    \b
    Each shot's clip becomes CMAF (fMP4) by stream copy, once: shots already packaged in the
    store are reused. Writes story.json, per-branch HLS playlists over shared segments
    (hls/index.m3u8) and the branching player (index.html). Exit 0 packaged, 1 some shots are
    not rendered yet (or cannot be packaged), 2 invalid input.
    Examples:
      reelfarm package manifests/heist.yaml
      reelfarm package manifests/heist.yaml --out s3://studio-web/heist --store s3://studio/rf
    """
    m = _load(file, s3_endpoint)
    run_package(m, store_url, s3_endpoint, out, segment_seconds, as_json)


@click.command()
@click.argument("file")
@click.option("--out", "out", metavar="DIR",
              help="The package directory [default: ./renders/<story>/].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback address to bind (127.0.0.1, ::1 or localhost).")
@click.option("--port", type=click.IntRange(0, 65535), default=8791, show_default=True,
              help="Port (0: any free port).")
@click.option("--s3-endpoint", envvar="AWS_ENDPOINT_URL", hidden=True)
def play(file: str, out: str | None, host: str, port: int, s3_endpoint: str | None) -> None:
    """Serve a story's package on this machine and print the player's URL.

    \b
    The package is what `reelfarm package` (or `render --package`) wrote. Stop with Ctrl-C.
    Example:
      reelfarm play manifests/heist.yaml
    """
    from ..delivery import serve_package

    m = _load(file, s3_endpoint)
    root = out or _default_out(m.story.name)
    if root.startswith("s3://"):
        _fail("play serves a local directory; open the package's index.html from its host")
    try:
        server, url = serve_package(Path(root), host, port)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    click.echo(url)
    sys.stdout.flush()  # the URL is for whoever reads this pipe now, not at exit
    click.echo("serving until Ctrl-C", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


def package_after_render(manifest, store_url: str | None, s3_endpoint: str | None,
                         result) -> None:
    """``render --package``: package into the render's ``--out`` once every shot rendered."""
    if result.exit_code != 0:
        click.echo(f"{manifest.story.name}: not packaged: the render did not finish every shot",
                   err=True)
        return
    run_package(manifest, store_url, s3_endpoint, result.out, DEFAULT_SEGMENT_SECONDS)


COMMANDS = [package, play]
