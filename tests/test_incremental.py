"""Incremental re-render: an edit renders exactly the tasks whose keys changed, re-assembles
exactly the branches holding them, and a nightly run over unchanged stories writes nothing.

The story (segments a..e)::

    a: a1, a2(prev)  --choice-->  b: b1(prev), b2       --> d: d1(prev), d2(prev), d3
                                  c: c1  --choice-->        d
                                                            e: e1(prev)

``d1`` continues from ``b2`` or from ``c1``, so it and ``d2`` have two variants each
(``d1~1``/``d2~1`` after ``b2``, ``d1~2``/``d2~2`` after ``c1``). Branches: ``d~b`` (a b d),
``d~c`` (a c d), ``e~c`` (a c e).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

from orchestrator.cli import main
from orchestrator.jobs.nightly import NightlyOptions, run_nightly
from orchestrator.run.driver import SchedulerOptions
from orchestrator.store import sha256_file

ALL_TASKS = {"a1", "a2", "b1", "b2", "c1", "d1~1", "d1~2", "d2~1", "d2~2", "d3", "e1"}
BRANCHES = ("d~b", "d~c", "e~c")


def choice(*nexts: str) -> dict:
    return {"prompt": "?", "default": 0,
            "options": [{"label": n.upper(), "next": n} for n in nexts]}


def base_story(name: str = "inc") -> dict:
    return story_dict([
        {"id": "a", "shots": [shot("a1"), shot("a2", continuity="previous")],
         "choice": choice("b", "c")},
        {"id": "b", "shots": [shot("b1", continuity="previous"), shot("b2")], "next": "d"},
        {"id": "c", "shots": [shot("c1")], "choice": choice("d", "e")},
        {"id": "d", "shots": [shot("d1", continuity="previous"),
                              shot("d2", continuity="previous"), shot("d3")]},
        {"id": "e", "shots": [shot("e1", continuity="previous")]},
    ], name=name)


def with_prompt(doc: dict, shot_id: str, prompt: str) -> dict:
    doc = copy.deepcopy(doc)
    for seg in doc["spec"]["segments"]:
        for s in seg["shots"]:
            if s["id"] == shot_id:
                s["prompt"] = prompt
                return doc
    raise KeyError(shot_id)


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def rendered_ids(report: dict) -> set[str]:
    return {t["id"] for t in report["tasks"] if t["status"] == "rendered"}


def masters(out: Path) -> dict[str, str]:
    return {b["name"]: b["master"]["sha256"]
            for b in json.loads((out / "branches.json").read_text())}


@pytest.fixture(scope="module")
def baseline(ray_cluster, tmp_path_factory) -> dict[str, Any]:
    """The story rendered once into a store that every test here builds on."""
    base = tmp_path_factory.mktemp("incremental")
    src = write_story(base / "inc.yaml", base_story())
    store, out = base / "store", base / "out"
    code, _, stderr = cli("render", str(src), "--store", str(store), "--out", str(out), "--quiet")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    return {"base": base, "store": store, "report": report, "masters": masters(out)}


def test_first_render_renders_every_task_once(baseline):
    assert rendered_ids(baseline["report"]) == ALL_TASKS
    assert baseline["report"]["totals"]["masters_assembled"] == 3
    assert set(baseline["masters"]) == set(BRANCHES)


@pytest.mark.parametrize(
    ("edited", "tasks", "reassembled"),
    [
        # a cut shot in one branch: it, and the continuity chain after it in that branch only
        ("b2", {"b2", "d1~1", "d2~1"}, {"d~b"}),
        # a cut shot before a choice: its chains into both segments that follow it
        ("c1", {"c1", "d1~2", "d2~2", "e1"}, {"d~c", "e~c"}),
        # a continuity shot early in the story: only the chain that conditions on it
        ("a2", {"a2", "b1"}, {"d~b", "d~c", "e~c"}),
        # a cut shot shared by two branches, nothing conditioned on it
        ("d3", {"d3"}, {"d~b", "d~c"}),
        # the last shot of an ending
        ("e1", {"e1"}, {"e~c"}),
    ],
)
def test_one_prompt_change_renders_exactly_its_tasks(baseline, tmp_path, edited, tasks,
                                                     reassembled):
    doc = with_prompt(base_story(), edited, f"a new take on {edited}, in the rain")
    src = write_story(tmp_path / "inc.yaml", doc)
    store = str(baseline["store"])

    code, stdout, _ = cli("plan", str(src), "--store", store, "--json")
    assert code == 0
    plan = json.loads(stdout)
    to_render = {t["id"]: t["reason"] for t in plan["task_list"] if t["status"] == "to_render"}
    assert set(to_render) == tasks
    # the edited shot names its prompt; the shots conditioned on it, their upstream
    upstream = {t["id"]: t["upstream"] for t in plan["task_list"]}
    assert to_render.pop(edited) == (
        f'prompt: "prompt of {edited}" → "a new take on {edited}, in the rain"')
    assert to_render == {t: f"upstream {upstream[t].split('~')[0]} changed" for t in to_render}
    assert plan["tasks"]["to_render"] == len(tasks)
    assert plan["tasks"]["cached"] == len(ALL_TASKS) - len(tasks)

    out = tmp_path / "out"
    code, _, stderr = cli("render", str(src), "--store", store, "--out", str(out), "--quiet")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert rendered_ids(report) == tasks
    assert {t["id"] for t in report["tasks"] if t["status"] == "cached"} == ALL_TASKS - tasks
    assert report["totals"]["rendered"] == len(tasks)
    assert report["totals"]["masters_assembled"] == len(reassembled)
    cached = {b["name"] for b in report["branches"] if b["cached"]}
    assert cached == set(BRANCHES) - reassembled
    # untouched branches keep their master byte for byte; the others get a new one
    new = masters(out)
    for name in BRANCHES:
        same = new[name] == baseline["masters"][name]
        assert same == (name not in reassembled), name
        assert sha256_file(out / "masters" / f"{name}.mp4")[0] == new[name]

    # and once rendered, the edited story is fully cached
    code, stdout, _ = cli("plan", str(src), "--store", store, "--json")
    assert json.loads(stdout)["tasks"]["to_render"] == 0


def test_force_and_a_new_key_give_their_reasons(baseline, tmp_path):
    doc = with_prompt(base_story(), "b2", "b2 from another angle")
    src = write_story(tmp_path / "inc.yaml", doc)
    code, stdout, _ = cli("plan", str(src), "--store", str(baseline["store"]), "--json",
                          "--force", "c1")
    assert code == 0
    reasons = {t["id"]: t["reason"] for t in json.loads(stdout)["task_list"]
               if t["status"] == "to_render"}
    assert reasons.pop("b2").endswith(' → "b2 from another angle"')
    assert reasons == {"c1": "forced", "d1~1": "upstream b2 changed",
                       "d2~1": "upstream d1 changed"}


# -- nightly over local directories ------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time in nanoseconds."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_nightly_over_an_unchanged_story_writes_nothing(ray_cluster, tmp_path):
    stories = tmp_path / "stories"
    stories.mkdir()
    write_story(stories / "one.yaml", base_story("one"))
    write_story(stories / "two.yaml", with_prompt(base_story("two"), "a1", "two's opening"))
    store, out = tmp_path / "store", tmp_path / "out"
    opts = NightlyOptions(store=str(store), out=str(out), progress="quiet",
                          scheduler=SchedulerOptions(retries=0))

    first = run_nightly(str(stories), opts)
    assert first.exit_code == 0
    assert [(s.story, s.status, s.rendered) for s in first.stories] == [
        ("one", "rendered", len(ALL_TASKS)), ("two", "rendered", 3)]
    # "two" shares every key with "one" but a1's and the chain conditioned on it (a2, b1)
    assert first.stories[1].cached == len(ALL_TASKS) - 3

    before_store, before_out = _tree(store), _tree(out)
    second = run_nightly(str(stories), opts)
    assert second.exit_code == 0
    assert [(s.story, s.status, s.rendered, s.masters_assembled) for s in second.stories] == [
        ("one", "unchanged", 0, 0), ("two", "unchanged", 0, 0)]
    assert _tree(store) == before_store  # no clip, record or run record written
    after_out = _tree(out)
    new = set(after_out) - set(before_out)
    assert new == {f"nightly-{second.run_id}.json"}
    assert {k: after_out[k] for k in before_out} == before_out
    summary = json.loads((out / f"nightly-{second.run_id}.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["totals"] == {"stories": 2, "unchanged": 2, "rendered": 0, "failed": 0,
                                 "invalid": 0, "skipped": 0, "tasks_rendered": 0,
                                 "masters_assembled": 0}


def test_nightly_republishes_a_deleted_master_without_rendering(ray_cluster, tmp_path):
    stories = tmp_path / "stories"
    stories.mkdir()
    write_story(stories / "one.yaml", base_story("solo"))
    store, out = tmp_path / "store", tmp_path / "out"
    opts = NightlyOptions(store=str(store), out=str(out), progress="quiet")
    assert run_nightly(str(stories), opts).exit_code == 0
    master = out / "solo" / "masters" / "e~c.mp4"
    digest = sha256_file(master)[0]
    master.unlink()

    again = run_nightly(str(stories), opts)
    assert again.exit_code == 0
    s = again.stories[0]
    # not unchanged (an output is missing), but nothing renders or re-assembles
    assert (s.status, s.rendered, s.masters_assembled) == ("rendered", 0, 0)
    assert sha256_file(master)[0] == digest
