"""Why a task renders: ``plan`` compares each task's key document with the one its shot's
previous render kept (``ActionRecord.inputs``), through the CLI on real stores.

The story: ``mara-closeup`` (a cut), ``vault-door`` conditioned on it (continuity: previous),
and ``street`` (a cut with its own seed), rendered once into a store that each test copies.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from backends_for_tests import SleepBackend, use
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

from orchestrator.cli import main
from orchestrator.plan.keys import digest
from orchestrator.plan.why import own_changes, reason
from orchestrator.store import open_store
from orchestrator.store.base import action_path, blob_path

RED = "Mara, red coat, studies the vault door"
GREEN = "Mara, green coat, studies the vault door"
TASKS = ("mara-closeup", "vault-door", "street")


def base_story() -> dict:
    return story_dict(
        [{"id": "vault", "shots": [
            shot("mara-closeup", RED),
            shot("vault-door", "The door swings open", continuity="previous"),
            shot("street", "Rain on the street", seed=5),
        ]}],
        name="why",
        renderer={"backend": "why-sleep", "model": "studio/heist-model", "revision": "a1b2",
                  "steps": 30},
    )


def edited(**changes: Any) -> dict:
    """The story with shot fields (``shot__field=value``) or renderer fields changed."""
    doc = copy.deepcopy(base_story())
    for name, value in changes.items():
        if "__" in name:
            sid, field = name.split("__")
            s = next(s for s in doc["spec"]["segments"][0]["shots"] if s["id"] == sid)
            if field == "steps":
                s["renderer"] = {"steps": value}
            else:
                s[field] = value
        elif name == "profile":
            doc["spec"]["profile"] = value
        else:
            doc["spec"]["renderer"][name] = value
    return doc


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False, env={"COLUMNS": "250"})
    return r.exit_code, r.stdout, r.stderr


def plan_reasons(story: Path, store: Path | None, *extra: str) -> dict[str, tuple[str, str]]:
    """``plan --json``: each task's (status, reason)."""
    args = ["plan", str(story), "--json", *extra]
    if store is not None:
        args += ["--store", str(store)]
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    return {t["id"]: (t["status"], t["reason"]) for t in json.loads(stdout)["task_list"]}


@pytest.fixture(scope="module")
def rendered(ray_cluster, tmp_path_factory) -> dict[str, Any]:
    use(SleepBackend("why-sleep"))
    base = tmp_path_factory.mktemp("why")
    src = write_story(base / "why.yaml", base_story())
    store, out = base / "store", base / "out"
    code, _, stderr = cli("render", str(src), "--store", str(store), "--out", str(out),
                          "--quiet")
    assert code == 0, stderr
    return {"store": store, "report": json.loads((out / "report.json").read_text())}


@pytest.fixture
def store(rendered, tmp_path) -> Path:
    """A copy of the rendered store, for a test to change."""
    dest = tmp_path / "store"
    shutil.copytree(rendered["store"], dest)
    return dest


def test_first_render_says_never_rendered_and_keeps_each_key_document(rendered):
    report = rendered["report"]
    assert {t["id"]: t["reason"] for t in report["tasks"]} == dict.fromkeys(
        TASKS, "never rendered")
    st = open_store(str(rendered["store"]))
    run = st.get_run("why", report["run_id"])
    for t in report["tasks"]:
        rec = st.get_action(t["key"])
        assert rec is not None and rec.inputs is not None
        assert digest(rec.inputs) == t["key"]  # the exact document the key is the hash of
        assert rec.inputs["prompt"]["text"] in (RED, "The door swings open", "Rain on the street")
        assert run["records"][t["key"]]["inputs"] == rec.inputs  # the run record's copy too


def test_unchanged_story_is_all_cached(rendered):
    src = write_story(rendered["store"].parent / "same.yaml", base_story())
    assert plan_reasons(src, rendered["store"]) == dict.fromkeys(TASKS, ("cached", "cached"))


