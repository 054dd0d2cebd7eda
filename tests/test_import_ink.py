"""``reelfarm import`` of ink's compiled JSON (inkVersion 19-21)."""

from __future__ import annotations

import json

import pytest
from importkit import DATA, plan_keys, run_import, write

INK = DATA / "ink"
INTERCEPT = DATA / "the-intercept" / "TheIntercept.ink.json"
INTERCEPT_V19 = DATA / "the-intercept" / "TheIntercept.v19.ink.json"


def _choice_points(node) -> int:
    if isinstance(node, dict):
        return ("*" in node) + sum(_choice_points(v) for v in node.values())
    if isinstance(node, list):
        return sum(_choice_points(v) for v in node)
    return 0


def test_knots_stitches_choices_and_gathers():
    r = run_import(INK / "branches.ink.json")
    assert r.code == 0, r.stderr
    assert r.successors() == {
        "station": ["train", "station-c-1", "station-c-2"],
        "station-c-1": ["town"],  # a choice body with text is a segment of its own
        "station-c-2": ["train-boarding"],
        "train": ["train-boarding"],  # a divert to a stitch
        "town": ["town-c-0", "town-c-1"],
        "train-boarding": [],
        "town-c-0": ["town-g-0"],  # both choice bodies gather
        "town-c-1": ["town-g-0"],
        "town-g-0": [],
    }
    options = r.segments["station"]["choice"]["options"]
    # [ ] text: only what is outside the brackets is repeated when chosen
    assert [o["label"] for o in options] == ["Wait for the train", "Walk into town",
                                             "Buy a ticket."]
    assert r.segments["station-c-2"]["shots"][0]["prompt"] == "Buy a ticket, and the clerk smiles."
    # glue joins two lines into one shot
    assert r.segments["town"]["shots"][0]["prompt"] == "The streets are empty and wet."
    assert r.segments["train-boarding"]["source"]["name"] == "train.boarding"
    assert r.segments["town-g-0"]["source"]["name"] == "town"
    source = json.loads((INK / "branches.ink.json").read_text(encoding="utf-8-sig"))
    options = sum(len(s.get("choice", {}).get("options", [])) for s in r.segments.values())
    assert options == _choice_points(source) == 5


def test_shot_tags_steer_their_line_or_the_next():
    r = run_import(INK / "branches.ink.json")
    shots = r.segments["station"]["shots"]
    assert shots[0] == {"id": "station-1", "prompt": "Rain on the platform.", "duration": 3.0}
    assert "continuity" not in shots[1]
    # a tag on a line of its own steers the line after it
    assert shots[2]["continuity"] == "previous"
    assert shots[2]["prompt"] == "A clock ticks over the ticket office."


def test_a_loop_is_named_and_unrolled():
    r = run_import(INK / "loop.ink.json")
    assert r.code == 2
    assert f"{INK / 'loop.ink.json'}: loop: hub -> market -> hub" in r.stderr
    r = run_import(INK / "loop.ink.json", "--unroll", "1")
    assert r.code == 0, r.stderr
    assert r.successors() == {
        "hub": ["market", "road"], "market": ["hub--2"], "road": [],
        "hub--2": ["market--2", "road"], "market--2": [],
    }


def test_conditions_stop_the_import_and_all_options_maps_them():
    src = INK / "conditions.ink.json"
    r = run_import(src)
    assert r.code == 2
    assert f"{src}: shop: option 'Buy a lamp' -> lamp depends on a condition (coins)" in r.stderr
    # a conditional divert becomes a choice between "if" and "otherwise"
    assert f"{src}: lamp: option 'if coins' -> palace depends on a condition (coins)" in r.stderr
    r = run_import(src, "--all-options")
    assert r.code == 0, r.stderr
    assert r.successors() == {
        "shop": ["lamp", "street"], "lamp": ["palace", "lamp-otherwise"], "street": [],
        "lamp-otherwise": [], "palace": [],
    }
    # conditional text keeps its first branch, and says so
    assert r.segments["lamp"]["shots"][0]["prompt"] == "You are rich."
    lost = r.lines("lost: ")
    assert f"lost: {src}: lamp: 1 conditional or varying text(s): the first branch of each " \
        "is kept" in lost
    assert f"lost: {src}: variables are not kept: coins" in lost


def test_tunnels_and_threads():
    src = INK / "tunnels.ink.json"
    r = run_import(src)
    assert r.code == 0, r.stderr
    # the text-only tunnel is shown where it is called; the thread's choice joins the knot's
    assert [s["prompt"] for s in r.segments["start"]["shots"]] == [
        "You stand at a door.", "It is painted red."]
    assert r.successors() == {"start": ["porch", "inside"], "porch": [], "inside": []}
    # a tunnel that offers choices cannot be a run of shots: it is listed
    assert (f"lost: {src}: ask: the tunnel ask has choices or diverts, so it cannot be shown "
            "inline; not followed") in r.lines("lost: ")


