"""Values in a manifest as a writer types them: a boolean is never a number."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

HEIST = Path(__file__).resolve().parent.parent / "manifests" / "heist.yaml"


@pytest.mark.parametrize(("old", "new", "where", "field"), [
    ("duration: 2.0", "duration: true", "20:11", "spec.segments[0].shots[0].duration"),
    ("fps: 12}", "fps: true}", "9:38", "spec.profile.fps"),
    ("width: 320", "width: false", "9:13", "spec.profile.width"),
    ("seed: 7", "seed: true", "12:3", "spec.seed"),
    ("default: 0", "default: false", "27:9", "spec.segments[0].choice.default"),
], ids=["duration", "fps", "width", "seed", "choice-default"])
def test_numeric_fields_refuse_booleans(old, new, where, field, tmp_path):
    text = HEIST.read_text()
    assert old in text
    f = tmp_path / "story.yaml"
    f.write_text(text.replace(old, new, 1))
    r = CliRunner().invoke(main, ["validate", str(f)], catch_exceptions=False)
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"{f}:{where}: {field}: must be "), line
    assert "true/false" in line


def test_numbers_written_as_numbers_still_validate(tmp_path):
    text = HEIST.read_text().replace("duration: 2.0", "duration: 2", 1).replace(
        "seed: 7", "seed: 7", 1)
    f = tmp_path / "story.yaml"
    f.write_text(text)
    r = CliRunner().invoke(main, ["validate", str(f)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
