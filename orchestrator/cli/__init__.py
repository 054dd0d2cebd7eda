"""The ``reelfarm`` command line.

Exit codes are stable: 0 done, 1 some shots failed (the rest are done) or a write failed
(disk full, read-only file system), 2 invalid input (a bad path, a location that cannot be
written, a store that does not exist for a command that only reads), 130 interrupted (Ctrl-C,
every command). Errors go to stderr, one line each, never a traceback; ``--json`` output on
stdout is for machines only.

Each command group lives in a module of its own that lists its click commands in ``COMMANDS``
and imports only :mod:`.common` and :mod:`.options` from here; registering a group is one line
in ``GROUPS``.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click

from . import cache, delivery, farm, importing, jobs, monitor, nightly, runs, story

GROUPS = [story, cache, jobs, runs, nightly, farm, importing, delivery, monitor]

EXIT_WRITE_FAILED = 1
EXIT_SIGINT = 130


class _Main(click.Group):
    """The command group, run so that every command ends the same way: Ctrl-C exits 130 with
    one line (not click's "Aborted!" and 1), and an error writing a file or standard output
    (disk full, read-only file system) is one line and exit 1, never a traceback."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.Abort as e:
            if isinstance(e.__context__, KeyboardInterrupt):
                click.echo("interrupted", err=True)
                sys.exit(EXIT_SIGINT)
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except KeyboardInterrupt:  # outside a command (while parsing, say)
            click.echo("interrupted", err=True)
            sys.exit(EXIT_SIGINT)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except OSError as e:
            click.echo(f"error: {_os_error(e, stdout_failed=_quiet_stdout())}", err=True)
            sys.exit(EXIT_WRITE_FAILED)
        sys.exit(rv if isinstance(rv, int) else 0)


_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EIO,
                           errno.EACCES, errno.EPERM})


_STDOUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF})


def _os_error(e: OSError, *, stdout_failed: bool) -> str:
    what = e.strerror or str(e)
    # every file reelfarm writes names itself in its error; one that names nothing is stdout
    if not e.filename and (stdout_failed or e.errno in _STDOUT_ERRNOS):
        return f"cannot write standard output: {what}"
    if e.filename and e.errno in _WRITE_ERRNOS:
        return f"cannot write {e.filename}: {what}"
    return f"{e.filename}: {what}" if e.filename else what


def _quiet_stdout() -> bool:
    """Whether standard output has failed (``> /dev/full``); if so, point it at /dev/null so
    that the interpreter's last flush does not print a second error."""
    try:
        sys.stdout.flush()
        return False
    except OSError:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, sys.stdout.fileno())
            os.close(fd)
        except (OSError, ValueError, AttributeError):
            pass
        return True
    except (ValueError, AttributeError):
        return False


@click.group(cls=_Main,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reelfarm")
def main() -> None:
    """reelfarm renders branching, AI-generated movies on a Ray cluster.

    A story manifest (reelfarm/v1) is expanded into a DAG of shot renders; every shot is cached
    in a store under a content-derived key, so nothing renders twice; one master is assembled
    per branch with ffmpeg.

    \b
    Start here:
      reelfarm validate manifests/heist.yaml
      reelfarm plan manifests/heist.yaml
      reelfarm render manifests/heist.yaml
    """


for _group in GROUPS:
    for _command in _group.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
