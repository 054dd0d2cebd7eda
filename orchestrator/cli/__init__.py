"""The ``reelfarm`` command line.

Exit codes are stable: 0 done, 1 some shots failed (the rest are done), 2 invalid input,
130 interrupted. Errors go to stderr; ``--json`` output on stdout is for machines only.

Each command group lives in a module of its own that lists its click commands in ``COMMANDS``
and imports only :mod:`.common` from here; registering a group is one line in ``GROUPS``.
"""

from __future__ import annotations

import click

from . import cache, jobs, nightly, story

GROUPS = [story, cache, jobs, nightly]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
