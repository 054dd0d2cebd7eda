"""For the importer tests: run ``reelfarm import`` and ``plan`` as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.spec.loading import load_manifest

DATA = Path(__file__).resolve().parent / "data" / "import"


class Run:
    def __init__(self, code: int, stdout: str, stderr: str, manifest: dict | None):
        self.code, self.stdout, self.stderr, self.manifest = code, stdout, stderr, manifest

    @property
    def segments(self) -> dict[str, dict]:
        assert self.manifest is not None, self.stderr
        return {s["id"]: s for s in self.manifest["spec"]["segments"]}

    def successors(self) -> dict[str, list[str]]:
        out = {}
        for sid, s in self.segments.items():
            if "next" in s:
                out[sid] = [s["next"]]
            elif "choice" in s:
                out[sid] = [o["next"] for o in s["choice"]["options"]]
            else:
                out[sid] = []
        return out

    def lines(self, prefix: str) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith(prefix)]


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def run_import(source: Path | str, *args: str, out: Path | None = None) -> Run:
    """``reelfarm import SOURCE ARGS -o OUT``; the manifest is loaded back and validated."""
    argv = ["import", str(source), *args]
    if out is not None:
        argv += ["-o", str(out)]
    code, stdout, stderr = cli(*argv)
    assert "Traceback" not in stderr
    manifest = None
    if code == 0:
        text = out.read_text() if out is not None else stdout
        manifest = yaml.safe_load(text)
        load_manifest(str(out or "stdout"), text.encode())  # raises if not a valid manifest
    return Run(code, stdout, stderr, manifest)


def plan_keys(manifest_path: Path, store: Path) -> dict[str, str]:
    """Shot id -> render key, from ``reelfarm plan --json``."""
    code, stdout, stderr = cli("plan", str(manifest_path), "--store", str(store), "--json")
    assert code == 0, stderr
    return {t["shot"]: t["key"] for t in json.loads(stdout)["task_list"]}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
