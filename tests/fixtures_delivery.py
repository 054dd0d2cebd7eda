"""A real previz render of manifests/lighthouse.yaml, packaged once for every delivery test, and
headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) to play it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

# the fixtures conftest.py takes from here; tests import the helpers by name
__all__ = ["lighthouse", "artifacts", "browser", "serve"]

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE = ROOT / "manifests" / "lighthouse.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required",
    # a page in a background tab would be throttled; the tests watch the timeline
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]


def run_cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def artifacts_dir(tmp_path_factory) -> Path:
    env = os.environ.get("REELFARM_TEST_ARTIFACTS")
    path = Path(env) if env else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def lighthouse(ray_cluster, tmp_path_factory):
    """``render --package`` of the lighthouse story: the store, the output and what it said."""
    base = tmp_path_factory.mktemp("lighthouse")
    store, out = base / "store", base / "out"
    code, stdout, stderr = run_cli("render", str(LIGHTHOUSE), "--store", str(store), "--out",
                                   str(out), "--plain", "--package")
    assert code == 0, stderr
    return {"store": store, "out": out, "stdout": stdout, "stderr": stderr,
            "branches": json.loads((out / "branches.json").read_text()),
            "story": json.loads((out / "story.json").read_text())}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    return artifacts_dir(tmp_path_factory)


def chromium_or_skip() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    why = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run the browser tests")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    exe = chromium_or_skip()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the playwright package is missing: pip install -e '.[test]'")
        pytest.skip("the playwright package is missing (pip install -e '.[test]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(exe), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def serve():
    """Serve a package directory on a free loopback port; returns its index.html URL."""
    from orchestrator.delivery import serve_package

    servers = []

    def start(root: Path) -> str:
        server, url = serve_package(root, "127.0.0.1", 0)
        servers.append(server)
        return url

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def copy_package(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def framemd5(args: list[str]) -> list[str]:
    """The MD5 of every decoded frame (in decode output order), by the real ffmpeg."""
    from actors.media import ffmpeg_exe

    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args, "-map", "0:v:0",
         "-fps_mode", "passthrough", "-f", "framemd5", "-"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return [line.rsplit(",", 1)[1].strip() for line in proc.stdout.splitlines()
            if line and not line.startswith("#")]
