"""Static checks of the container images' Dockerfiles and their tags in ``k8s/``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import k8s_render  # noqa: E402

REPO = HERE.parent
DOCKERFILES = {"cuda": REPO / "docker" / "Dockerfile", "cpu": REPO / "docker" / "Dockerfile.cpu"}
SECRETISH = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL)", re.I)


def version() -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"$', text, re.M)
    assert match, "pyproject.toml has no project version"
    return match.group(1)


def arg_defaults(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def base_images(text: str) -> list[str]:
    args = arg_defaults(text)
    images = []
    for ref in re.findall(r"^FROM (\S+)", text, re.M):
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref))
    return images


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
    assert "wget" in text and "ffmpeg" in text


def test_cuda_image_matches_torch_build_and_tag():
    text = DOCKERFILES["cuda"].read_text(encoding="utf-8")
    args = arg_defaults(text)
    cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-", args["CUDA_IMAGE"])
    assert cuda, args["CUDA_IMAGE"]
    major, minor = cuda.groups()
    assert args["TORCH_INDEX"].endswith(f"/cu{major}{minor}")
    assert 'pip install ".[diffusion]"' in text
    assert f"reelfarm:{version()}-cuda{major}.{minor}" in text
    gpu = k8s_render.render(REPO / "k8s" / "overlays" / "gpu")
    images = {c["image"] for o in gpu for c in k8s_render.iter_containers(o)}
    assert f"ghcr.io/reelfarm/reelfarm:{version()}-cuda{major}.{minor}" in images


def test_cpu_image_tag_matches_version():
    text = DOCKERFILES["cpu"].read_text(encoding="utf-8")
    assert "pip install ." in text and "[diffusion]" not in text
    cpu = k8s_render.render(REPO / "k8s" / "overlays" / "cpu-demo")
    images = {c["image"] for o in cpu for c in k8s_render.iter_containers(o)}
    assert f"ghcr.io/reelfarm/reelfarm:{version()}-cpu" in images


def test_dockerignore_keeps_the_context_small():
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert lines[lines.index("*")] == "*"
    assert {"!pyproject.toml", "!orchestrator/", "!actors/"} <= set(lines)
