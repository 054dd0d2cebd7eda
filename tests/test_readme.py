"""The README's examples are what the code prints and accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.plan.expand import expand
from orchestrator.spec.loading import load_manifest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _parses(argv: list[str]) -> bool:
    """Whether the CLI accepts ``argv``'s command and options (``--help`` stops it running)."""
    return CliRunner().invoke(main, [*argv, "--help"]).exit_code == 0


def _sh_commands(text: str) -> list[list[str]]:
    """``reelfarm ...`` lines of the README's sh blocks, comments dropped."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("reelfarm "):
                out.append(shlex.split(line, comments=True)[1:])
    return out


def _help_examples(argv: list[str]) -> list[list[str]]:
    """The example command lines in ``reelfarm ARGV --help``."""
    r = CliRunner().invoke(main, [*argv, "--help"])
    assert r.exit_code == 0
    return [shlex.split(m, comments=True)[1:]
            for m in re.findall(r"^\s+(reelfarm [^\n]*?)(?:\\)?$", r.stdout, re.M)]


def test_the_cycle_example_is_what_validate_prints(monkeypatch):
    monkeypatch.chdir(ROOT)
    r = CliRunner().invoke(main, ["validate", "manifests/invalid/cycle.yaml"])
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert f"\n{line}\n" in README
    assert "`safe -> escape -> safe`" in README and "safe -> escape -> safe" in line


def test_every_readme_command_is_accepted():
    commands = _sh_commands(README)
    assert len(commands) >= 4
    assert not _parses(["cache", "gc", "--no-such-option"])  # the check can fail
    for argv in commands:
        assert _parses(argv), argv


@pytest.mark.parametrize("group", [["cache"], ["nightly"], ["plan"]])
def test_help_examples_are_accepted(group):
    examples = _help_examples(group)
    assert examples
    for argv in examples:
        assert _parses(argv), argv
    if group == ["cache"]:
        assert {tuple(a[:2]) for a in examples} >= {("cache", "stats"), ("cache", "gc")}


def test_the_branch_name_examples_are_real():
    heist = expand(load_manifest(str(ROOT / "manifests" / "heist.yaml")).story)
    crossroads = expand(load_manifest(str(ROOT / "manifests" / "crossroads.yaml")).story)
    names = {b.name for b in heist.branches} | {b.name for b in crossroads.branches}
    assert "`walk-away`" in README and "walk-away" in names
    assert "`truth~market.reunion`" in README and "truth~market.reunion" in names
