"""The encoder is part of every key: the ffmpeg and x264 builds that make a clip's bytes.

One build everywhere (imageio-ffmpeg's pinned binary, never ``ffmpeg`` from PATH); another
build chosen with ``IMAGEIO_FFMPEG_EXE`` gives other keys and is reported by ``plan``; a node
whose build is not the one a task's key names refuses the task instead of storing its bytes.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from actors.backends import get_backend
from actors.encode import EncoderMismatch, encoder_id
from actors.media import ffmpeg_exe
from actors.renderer import ShotFailed, ShotRenderer
from orchestrator.cli import main
from orchestrator.plan.expand import expand
from orchestrator.spec.loading import load_manifest

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
HEIST = str(MANIFESTS / "heist.yaml")


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def other_build(tmp_path, monkeypatch):
    """An ffmpeg that says it is another build (and encodes with the real one)."""
    real = ffmpeg_exe()
    wrapper = _script(tmp_path / "ffmpeg-other", f"""#!/bin/sh
if [ "$2" = "-version" ]; then echo "ffmpeg version 0.0-other-build"; exit 0; fi
exec "{real}" "$@"
""")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(wrapper))
    return wrapper


def test_the_encoder_is_named_from_the_binary_itself():
    ident = encoder_id()
    assert ident["source"] == "imageio-ffmpeg"
    assert ident["ffmpeg"] and ident["x264"].split()[0].isdigit()  # x264's core number


def test_ffmpeg_on_path_is_never_used(tmp_path, monkeypatch):
    _script(tmp_path / "ffmpeg", "#!/bin/sh\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    assert not os.path.samefile(ffmpeg_exe(), tmp_path / "ffmpeg")


def test_another_build_gives_other_keys_and_plan_reports_it(other_build, monkeypatch, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["plan", HEIST, "--json", "--store", str(tmp_path / "s")])
    other = json.loads(r.stdout)
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE")
    r = runner.invoke(main, ["plan", HEIST, "--json", "--store", str(tmp_path / "s")])
    pinned = json.loads(r.stdout)
    assert other["encoder"]["ffmpeg"] == "0.0-other-build"
    assert other["encoder"]["source"] == "IMAGEIO_FFMPEG_EXE"
    assert pinned["encoder"]["source"] == "imageio-ffmpeg"
    keys = {t["key"] for t in pinned["task_list"]}
    assert keys.isdisjoint(t["key"] for t in other["task_list"])
    r = runner.invoke(main, ["plan", HEIST, "--store", str(tmp_path / "s")])
    assert f"encoder: ffmpeg {pinned['encoder']['ffmpeg']}" in r.stdout


def test_a_node_with_another_build_refuses_the_task(other_build, tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE")
    plan = expand(load_manifest(HEIST).story)  # keyed on the pinned build (the driver's)
    task = plan.tasks[0]
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(other_build))  # this node has another build
    store = tmp_path / "store"
    worker = ShotRenderer(str(store), None, get_backend("previz"))
    with pytest.raises(ShotFailed, match="^EncoderMismatch: .*0.0-other-build") as got:
        worker.render(task, None)
    assert "EncoderMismatch" in got.value.traceback  # kept whole, for the shot's log
    assert not list(store.rglob("*.json"))  # nothing stored under the key
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE")  # the same build as the key: it renders
    record = worker.render(task, None)
    assert record.key == task.key and record.frames == task.frames


def test_no_usable_ffmpeg_is_one_clear_line_and_validate_needs_none(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    r = CliRunner().invoke(main, ["plan", HEIST, "--store", str(tmp_path / "s")])
    assert r.exit_code == 2
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error")]
    assert "IMAGEIO_FFMPEG_EXE" in line and "Traceback" not in r.output
    silent = _script(tmp_path / "ffmpeg-silent", "#!/bin/sh\nexit 0\n")  # names no version
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(silent))
    r = CliRunner().invoke(main, ["plan", HEIST, "--store", str(tmp_path / "s")])
    assert r.exit_code == 2 and "names no ffmpeg version" in r.stderr
    r = CliRunner().invoke(main, ["validate", HEIST])  # keys are not needed to validate
    assert r.exit_code == 0 and "ok (" in r.stdout


def test_masters_are_keyed_and_joined_by_one_build(tmp_path):
    from orchestrator.plan.keys import master_key
    from orchestrator.run.assembly import assemble_master
    from orchestrator.spec.manifest import Profile

    ours = encoder_id()
    other = {**ours, "ffmpeg": "0.0-other-build"}
    profile = {"width": 64, "height": 64, "fps": 8}
    assert master_key(["a" * 64], profile, ours) == master_key(["a" * 64], profile, dict(ours))
    assert master_key(["a" * 64], profile, ours) != master_key(["a" * 64], profile, other)
    with pytest.raises(EncoderMismatch, match="0.0-other-build"):
        assemble_master(str(tmp_path / "store"), None, "k" * 64, [], Profile(**profile), other)
