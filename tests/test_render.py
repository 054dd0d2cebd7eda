"""The whole path on a real Ray cluster: manifest -> plan -> renders -> masters (CLI level)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from actors.media import probe
from orchestrator.cli import main
from orchestrator.store import sha256_file

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CROSSROADS = str(MANIFESTS / "crossroads.yaml")


def run_cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def crossroads(ray_cluster, tmp_path_factory):
    """Render the bigger example once; later tests read what it wrote."""
    base = tmp_path_factory.mktemp("crossroads")
    store, out = base / "store", base / "out"
    code, stdout, stderr = run_cli("render", CROSSROADS, "--store", str(store), "--out", str(out),
                                   "--plain")
    return {"code": code, "stdout": stdout, "stderr": stderr, "store": store, "out": out}


def plan_json(store: Path) -> dict:
    code, stdout, _ = run_cli("plan", CROSSROADS, "--store", str(store), "--json")
    assert code == 0
    return json.loads(stdout)


def test_render_writes_one_master_per_branch(crossroads):
    assert crossroads["code"] == 0, crossroads["stderr"]
    out = crossroads["out"]
    branches = json.loads((out / "branches.json").read_text())
    masters = sorted(p.name for p in (out / "masters").iterdir())
    assert masters == sorted(f"{b['name']}.mp4" for b in branches)
    assert len(branches) == 7
    # stdout lists the masters, for scripts
    assert sorted(Path(line).name for line in crossroads["stdout"].split()) == masters


def test_master_frames_equal_the_sum_of_its_shots(crossroads):
    out = crossroads["out"]
    report = json.loads((out / "report.json").read_text())
    plan = plan_json(crossroads["store"])
    frames = {t["id"]: t["frames"] for t in plan["task_list"]}
    for b in json.loads((out / "branches.json").read_text()):
        info = probe(out / b["master"]["path"])
        expected = sum(frames[t] for t in b["tasks"])
        assert info.frames == expected == b["master"]["frames"]
        assert (info.width, info.height, info.codec) == (320, 176, "h264")
        assert sha256_file(out / b["master"]["path"])[0] == b["master"]["sha256"]
    assert report["status"] == "succeeded"
    assert all(t["status"] == "rendered" for t in report["tasks"])


def test_outputs_agree_with_plan_json(crossroads):
    out = crossroads["out"]
    plan = plan_json(crossroads["store"])
    branches = json.loads((out / "branches.json").read_text())
    report = json.loads((out / "report.json").read_text())
    strip = [{k: b[k] for k in ("name", "segments", "choices", "shots", "tasks")} for b in branches]
    assert strip == plan["branches"]
    assert report["totals"]["unique"] == plan["tasks"]["unique"] == 16
    assert report["totals"]["naive"] == plan["tasks"]["naive"] == 48
    assert plan["tasks"]["cached"] == 16 and plan["tasks"]["to_render"] == 0
    assert {t["id"] for t in report["tasks"]} == {t["id"] for t in plan["task_list"]}
    assert report["critical_path_seconds"] == plan["critical_path_seconds"]
    # the run record is kept in the store too
    runs = list((crossroads["store"] / "runs" / "crossroads").glob("*.json"))
    assert report["run_id"] in [json.loads(r.read_text())["run_id"] for r in runs]


def test_second_render_renders_nothing_and_reuses_masters(crossroads, tmp_path):
    out2 = tmp_path / "again"
    code, stdout, stderr = run_cli("render", CROSSROADS, "--store", str(crossroads["store"]),
                                   "--out", str(out2), "--plain")
    assert code == 0
    assert "nothing to render: all 16 tasks cached" in stderr
    report = json.loads((out2 / "report.json").read_text())
    assert report["totals"]["rendered"] == 0 and report["totals"]["masters_assembled"] == 0
    first = json.loads((crossroads["out"] / "branches.json").read_text())
    again = json.loads((out2 / "branches.json").read_text())
    assert [b["master"]["sha256"] for b in again] == [b["master"]["sha256"] for b in first]


def test_plan_table_names_what_renders_and_why(crossroads, tmp_path):
    code, stdout, _ = run_cli("plan", CROSSROADS, "--store", str(tmp_path / "empty"))
    assert code == 0
    assert "16 unique render tasks (naive per-branch count 48)" in stdout
    words = " ".join(stdout.split())  # the last column may wrap
    assert "never rendered" in words and "cafe-door~3" in stdout
    code, stdout, _ = run_cli("plan", CROSSROADS, "--store", str(crossroads["store"]),
                              "--force", "two-coffees", "--json")
    doc = json.loads(stdout)
    forced = [t for t in doc["task_list"] if t["status"] == "to_render"]
    assert [(t["id"], t["reason"]) for t in forced] == [("two-coffees", "forced")]


def test_force_rerenders_only_that_shot(crossroads, tmp_path):
    code, _, stderr = run_cli("render", CROSSROADS, "--store", str(crossroads["store"]),
                              "--out", str(tmp_path / "o"), "--force", "letter-read", "--quiet")
    assert code == 0, stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [t["id"] for t in report["tasks"] if t["status"] == "rendered"] == ["letter-read"]


def test_force_of_an_unknown_shot_is_refused(crossroads):
    code, _, stderr = run_cli("render", CROSSROADS, "--store", str(crossroads["store"]),
                              "--force", "no-such-shot")
    assert code == 2
    assert "no-such-shot" in stderr and "Traceback" not in stderr


def test_console_script_renders_the_small_example(tmp_path):
    """The installed `reelfarm` command, in its own process with its own local Ray."""
    exe = Path(sys.executable).with_name("reelfarm")
    r = subprocess.run(
        [str(exe), "render", str(MANIFESTS / "heist.yaml"), "--store", str(tmp_path / "s"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "masters").iterdir()) == [
        "escape~safe.mp4", "walk-away.mp4"]
    assert "\x1b[" not in r.stderr  # no TTY: plain lines, no control characters
    assert "succeeded" in r.stderr


def test_run_id_names_the_run_record(crossroads, tmp_path):
    store = crossroads["store"]
    code, _, stderr = run_cli("render", CROSSROADS, "--store", str(store), "--out",
                              str(tmp_path / "o"), "--run-id", "nightly-2026-11-23", "--quiet")
    assert code == 0, stderr
    record = json.loads((store / "runs" / "crossroads" / "nightly-2026-11-23.json").read_text())
    assert record["run_id"] == "nightly-2026-11-23" and record["status"] == "succeeded"
    code, _, stderr = run_cli("render", CROSSROADS, "--store", str(store), "--run-id", "../up")
    assert code == 2 and "--run-id" in stderr
