"""``reelfarm import``: a story from Ink, Twine (Twee 3, Twine 2 HTML) or Yarn Spinner."""

from __future__ import annotations

import os
import sys

import click

from ..spec.errors import Problem
from ..store.files import write_atomic

EXIT_INVALID = 2


def _problems(problems: list[Problem]) -> None:
    for p in problems:
        click.echo(str(p), err=True)


@click.command("import")
@click.argument("file")
@click.option("--from", "fmt", type=click.Choice(["ink", "twee", "twine-html", "yarn"]),
              help="The source's format; detected from the extension or content when omitted.")
@click.option("-o", "--output", "output", metavar="FILE",
              help="Write the manifest here (replaced atomically); default: stdout.")
@click.option("--unroll", type=click.IntRange(0, 20), metavar="N",
              help="Follow each loop N more times, then drop the link that closes it "
                   "(0..20); without it a story with a loop is not imported.")
@click.option("--all-options", is_flag=True,
              help="Make every conditional option available; without it a story with "
                   "conditional options is not imported.")
@click.option("--defaults", "defaults_file", metavar="FILE",
              help="YAML with story-wide settings: name, title, profile, renderer, seed, "
                   "masters, shots (words_per_second, min_duration, max_duration).")
def import_(file: str, fmt: str | None, output: str | None, unroll: int | None,
            all_options: bool, defaults_file: str | None) -> None:
    """Import FILE (Ink JSON, Twee 3, Twine 2 HTML or Yarn) as a reelfarm/v1 manifest.

    \b
    Prints a summary (segments, choices, endings, shots) and every loss (what the source
    says that a manifest cannot) on stderr. Only FILE (and --defaults) is read; nothing in
    it is run or fetched.
    Exit 0 imported, 2 cannot be imported (one line per reason, FILE:LINE where it has lines).
    Example:
      reelfarm import story.twee -o story.yaml --unroll 1 --all-options
    """
    from ..importers import ImportFailed, dump_manifest, import_file, load_defaults, read_limited

    try:
        defaults = None
        if defaults_file is not None:
            defaults = load_defaults(defaults_file, read_limited(defaults_file, "defaults",
                                                                 64 * 1024))
        result = import_file(file, fmt, unroll=unroll, all_options=all_options,
                             defaults=defaults)
    except ImportFailed as e:
        _problems(e.problems)
        click.echo(f"error: {file} cannot be imported ({len(e.problems)} problem"
                   f"{'s' if len(e.problems) != 1 else ''})", err=True)
        sys.exit(EXIT_INVALID)
    text = dump_manifest(result)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            _write_atomic(output, text)
        except OSError as e:
            click.echo(f"error: {output}: cannot write: {e.strerror or e}", err=True)
            sys.exit(EXIT_INVALID)
    for loss in result.losses:
        click.echo(f"lost: {loss}", err=True)
    if result.unrolled:
        shown = ", ".join(result.unrolled[:8]) + (", ..." if len(result.unrolled) > 8 else "")
        click.echo(f"unrolled: {len(result.unrolled)} segment copies ({shown})", err=True)
    click.echo(
        f"imported {file}: {_n(result.segments, 'segment')}, {_n(result.choices, 'choice')} "
        f"({_n(result.options, 'option')}), {_n(result.endings, 'ending')}, "
        f"{_n(result.shots, 'shot')}; {_n(len(result.losses), 'loss', 'losses')}"
        + (f"; wrote {output}" if output else ""),
        err=True,
    )


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _write_atomic(path: str, text: str) -> None:
    """Write the manifest in one step, keeping a replaced file's permissions."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = None  # a new file: as the umask gives it
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), mode)


COMMANDS = [import_]