def test_prompt_edit_names_the_prompt_and_the_upstream(store, tmp_path):
    src = write_story(tmp_path / "s.yaml", edited(**{"mara-closeup__prompt": GREEN}))
    assert plan_reasons(src, store) == {
        "mara-closeup": ("to_render", f'prompt: "{RED}" → "{GREEN}"'),
        "vault-door": ("to_render", "upstream mara-closeup changed"),
        "street": ("cached", "cached"),
    }
    # the plan's table says the same
    code, stdout, _ = cli("plan", str(src), "--store", str(store))
    assert code == 0
    assert "upstream mara-closeup changed" in stdout and "green coat" in stdout


def test_model_revision(store, tmp_path):
    src = write_story(tmp_path / "s.yaml", edited(revision="c3d4"))
    # said once per task: vault-door's upstream changed for the same reason as itself
    assert plan_reasons(src, store) == dict.fromkeys(
        TASKS, ("to_render", "model revision a1b2 → c3d4"))


def test_model_steps_seed_frames_and_profile(store, tmp_path):
    src = write_story(tmp_path / "s.yaml", edited(**{
        "street__steps": 40, "street__seed": 6, "street__duration": 1.0,
        "mara-closeup__prompt": GREEN}))
    got = plan_reasons(src, store)
    # the seed of a shot without one follows its prompt: not said twice
    assert got["mara-closeup"] == ("to_render", f'prompt: "{RED}" → "{GREEN}"')
    assert got["street"] == ("to_render", "steps: 30 → 40; seed: 5 → 6; frames: 4 → 8")

    src = write_story(tmp_path / "p.yaml", edited(profile={"width": 128, "height": 64,
                                                           "fps": 8}))
    assert plan_reasons(src, store) == dict.fromkeys(
        TASKS, ("to_render", "profile: 64x64@8 → 128x64@8"))

    src = write_story(tmp_path / "m.yaml", edited(model="studio/other-model"))
    assert plan_reasons(src, store)["street"] == (
        "to_render", 'model "studio/heist-model" → "studio/other-model"')


def test_salt_changed(store, tmp_path):
    code, _, stderr = cli("cache", "salt", "batch-2", "--store", str(store), "--yes")
    assert code == 0, stderr
    src = write_story(tmp_path / "s.yaml", base_story())
    assert plan_reasons(src, store) == dict.fromkeys(TASKS, ("to_render", "salt changed"))


def test_forced_shot_and_its_unchanged_dependent(store, tmp_path):
    src = write_story(tmp_path / "s.yaml", base_story())
    assert plan_reasons(src, store, "--force", "mara-closeup") == {
        "mara-closeup": ("to_render", "forced"),
        "vault-door": ("cached", "cached: upstream mara-closeup forced, its own key unchanged"),
        "street": ("cached", "cached"),
    }


def test_record_removed_by_repair(rendered, store, tmp_path):
    street = next(t for t in rendered["report"]["tasks"] if t["id"] == "street")
    blob = store / blob_path(street["clip"])
    blob.chmod(0o644)
    blob.write_bytes(b"rot" + blob.read_bytes()[3:])
    code, _, stderr = cli("cache", "verify", "--store", str(store), "--repair")
    assert code == 0, stderr
    assert not (store / action_path(street["key"])).exists()
    src = write_story(tmp_path / "s.yaml", base_story())
    assert plan_reasons(src, store)["street"] == ("to_render", "record missing (repaired)")


def test_never_rendered(store, tmp_path):
    doc = base_story()
    doc["spec"]["segments"][0]["shots"].append(shot("epilogue", "Dawn over the bank"))
    src = write_story(tmp_path / "s.yaml", doc)
    got = plan_reasons(src, store)
    assert got["epilogue"] == ("to_render", "never rendered")
    assert {got[t][0] for t in TASKS} == {"cached"}
    # without a store, nothing was ever rendered
    assert plan_reasons(src, tmp_path / "no-store") == dict.fromkeys(
        [*TASKS, "epilogue"], ("to_render", "never rendered"))


