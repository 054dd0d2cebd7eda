"""The container images: their Dockerfiles, and the CPU image built and run on a real engine.

The static checks run everywhere. The engine tests build ``docker/Dockerfile.cpu`` with the
``docker`` CLI (the engine ``DOCKER_HOST`` names, else the default socket) and render a story in
it with ``docker run``. Where no engine is reachable they skip with the reason; under ``CI=true``
they fail instead (``.ci/run`` starts one). The base image is ``$REELFARM_DOCKER_BASE`` when set
(``.ci/run`` sets a Debian bookworm image made with debootstrap, see docker/README.md), else the
Dockerfile's default. Where the host has extra CA certificates
(``/usr/local/share/ca-certificates``, for a TLS-inspecting proxy), the test builds on a
test-only layer that trusts them; the published image never carries them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import k8s_render  # noqa: E402

from actors.media import probe  # noqa: E402

REPO = HERE.parent
DOCKERFILES = {"cuda": REPO / "docker" / "Dockerfile", "cpu": REPO / "docker" / "Dockerfile.cpu"}
SECRETISH = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL)", re.I)
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
BUILD_TIMEOUT = 1800  # seconds; a cold build downloads every wheel


def version() -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"$', text, re.M)
    assert match, "pyproject.toml has no project version"
    return match.group(1)


def pinned(package: str) -> str:
    text = (REPO / "constraints.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M | re.I)
    assert match, f"constraints.txt does not pin {package}"
    return match.group(1)


def arg_defaults(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def base_images(text: str) -> list[str]:
    args = arg_defaults(text)
    images = []
    for ref in re.findall(r"^FROM (\S+)", text, re.M):
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref))
    return images


# --- the Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_is_pinned_non_root_and_secret_free(flavour):
    text = DOCKERFILES[flavour].read_text(encoding="utf-8")
    for image in base_images(text):
        _, tag, digest = k8s_render.split_image(image)
        assert digest or (tag and tag != "latest"), image
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for name in re.findall(r"^(?:ENV|ARG)\s+(\w+)", text, re.M):
        assert not SECRETISH.search(name), name
    assert "wget" in text and "tini" in text


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfiles_share_base_python_and_constraints(flavour):
    """One base argument, one Python minor, one package set (Ray included) in both images."""
    text = DOCKERFILES[flavour].read_text(encoding="utf-8")
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}", "${BASE}"]
    assert arg_defaults(text)["BASE"].startswith("python:3.11.")
    installs = re.findall(r"pip install (.+?) && pip check", text)
    assert installs and all(i.startswith("-c constraints.txt ") for i in installs), installs
    assert "COPY constraints.txt" in text
    assert not re.search(r"^(FROM|ARG).*nvidia/cuda", text, re.M)
    script = (REPO / "docker" / "ensure-python.sh").read_text(encoding="utf-8")
    assert "(3, 11)" in script


def test_cuda_image_tag_names_torchs_cuda_build():
    """The CUDA tag is the CUDA of the pinned torch wheel (2.13.0 on PyPI: CUDA 13.0)."""
    assert pinned("torch") == "2.13.0"
    text = DOCKERFILES["cuda"].read_text(encoding="utf-8")
    assert 'pip install -c constraints.txt ".[diffusion]"' in text
    tag = f"{version()}-cuda13.0"
    assert f"reelfarm:{tag}" in text
    gpu = k8s_render.render(REPO / "k8s" / "overlays" / "gpu")
    images = {c["image"] for o in gpu for c in k8s_render.iter_containers(o)}
    assert f"ghcr.io/reelfarm/reelfarm:{tag}" in images


def test_cpu_image_tag_matches_version():
    text = DOCKERFILES["cpu"].read_text(encoding="utf-8")
    assert "pip install -c constraints.txt . " in text and "[diffusion]" not in text
    cpu = k8s_render.render(REPO / "k8s" / "overlays" / "cpu-demo")
    images = {c["image"] for o in cpu for c in k8s_render.iter_containers(o)}
    assert f"ghcr.io/reelfarm/reelfarm:{version()}-cpu" in images


def test_ray_version_is_one_everywhere():
    ray = pinned("ray")
    for target in ("overlays/gpu", "overlays/cpu-demo"):
        for obj in k8s_render.render(REPO / "k8s" / target):
            if obj["kind"] == "RayCluster":
                assert obj["spec"]["rayVersion"] == ray, target


def test_dockerignore_admits_exactly_what_the_dockerfiles_copy():
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything must be excluded first"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for text in (p.read_text(encoding="utf-8") for p in DOCKERFILES.values()):
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
            copied.update(s.rstrip("/") for s in sources.split())
    assert admitted == copied
    for path in admitted:
        assert (REPO / path).exists(), path


# --- a real engine -----------------------------------------------------------------------------


def engine_or_skip(environ: dict[str, str], docker: str | None) -> str:
    """The engine's version; skip with the reason where none is reachable, fail under CI=true."""
    reason = None
    if docker is None:
        reason = "no docker CLI on PATH"
    else:
        try:
            proc = subprocess.run(
                [docker, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                timeout=30,
                env=environ,
            )
        except subprocess.TimeoutExpired:
            reason = "the Docker engine did not answer within 30 s"
        else:
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout.strip()
            where = environ.get("DOCKER_HOST") or "the default socket"
            reason = f"no Docker engine reachable at {where}"
    if environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true needs one (.ci/run starts it), the image tests must run")
    pytest.skip(f"{reason} (see docker/README.md to start one)")


def test_missing_engine_skips_locally_and_fails_under_ci(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    docker = shutil.which("docker")
    with pytest.raises(pytest.skip.Exception, match="no docker CLI on PATH"):
        engine_or_skip(env, None)
    with pytest.raises(pytest.fail.Exception, match="CI=true needs one"):
        engine_or_skip({**env, "CI": "true"}, None)
    if docker is not None:
        with pytest.raises(pytest.skip.Exception, match="no Docker engine reachable at unix://"):
            engine_or_skip(env, docker)
        with pytest.raises(pytest.fail.Exception, match="CI=true needs one"):
            engine_or_skip({**env, "CI": "true"}, docker)


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _base_with_host_cas(base: str, workdir: Path) -> str:
    """``base`` plus the host's extra CA certificates, for HTTPS through this host's proxy."""
    certs = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
    if not certs:
        return base
    context = workdir / "ca-layer"
    context.mkdir()
    for cert in certs:
        shutil.copy(cert, context / cert.name)
    (context / "Dockerfile").write_text(
        "ARG BASE\n"
        "FROM ${BASE}\n"
        "COPY *.crt /usr/local/share/ca-certificates/\n"
        "RUN if ! command -v update-ca-certificates > /dev/null; then apt-get update"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
        " ca-certificates && rm -rf /var/lib/apt/lists/*; fi && update-ca-certificates\n"
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
        " SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"
    )
    tag = "reelfarm-test/base-with-host-cas:latest"
    docker(
        "build", "--network=host", "--build-arg", f"BASE={base}", "-t", tag, str(context),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    return tag


@pytest.fixture(scope="module")
def cpu_image(tmp_path_factory) -> str:
    engine_or_skip(dict(os.environ), shutil.which("docker"))
    dockerfile = DOCKERFILES["cpu"].read_text(encoding="utf-8")
    base = os.environ.get("REELFARM_DOCKER_BASE") or arg_defaults(dockerfile)["BASE"]
    base = _base_with_host_cas(base, tmp_path_factory.mktemp("docker"))
    tag = "reelfarm-test/cpu:latest"
    started = time.monotonic()
    docker(
        "build", "--network=host", "--build-arg", f"BASE={base}", "-t", tag,
        "-f", str(DOCKERFILES["cpu"]), str(REPO),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    print(f"built {tag} on {base} in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")
    return tag


@pytest.mark.timeout(BUILD_TIMEOUT + 600)
def test_cpu_image_has_python_311_the_pinned_ray_and_a_non_root_user(cpu_image):
    inspect = docker("image", "inspect", "--format", "{{json .Config}}", cpu_image)
    config = json.loads(inspect.stdout)
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--"]
    proc = docker(
        "run", "--rm", "--network=none", cpu_image,
        "python3", "-c", "import sys, ray, yaml; print(sys.version_info[:2], ray.__version__)",
    )  # fmt: skip
    assert proc.stdout.split("\n")[0] == f"(3, 11) {pinned('ray')}"
    torch = docker(
        "run", "--rm", "--network=none", cpu_image, "python3", "-c", "import torch", check=False
    )
    assert torch.returncode != 0, "the CPU image must not carry torch"


@pytest.mark.timeout(BUILD_TIMEOUT + 600)
def test_cpu_image_renders_the_example(cpu_image, tmp_path):
    """``reelfarm render`` inside the image, on its own local Ray, writes every branch's master."""
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)  # the image runs as uid 1000
    shutil.copy(REPO / "manifests" / "heist.yaml", work / "heist.yaml")
    proc = docker(
        "run", "--rm", "--init", "--network=none", "--shm-size=512m",
        "-v", f"{work}:/work", cpu_image,
        "reelfarm", "render", "/work/heist.yaml", "--store", "/work/store", "--out", "/work/out",
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0
    story = yaml.safe_load((REPO / "manifests" / "heist.yaml").read_text(encoding="utf-8"))
    endings = [s for s in story["spec"]["segments"] if not s.get("choice") and not s.get("next")]
    branches = json.loads((work / "out" / "branches.json").read_text(encoding="utf-8"))
    assert len(branches) == len(endings) >= 2
    masters = sorted((work / "out" / "masters").glob("*.mp4"))
    assert sorted(b["master"]["path"] for b in branches) == [
        str(m.relative_to(work / "out")) for m in masters
    ]
    for branch in branches:
        master = work / "out" / branch["master"]["path"]
        assert hashlib.sha256(master.read_bytes()).hexdigest() == branch["master"]["sha256"]
        assert probe(master).frames == branch["master"]["frames"] > 0
