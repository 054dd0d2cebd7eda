"""The command line as a user meets it: exit codes, one line per problem, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent
INVALID = sorted((ROOT / "manifests" / "invalid").glob("*.yaml"))
VALID = [ROOT / "manifests" / "heist.yaml", ROOT / "manifests" / "crossroads.yaml"]


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_each_bad_manifest_exits_2_with_located_problems(path):
    r = cli("validate", path)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines, "no problem reported"
    for line in lines:
        assert line.startswith(f"{path}:"), line
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_problems_carry_line_and_field_path():
    r = cli("validate", ROOT / "manifests" / "invalid" / "dangling-next.yaml")
    line = r.stderr.strip().splitlines()[0]
    _, lineno, col, rest = line.split(":", 3)
    assert lineno.isdigit() and col.isdigit()
    assert "next" in rest


def test_valid_examples_pass(tmp_path):
    r = cli("validate", *VALID)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count(": ok (") == 2


def test_junk_and_empty_files_exit_2(tmp_path):
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(os.urandom(10 * 1024 * 1024))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    missing = tmp_path / "missing.yaml"
    r = cli("validate", junk, empty, missing)
    assert r.exit_code == 2
    err = r.stderr
    assert str(junk) in err and str(empty) in err and str(missing) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 3


def test_render_and_plan_refuse_invalid_input_with_exit_2(tmp_path):
    bad = ROOT / "manifests" / "invalid" / "cycle.yaml"
    for cmd in ("plan", "render"):
        r = cli(cmd, bad, "--store", tmp_path / "s")
        assert r.exit_code == 2
        assert "cycle" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s" / "ac").exists()


def test_an_unknown_backend_is_reported_at_validate_with_its_line(tmp_path):
    doc = (ROOT / "manifests" / "heist.yaml").read_text().replace(
        "backend: previz", "backend: warp-drive", 1)
    f = tmp_path / "s.yaml"
    f.write_text(doc)
    r = cli("validate", f)
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"{f}:11:5: spec.renderer.backend: unknown backend 'warp-drive'")
    assert "previz" in line  # says what is available


def test_schema_command_prints_the_committed_schema():
    r = cli("schema")
    assert r.exit_code == 0
    committed = json.loads((ROOT / "manifests" / "story.schema.json").read_text())
    assert json.loads(r.stdout) == committed


@pytest.mark.parametrize("cmd", ["validate", "plan", "render", "schema"])
def test_help_teaches_with_an_example(cmd):
    r = cli(cmd, "--help")
    assert r.exit_code == 0
    assert "Example" in r.stdout and f"reelfarm {cmd}" in r.stdout


def test_plan_json_is_machine_output_only(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "plan", str(VALID[0]), "--json",
         "--store", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"story", "branches", "tasks", "critical_path_seconds"}
    assert doc["tasks"] == {"unique": 6, "naive": 8, "cached": 0, "to_render": 6}


def test_validate_reads_manifests_from_s3(s3_url, s3_client):
    from orchestrator.store.s3 import parse_s3_url

    bucket, prefix = parse_s3_url(s3_url)
    good = (ROOT / "manifests" / "heist.yaml").read_bytes()
    bad = (ROOT / "manifests" / "invalid" / "cycle.yaml").read_bytes()
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}heist.yaml", Body=good)
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}cycle.yaml", Body=bad)
    base = f"s3://{bucket}/{prefix}"
    r = cli("validate", f"{base}heist.yaml", f"{base}cycle.yaml", f"{base}missing.yaml")
    assert r.exit_code == 2
    assert r.stdout.startswith(f"{base}heist.yaml: ok (")
    err = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{base}cycle.yaml:") and "cycle" in line for line in err)
    assert any(line.startswith(f"{base}missing.yaml: cannot read") for line in err)
    assert "Traceback" not in r.stderr
