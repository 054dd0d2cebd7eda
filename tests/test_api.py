"""The public Python API, and what a renderer actor imports when it starts."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import orchestrator


def test_every_public_name_is_the_object_of_its_module():
    for name in orchestrator.__all__:
        value = getattr(orchestrator, name)
        module = importlib.import_module(f"orchestrator.{orchestrator._HOME[name]}")
        assert value is getattr(module, name), name
    assert sorted(orchestrator._HOME) == sorted(orchestrator.__all__)


def test_star_import_gives_the_documented_names():
    ns: dict = {}
    exec("from orchestrator import *", ns)  # noqa: S102 - a fixed string, not input
    assert {"load_manifest", "expand", "render_story", "submit", "RenderOptions"} <= set(ns)


def test_an_unknown_name_is_an_attribute_error():
    try:
        orchestrator.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("orchestrator.no_such_thing resolved")


def test_a_renderer_actor_does_not_load_the_loader_scheduler_or_jobs_client():
    """An actor imports the renderer and unpickles tasks; on a node starting dozens of actors
    at once, every module it need not import is start-up time saved."""
    code = (
        "import sys, json, actors.renderer, orchestrator.plan, actors.encode\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('orchestrator'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(json.loads(out))
    assert "orchestrator.store" in loaded and "orchestrator.plan" in loaded
    assert not loaded & {"orchestrator.spec.loading", "orchestrator.jobs",
                         "orchestrator.run.render", "orchestrator.run.driver", "orchestrator.cli"}


def test_every_import_in_the_docs_resolves():
    """The Python examples in README.md, docs/ and the package docstring import names that
    exist where they say (the stage packages moved modules: a stale path fails here)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    texts = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    sources = [p.read_text() for p in texts] + [orchestrator.__doc__ or ""]
    found = []
    for text in sources:
        pairs = re.findall(r"from (orchestrator[\w.]*) import \(([\w,\s]+)\)", text)
        pairs += re.findall(r"from (orchestrator[\w.]*) import ([\w, ]+)", text)
        for module, names in pairs:
            for name in (n.strip() for n in names.split(",")):
                if name:
                    found.append((module, name))
    assert ("orchestrator", "load_manifest") in found  # the reader found the examples
    for module, name in found:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
