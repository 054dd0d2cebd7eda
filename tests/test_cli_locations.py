"""Where a render reads and writes, on a real Ray cluster: relative locations resolved once on
the driver, file modes, file:// URLs, and full or read-only disks met by a cached render."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story
from test_cli_input import fill, one_error_line, remount_ro, tmpfs

from orchestrator.cli import main
from orchestrator.store.files import umask


def cli(*args: object):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def small_story(tmp: Path, name: str = "where") -> Path:
    doc = story_dict(
        [{"id": "intro", "shots": [shot("hall"), shot("stairs", continuity="previous")],
          "choice": {"prompt": "?", "options": [{"label": "left", "next": "a"},
                                                 {"label": "right", "next": "b"}]}},
         {"id": "a", "shots": [shot("lamp")]}, {"id": "b", "shots": [shot("door")]}],
        name=name)
    return write_story(tmp / f"{name}.yaml", doc)


@pytest.fixture
def workers_elsewhere(ray_cluster, tmp_path):
    """The session's cluster joined by a driver whose workers run in another working directory
    (a runtime_env ``working_dir``, as a job submission gives them)."""
    import ray

    wd = tmp_path / "job-dir"
    wd.mkdir()
    (wd / "README").write_text("the job's own files\n")
    ray.shutdown()
    ray.init(address=ray_cluster.address, runtime_env={"working_dir": str(wd)},
             log_to_driver=False, logging_level="ERROR")
    try:
        yield wd
    finally:
        ray.shutdown()
        ray.init(address=ray_cluster.address, log_to_driver=False, logging_level="ERROR")


def test_relative_store_and_out_are_resolved_on_the_driver(workers_elsewhere, tmp_path,
                                                           monkeypatch):
    import ray

    @ray.remote(num_cpus=0)
    def cwd() -> str:
        return os.getcwd()

    driver = tmp_path / "driver"
    driver.mkdir()
    monkeypatch.chdir(driver)
    assert Path(ray.get(cwd.remote())).resolve() != driver.resolve()  # the premise holds
    story = small_story(tmp_path)
    code, stdout, stderr = cli("render", story, "--store", "store", "--out", "out", "--plain")
    assert code == 0, stderr
    assert f"created a new store at {driver / 'store'}" in stderr
    # every record and blob is in the driver's ./store, the masters in its ./out
    assert len(list((driver / "store" / "ac").glob("*.json"))) == 6  # 4 clips + 2 masters
    branches = json.loads((driver / "out" / "branches.json").read_text())
    assert len(branches) == 2 and all(b["master"] for b in branches)
    for b in branches:
        assert (driver / "out" / b["master"]["path"]).is_file()
    assert stdout.split() == [str(driver / "out" / b["master"]["path"]) for b in branches]
    # files are readable by the others on a shared file system: 0666 less the umask (the
    # driver's and the workers', inherited from this process), 0644 under 022, never 0600
    expected = oct(0o666 & ~umask())
    files = [p for p in (driver / "store").rglob("*") if p.is_file()]
    files += [p for p in (driver / "out").rglob("*") if p.is_file()]
    assert files
    modes = {p.relative_to(driver).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {expected}, modes
    # a plan from the driver sees it all cached
    code, stdout, _ = cli("plan", story, "--store", "store", "--json")
    assert json.loads(stdout)["tasks"]["to_render"] == 0


@pytest.fixture(scope="module")
def rendered(ray_cluster, tmp_path_factory):
    """A small story rendered once into a store on a tmpfs (so it can be filled or made
    read-only); the tests render it again, fully cached."""
    base = tmp_path_factory.mktemp("cached")
    mnt = base / "mnt"
    with tmpfs(mnt, size="16m"):
        story = small_story(base)
        code, _, stderr = cli("render", story, "--store", mnt / "store", "--out", base / "out",
                              "--plain")
        assert code == 0, stderr
        yield {"story": story, "store": mnt / "store", "mnt": mnt, "base": base}


def test_out_as_a_file_url_on_localhost_is_that_path(rendered, tmp_path):
    out = tmp_path / "published"
    code, _, stderr = cli("render", rendered["story"], "--store", rendered["store"],
                          "--out", f"file://localhost{out}", "--plain")
    assert code == 0, stderr
    assert (out / "branches.json").is_file()
    assert not Path("localhost").exists()


def test_a_cached_render_onto_a_full_out_is_one_line_and_leaves_no_temporary_file(
        rendered, tmp_path):
    mnt = tmp_path / "full"
    with tmpfs(mnt, size="256k"):
        fill(mnt)
        code, _, stderr = cli("render", rendered["story"], "--store", rendered["store"],
                              "--out", mnt / "out", "--plain")
        assert code == 1
        assert "Traceback" not in stderr
        # each write that failed is one line naming its file under --out
        errors = [line for line in stderr.splitlines() if line.strip().startswith("error")]
        assert errors and all(str(mnt / "out") in line for line in errors), stderr
        assert not [p for p in mnt.rglob(".tmp-*")]


def error_line(stderr: str) -> str:
    """The one error line among a render's progress notes; no traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_a_cached_render_on_a_full_store_is_one_line(rendered, tmp_path):
    filler = rendered["mnt"] / "filler"
    try:
        fill(rendered["mnt"])
        code, _, stderr = cli("render", rendered["story"], "--store", rendered["store"],
                              "--out", tmp_path / "out", "--plain")
    finally:
        filler.unlink(missing_ok=True)
    assert code == 1
    line = error_line(stderr)
    assert line.startswith("error: cannot write ") and str(rendered["store"]) in line
    assert not [p for p in rendered["store"].rglob(".tmp-*")]


def test_a_cached_render_on_a_read_only_store_is_refused_before_it_starts(rendered, tmp_path):
    remount_ro(rendered["mnt"])  # the last test of the module to use the store
    code, _, stderr = cli("render", rendered["story"], "--store", rendered["store"],
                          "--out", tmp_path / "out", "--plain")
    assert code == 2
    line = one_error_line(stderr)
    assert line.startswith("error: cannot write to store") and str(rendered["store"]) in line
    assert not (tmp_path / "out" / "branches.json").exists()
