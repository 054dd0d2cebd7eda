"""``reelfarm import`` of Yarn Spinner: nodes, options, jumps, detours, groups, errors."""

from __future__ import annotations

import re

import pytest
from importkit import DATA, plan_keys, run_import, write

SMALL = """\
title: Start
tags: intro
---
// shot: duration=3
Narrator: The ferry leaves at dusk. #line:a1
<<set $ticket to true>>
<<detour Weather>>
-> Board the ferry
    Captain: Welcome aboard.
    <<jump Ferry>>
-> Stay ashore #line:a2
    You watch the boat go.
-> Ask about the fare
    <<jump Fare>>
Narrator: The harbour empties.
===
title: Weather
---
A cold wind blows in from the sea.
<<return>>
===
title: Ferry
---
=> The deck is crowded.
=> The deck is empty.
Waves slap the hull.
<<stop>>
Never shown.
===
title: Fare
---
Clerk: Two coins, please.
[[Pay|Ferry]]
[[Refuse|Quay]]
===
title: Quay
---
// shot: prompt="an empty quay at night" seed=9
You stay on the quay.
===
"""


@pytest.fixture
def small(tmp_path):
    src = write(tmp_path / "ferry.yarn", SMALL)
    return src, run_import(src)


def test_nodes_options_and_jumps(small):
    _src, r = small
    assert r.code == 0, r.stderr
    assert r.manifest["spec"]["start"] == "start"
    assert r.successors() == {
        "start": ["start-option2", "start-option3", "fare"],
        "start-option2": ["ferry"],  # the option's own lines, then its jump
        "start-option3": ["start-after1"],  # no jump: on to the lines after the options
        "start-after1": [],
        "ferry": [],  # <<stop>>
        "fare": ["ferry", "quay"],  # Yarn 1 [[links]]
        "quay": [],
    }
    labels = [o["label"] for o in r.segments["start"]["choice"]["options"]]
    assert labels == ["Board the ferry", "Stay ashore", "Ask about the fare"]  # no #line: tags
    # the nodes of the story, and nothing from Weather, which is only shown by <<detour>>
    names = {s["source"]["name"] for s in r.segments.values()}
    assert names == {"Start", "Ferry", "Fare", "Quay"}


def test_lines_become_shots_with_comment_steering(small):
    _src, r = small
    start = r.segments["start"]["shots"]
    assert [s["prompt"] for s in start] == [
        "Narrator: The ferry leaves at dusk.",
        "A cold wind blows in from the sea.",  # the detour, inlined where it is called
    ]
    assert start[0]["duration"] == 3.0
    quay = r.segments["quay"]["shots"][0]
    assert quay["prompt"] == "an empty quay at night" and quay["seed"] == 9
    ferry = [s["prompt"] for s in r.segments["ferry"]["shots"]]
    assert ferry == ["The deck is crowded.", "Waves slap the hull."]


def test_losses_are_listed_with_lines(small):
    src, r = small
    lost = r.lines("lost: ")
    assert f"lost: {src}:6: Start: <<set>> (variables are not kept)" in lost
    assert (f"lost: {src}:24: Ferry: a line group of 2 lines (one is picked at run time); "
            "the first is kept") in lost
    assert f"lost: {src}:28: Ferry: lines after a jump or stop are never reached" in lost
    assert not any("Weather" in ln for ln in lost)


def test_segments_keep_node_and_line(small):
    src, r = small
    lines = SMALL.splitlines()
    for seg in r.segments.values():
        ref = seg["source"]
        assert ref["file"] == str(src)
        if ref["name"] == seg["source"]["name"] and seg["id"] in ("start", "ferry", "fare"):
            assert lines[ref["line"] - 1] == f"title: {ref['name']}"
    assert r.segments["start-option3"]["source"] == {"file": str(src), "name": "Start",
                                                    "line": 11}


CONDITIONS = """\
title: Start
---
You reach the gate.
<<if $has_key>>
    <<jump Garden>>
<<else>>
    The gate is locked.
<<endif>>
-> Climb the wall <<if $strong>>
    <<jump Garden>>
-> Go home
    <<jump Home>>
===
title: Garden
---
Roses everywhere.
<<jump Visitor>>
===
title: Visitor
when: $day
---
A gardener waves.
===
title: Visitor
when: always
---
A cat watches you.
===
title: Home
---
You go home.
===
"""


def test_conditions_stop_the_import_with_their_lines(tmp_path):
    src = write(tmp_path / "gate.yarn", CONDITIONS)
    r = run_import(src)
    assert r.code == 2
    err = r.stderr.splitlines()
    assert f"{src}:4: Start: option 'if $has_key' -> Garden depends on a condition ($has_key)" \
        in err
    assert (f"{src}:6: Start: option 'otherwise' -> Start.option2 depends on a condition "
            "(not ($has_key))") in err
    assert (f"{src}:9: Start.after1: option 'Climb the wall' -> Garden depends on a condition "
            "($strong)") in err
    # a jump to a node group (storylets) is conditional on each member's when:
    assert (f"{src}:17: Garden: option 'when $day' -> Visitor.when1 depends on a condition "
            "($day)") in err