@pytest.mark.parametrize("version", [18, 22, "21"])
def test_unsupported_versions_exit_2(tmp_path, version):
    doc = json.loads((INK / "loop.ink.json").read_text(encoding="utf-8-sig"))
    doc["inkVersion"] = version
    src = write(tmp_path / "old.ink.json", json.dumps(doc))
    r = run_import(src, "--from", "ink")
    assert r.code == 2
    assert "inkVersion" in r.stderr


@pytest.mark.parametrize(
    "text, what",
    [
        ('{"inkVersion": 21, "root": [', f"{'not valid JSON'}"),
        ('{"inkVersion": 21}', "no root container"),
        ('{"inkVersion": 21, "root": {"a": 1}}', "must be a non-empty JSON array"),
        ('{"inkVersion": 21, "root": [[{"->": "nowhere"}, null], "done", null]}',
         "divert target 'nowhere' is not in the story"),
        ('{"inkVersion": 21, "root": [["^a", {"*": "x.y", "flg": 20}, null], "done", null]}',
         "choice target 'x.y' is not in the story"),
        ('{"inkVersion": 21, "root": ' + "[" * 300 + '"done"' + ", null]" * 300 + "}",
         "nested deeper than"),
        ('{"inkVersion": 21, "root": [[{"->": ".^"}, null], null]}', "more than"),
    ],
)
def test_malformed_ink_exits_2_without_a_traceback(tmp_path, text, what):
    src = write(tmp_path / "bad.ink.json", text)
    r = run_import(src, "--from", "ink")
    assert r.code == 2
    assert what in r.stderr, r.stderr


def test_malformed_json_names_its_line(tmp_path):
    src = write(tmp_path / "bad.json", '{"inkVersion": 21,\n "root": [\n  "^a",, null]}')
    r = run_import(src, "--from", "ink")
    assert r.code == 2
    assert r.stderr.startswith(f"{src}:3: not valid JSON")


def test_real_story_the_intercept():
    """inkle's The Intercept, compiled at inkVersion 20: 32 knots, loops, conditions, tunnels."""
    r = run_import(INTERCEPT)
    assert r.code == 2
    err = r.stderr.splitlines()
    assert f"{INTERCEPT}: loop: start.opts -> start.opts.c-1 -> start.opts" in err
    assert any("depends on a condition" in ln for ln in err)

    r = run_import(INTERCEPT, "--all-options", "--unroll", "0")
    assert r.code == 0, r.stderr
    source = json.loads(INTERCEPT.read_text(encoding="utf-8-sig"))
    knots = set(source["root"][-1]) - {"global decl", "#f"}
    names = {s["source"]["name"].split(".")[0] for s in r.segments.values()}
    functions = {"lower", "raise"}  # called for their effect, never diverted to
    tunnels = {"missing_reel"}  # only ever a tunnel with choices: listed, not followed
    assert names == knots - functions - tunnels | {"story"}
    ends = [sid for sid, nxt in r.successors().items() if not nxt]
    assert "ending_return_to_normal" in {r.segments[e]["source"]["name"] for e in ends}
    # every choice point is imported but five the story itself never reaches: three after the
    # gather of missing_reel, a tunnel with choices (listed), and two that follow a divert in
    # harris_threatens_lynching's gather, which ink never runs
    lost = r.lines("lost: ")
    assert any("the tunnel missing_reel has choices" in ln for ln in lost)
    assert _walked_choice_points(INTERCEPT) == _choice_points(source) - 5


def _walked_choice_points(path) -> int:
    from orchestrator.importers import import_file

    return import_file(str(path), unroll=0, all_options=True).constructs["choices"]


def test_the_intercept_imports_the_same_at_inkversion_19_and_20(tmp_path):
    a = run_import(INTERCEPT, "--all-options", "--unroll", "1", out=tmp_path / "a.yaml")
    b = run_import(INTERCEPT_V19, "--all-options", "--unroll", "1", out=tmp_path / "b.yaml")
    assert a.code == b.code == 0
    for doc in (a.manifest, b.manifest):
        for seg in doc["spec"]["segments"]:
            seg["source"].pop("file")
        doc["metadata"] = {}
    assert a.manifest == b.manifest


def test_an_edit_to_one_knot_changes_only_its_shots(tmp_path):
    text = (INK / "branches.ink.json").read_text(encoding="utf-8-sig")
    src = write(tmp_path / "branches.ink.json", text)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert run_import(src, out=a).code == 0
    assert run_import(src, out=b).code == 0
    assert a.read_text() == b.read_text()
    # the same story recompiled after the writer changed one line of the train knot
    write(src, text.replace("^The train pulls in, hissing.", "^The train pulls in, late."))
    assert run_import(src, out=b).code == 0
    before, after = plan_keys(a, tmp_path / "s"), plan_keys(b, tmp_path / "s")
    assert {s for s in before if before[s] != after[s]} == {"train-1"}


def test_ink_source_is_asked_to_be_compiled(tmp_path):
    r = run_import(write(tmp_path / "story.ink", "Hello.\n-> END\n"))
    assert r.code == 2
    assert "compile it to JSON first" in r.stderr