def test_render_records_the_reasons(store, tmp_path):
    src = write_story(tmp_path / "s.yaml", edited(**{"mara-closeup__prompt": GREEN}))
    out = tmp_path / "out"
    code, _, stderr = cli("render", str(src), "--store", str(store), "--out", str(out),
                          "--quiet")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    reasons = {t["id"]: t["reason"] for t in report["tasks"]}
    assert reasons == {"mara-closeup": f'prompt: "{RED}" → "{GREEN}"',
                       "vault-door": "upstream mara-closeup changed", "street": "cached"}
    st = open_store(str(store))
    run = st.get_run("why", report["run_id"])
    assert {t["id"]: t["reason"] for t in run["tasks"]} == reasons
    # and the next edit is compared with this render, not the first one
    src = write_story(tmp_path / "r.yaml", edited(**{"mara-closeup__prompt": "Mara, hatless"}))
    assert plan_reasons(src, store)["mara-closeup"] == (
        "to_render", f'prompt: "{GREEN}" → "Mara, hatless"')


# -- the comparison itself -----------------------------------------------------------------


def _doc(**changes: Any) -> dict[str, Any]:
    doc = {"schema": 2, "salt": "", "backend": {"name": "diffusers", "version": "1"},
           "model": {"id": "m", "revision": "a" * 40}, "params": {"steps": 30, "model": "m"},
           "prompt": {"text": "p", "negative": ""}, "seed": 1, "frames": 24,
           "profile": {"width": 64, "height": 64, "fps": 8,
                       "encode": {"crf": 18, "encoder_build": {"ffmpeg": "6.1", "x264": "164"}}},
           "upstream": None}
    doc.update(changes)
    return doc


def test_long_prompts_are_cut_around_the_change():
    head, tail = "A" * 100, "Z" * 100
    got = own_changes(_doc(prompt={"text": head + " green " + tail, "negative": ""}),
                      _doc(prompt={"text": head + " red " + tail, "negative": ""}))
    assert len(got) == 1 and len(got[0]) < 200
    assert 'A' * 20 + ' red ' + 'Z' * 20 in got[0] and 'A' * 20 + ' green ' + 'Z' * 20 in got[0]
    assert got[0].startswith("prompt: …") and got[0].endswith("…")


def test_commit_revisions_are_shortened_and_encoder_builds_named():
    new = _doc(model={"id": "m", "revision": "b" * 40},
               profile={**_doc()["profile"], "encode": {"crf": 18, "encoder_build": {
                   "ffmpeg": "7.0", "x264": "164"}}})
    assert own_changes(new, _doc()) == [f"model revision {'a' * 12} → {'b' * 12}",
                                        "encoder build: ffmpeg 6.1 → 7.0"]


def test_continuity_changes_are_said_as_such():
    assert reason(_doc(upstream="k" * 64), _doc(), upstream_shot="hall")[0] == (
        "continuity: cut → after hall")
    assert reason(_doc(), _doc(upstream="k" * 64), upstream_shot=None)[0] == (
        "continuity: previous → cut")
    # the upstream named beside the task's own change when the upstream changed otherwise
    got = reason(_doc(upstream="n" * 64, seed=2), _doc(upstream="o" * 64),
                 upstream_shot="hall", upstream_changes=['prompt: "a" → "b"'])
    assert got == ("seed: 1 → 2; upstream hall changed", ["seed: 1 → 2"])


@pytest.mark.s3
def test_reasons_from_an_s3_store(ray_cluster, s3_url, tmp_path):
    """The same comparison over S3: the key documents are kept in the records there."""
    use(SleepBackend("why-sleep"))
    src = write_story(tmp_path / "why.yaml", base_story())
    code, _, stderr = cli("render", str(src), "--store", s3_url, "--out", str(tmp_path / "out"),
                          "--quiet")
    assert code == 0, stderr
    src = write_story(tmp_path / "s.yaml", edited(**{"mara-closeup__prompt": GREEN}))
    args = ["plan", str(src), "--json", "--store", s3_url]
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    reasons = {t["id"]: t["reason"] for t in json.loads(stdout)["task_list"]}
    assert reasons == {"mara-closeup": f'prompt: "{RED}" → "{GREEN}"',
                       "vault-door": "upstream mara-closeup changed", "street": "cached"}