def test_all_options_maps_conditional_jumps_and_node_groups_to_choices(tmp_path):
    src = write(tmp_path / "gate.yarn", CONDITIONS)
    r = run_import(src, "--all-options")
    assert r.code == 0, r.stderr
    assert r.successors() == {
        "start": ["garden", "start-option2"],
        "start-option2": ["start-after1"],
        "start-after1": ["garden", "home"],
        "garden": ["visitor-when1", "visitor-when2"],
        "visitor-when1": [],
        "visitor-when2": [],
        "home": [],
    }
    # the text-less place where the options are offered shows the choice itself
    assert r.segments["start-after1"]["shots"][0]["prompt"] == "Start: Climb the wall / Go home"


def test_a_loop_is_named_and_unrolled(tmp_path):
    src = write(tmp_path / "hub.yarn", "title: Start\n---\nHub.\n-> Market\n    <<jump Market>>\n"
                "-> Leave\n    Bye.\n===\ntitle: Market\n---\nStalls.\n<<jump Start>>\n===\n")
    r = run_import(src)
    assert r.code == 2
    assert f"{src}:12: loop: Start -> Market -> Start" in r.stderr
    r = run_import(src, "--unroll", "1")
    assert r.code == 0, r.stderr
    assert r.successors()["market"] == ["start--2"]
    assert r.successors()["market--2"] == []


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("title: Start\nHello\n===\n", 2, "not a header (name: value) before ---"),
        ("title: Start\n---\nHello\n", 2, "never closed with ==="),
        ("tags: x\n---\nHello\n===\n", 1, "a node without a title: header"),
        ("title: Start\n---\n<<endif>>\n===\n", 3, "<<endif>> without <<if>>"),
        ("title: Start\n---\n<<if $a>>\nHi\n===\n", 3, "<<if $a>> is never closed"),
        ("title: Start\n---\n<<jump Start\n===\n", 3, "a command << is never closed"),
        ("title: Start\n---\n// shot: duration=x\nHi\n===\n", 3, "duration=x"),
        ("title: A\n---\nHi\n===\ntitle: A\n---\nAgain\n===\n", 5, "defined twice"),
    ],
)
def test_malformed_yarn_exits_2_with_file_and_line(tmp_path, text, line, what):
    src = write(tmp_path / "bad.yarn", text)
    r = run_import(src)
    assert r.code == 2
    located = [ln for ln in r.stderr.splitlines() if ln.startswith(f"{src}:{line}: ")]
    assert any(what in ln for ln in located), r.stderr


def test_an_edit_to_one_node_changes_only_its_shots(tmp_path):
    src = write(tmp_path / "ferry.yarn", SMALL)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert run_import(src, out=a).code == 0
    write(src, SMALL.replace("Clerk: Two coins, please.", "Clerk: Three coins, please."))
    assert run_import(src, out=b).code == 0
    before, after = plan_keys(a, tmp_path / "s"), plan_keys(b, tmp_path / "s")
    assert {s for s in before if before[s] != after[s]} == {"fare-1"}


def test_real_story_space_sally(tmp_path):
    """Yarn Spinner's Space sample: Sally's node, whose Yarn 1 links sit under <<if>>."""
    src = DATA / "space" / "Sally.yarn"
    r = run_import(src)
    assert r.code == 2
    conds = [ln for ln in r.stderr.splitlines() if "depends on a condition" in ln]
    assert [ln.split(": ")[0] for ln in conds] == [f"{src}:22", f"{src}:26"]

    r = run_import(src, "--all-options")
    assert r.code == 0, r.stderr
    text = src.read_text()
    # Declarations only declares variables: it is listed, and the story starts at Sally
    assert r.manifest["spec"]["start"] == "sally"
    titles = re.findall(r"^title: (.+)$", text, re.M)
    assert {s["source"]["name"] for s in r.segments.values()} == set(titles) - {"Declarations"}
    options = sum(len(s.get("choice", {}).get("options", [])) for s in r.segments.values())
    assert options == text.count("[[") == 3
    assert r.successors()["sally"] == ["sally_watch", "sally_sorry", "sally_exit"]


def test_real_story_space_ship(tmp_path):
    src = DATA / "space" / "Ship.yarn"
    r = run_import(src)
    assert r.code == 0, r.stderr
    assert list(r.segments) == ["ship"]
    prompts = [s["prompt"] for s in r.segments["ship"]["shots"]]
    assert prompts[0] == "Ship: Hey, friend." and "Player: Uh." in prompts
    assert any("<<setsprite>> (commands are not run)" in ln for ln in r.lines("lost: "))


def test_node_tags_steer_every_shot_of_the_node_and_its_options(tmp_path):
    src = write(tmp_path / "tags.yarn", """\
title: Start
tags: shot:duration=5 intro
---
First line.
-> Go
    Option line.
// shot: duration=1
Last line.
===
""")
    r = run_import(src)
    assert r.code == 0, r.stderr
    durations = {s["id"]: s["duration"] for seg in r.segments.values() for s in seg["shots"]}
    assert durations == {"start-1": 5.0, "start-option2-1": 5.0, "start-after1-1": 1.0}


def test_an_unreachable_node_is_listed_once_not_with_its_parts(tmp_path):
    src = write(tmp_path / "unused.yarn", "title: Start\n---\nHi.\n===\ntitle: Unused\n---\n"
                "Nobody comes here.\n-> A\n    Line A.\n-> B\n    Line B.\nAfter.\n===\n")
    r = run_import(src)
    assert r.code == 0, r.stderr
    assert r.lines("lost: ") == [f"lost: {src}:5: Unused: not reachable from the start; "
                                 "not imported"]
