"""A hub model's moving revision (``null`` = main, a branch, a tag) is keyed on its commit.

Resolved offline in the local Hugging Face cache at plan time; the task then carries the commit,
so every node loads the bytes the key names. When the cache does not know the revision, ``plan``
says the shot is keyed on a moving branch.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

from orchestrator.cli import main

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def point(ref: str, commit: str) -> None:
        repo = cache / "models--org--tiny-ltx"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "model_index.json").write_text(json.dumps({"_class_name": "LTXPipeline"}))

    return point


def _plan(tmp_path, revision=None) -> dict:
    renderer = {"backend": "diffusers", "model": "org/tiny-ltx", "pipeline": "ltx", "steps": 2}
    if revision:
        renderer["revision"] = revision
    doc = story_dict([{"id": "a", "shots": [shot("a1", duration=1.0)]}],
                     renderer=renderer, profile={"width": 64, "height": 64, "fps": 9})
    path = write_story(tmp_path / "s.yaml", doc)
    r = CliRunner().invoke(main, ["plan", str(path), "--json", "--store", str(tmp_path / "st")])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_main_is_keyed_on_the_commit_the_cache_knows(tmp_path, hub_cache):
    hub_cache("main", COMMIT_A)
    on_main = _plan(tmp_path)
    pinned = _plan(tmp_path, COMMIT_A)
    assert on_main["notes"] == []
    assert on_main["task_list"][0]["key"] == pinned["task_list"][0]["key"]
    hub_cache("main", COMMIT_B)  # main moved: the same manifest is another key
    assert _plan(tmp_path)["task_list"][0]["key"] != pinned["task_list"][0]["key"]
    hub_cache("v1", COMMIT_A)  # a tag resolves the same way
    assert _plan(tmp_path, "v1")["task_list"][0]["key"] == pinned["task_list"][0]["key"]


def test_plan_says_when_a_shot_is_keyed_on_a_moving_branch(tmp_path, hub_cache):
    doc = _plan(tmp_path)  # the cache knows nothing of the model
    (note,) = doc["notes"]
    assert note.startswith("a1: org/tiny-ltx@main is keyed on a moving branch")
    assert _plan(tmp_path, COMMIT_A)["notes"] == []  # a commit needs no note
    renderer = {"backend": "diffusers", "model": "org/tiny-ltx", "pipeline": "ltx", "steps": 2}
    path = write_story(tmp_path / "t.yaml", story_dict(
        [{"id": "a", "shots": [shot("a1", duration=1.0)]}], renderer=renderer,
        profile={"width": 64, "height": 64, "fps": 9}))
    r = CliRunner().invoke(main, ["plan", str(path), "--store", str(tmp_path / "st")])
    assert "note: a1: org/tiny-ltx@main is keyed on a moving branch" in r.stdout
